"""The network's constructor arguments: what the bundle stores beside the weights, readable without torch.

Serving loads a bundle and folds its weights into NumPy (:mod:`tabloop.runtime.inference`) without importing torch;
the arguments say which tensors the weights must hold (:meth:`ModelArgs.weight_shapes`) and how large they may be.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ModelArgs:
    """Constructor arguments of :class:`TabularNet`, stored with the weights."""

    cardinalities: list[int]
    embedding_dims: list[int]
    n_numeric: int
    hidden: list[int] = field(default_factory=lambda: [64])
    dropout: float = 0.3
    members: int = 3
    outputs: int = 1  # per member: one logit (binary), one per class (multiclass) or one value (regression)
    # Periodic embeddings of the first ``embedded`` numeric columns (the scaled numbers; cyclic features and
    # missing indicators pass through): ``frequencies`` sines and cosines each, mapped to ``numeric_dim`` numbers.
    embedded: int = 0
    frequencies: int = 16
    numeric_dim: int = 8
    # the embedded numbers also enter as they are, beside their embeddings (as RealMLP's "PBLD" embedding keeps
    # a linear path): a periodic embedding is flat outside the training range, a number's own weight is not
    raw: bool = False
    # "independent": each member its own weights; "batch": the members share each layer's weights and differ by
    # per-member scalings of its inputs and outputs (BatchEnsemble, as in TabM)
    ensemble: str = "independent"
    # a linear map of the inputs (category embeddings, standardised numbers) added to the network's outputs: the
    # model a logistic or ridge regression fits, which the MLP then corrects (a wide-and-deep network)
    linear: bool = False

    def to_dict(self) -> dict[str, int | float | list[int]]:
        """A JSON-ready copy; keys at the value a bundle written before them implies are left out (``outputs`` of
        one, the periodic embedding's sizes when nothing is embedded), so those bundles keep their digest."""
        data: dict[str, int | float | list[int]] = asdict(self)
        if self.outputs == 1:
            del data["outputs"]
        if self.embedded == 0:
            for key in ("embedded", "frequencies", "numeric_dim"):
                del data[key]
        if not self.raw:
            del data["raw"]
        if self.ensemble == "independent":
            del data["ensemble"]
        if not self.linear:
            del data["linear"]
        return data

    @property
    def linear_width(self) -> int:
        """How many numbers the linear path reads: the category embeddings and the standardised numbers."""
        return sum(self.embedding_dims) + self.n_numeric

    @property
    def input_width(self) -> int:
        """How many numbers enter the first hidden layer: the category embeddings, each embedded number's
        embedding and the numbers that pass through (the embedded ones too, with ``raw``)."""
        passed = self.n_numeric if self.raw else self.n_numeric - self.embedded
        return sum(self.embedding_dims) + self.embedded * self.numeric_dim + passed

    def problems(self) -> list[str]:
        """What makes these arguments unsafe to build (sizes out of bounds); checked before anything is allocated."""
        found = []
        if len(self.cardinalities) != len(self.embedding_dims):
            found.append(f"{len(self.cardinalities)} categorical features but {len(self.embedding_dims)} embeddings")
        for name, values, top in (
            ("cardinalities", self.cardinalities, MAX_CARDINALITY),
            ("embedding_dims", self.embedding_dims, MAX_WIDTH),
            ("hidden", self.hidden, MAX_WIDTH),
        ):
            bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= top]
            if bad:
                found.append(f"{name} must be integers from 1 to {top}, not {bad[:3]}")
        if not 1 <= len(self.hidden) <= MAX_LAYERS:
            found.append(f"hidden must have 1 to {MAX_LAYERS} layers, not {len(self.hidden)}")
        n_numeric = self.n_numeric if isinstance(self.n_numeric, int) else 0
        for name, value, low, top in (
            ("n_numeric", self.n_numeric, 0, MAX_WIDTH),
            ("members", self.members, 1, MAX_MEMBERS),
            ("outputs", self.outputs, 1, MAX_WIDTH),
            ("embedded", self.embedded, 0, n_numeric),
            ("frequencies", self.frequencies, 1, MAX_WIDTH),
            ("numeric_dim", self.numeric_dim, 1, MAX_WIDTH),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= top:
                found.append(f"{name} must be an integer from {low} to {top}, not {value!r}")
        found += self._setting_problems()
        if not found and self.parameters() > MAX_PARAMETERS:
            found.append(f"{self.parameters():,} parameters; at most {MAX_PARAMETERS:,}")
        return found

    def _setting_problems(self) -> list[str]:
        found = []
        for name, flag in (("raw", self.raw), ("linear", self.linear)):
            if not isinstance(flag, bool):
                found.append(f"{name} must be true or false, not {flag!r}")
        if self.ensemble not in ENSEMBLES:
            found.append(f"ensemble must be one of {', '.join(ENSEMBLES)}, not {self.ensemble!r}")
        if not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            found.append(f"dropout must be in [0, 1), not {self.dropout!r}")
        return found

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """The name and shape of every tensor of :class:`~tabloop.runtime.network.TabularNet`'s state (the
        bundle's weights), known without building it; a test holds this to the network's own state."""
        m = self.members
        shapes: dict[str, tuple[int, ...]] = {
            f"embeddings.{i}.weight": (c, d * m)
            for i, (c, d) in enumerate(zip(self.cardinalities, self.embedding_dims, strict=True))
        }
        if self.embedded:
            n, k, d = self.embedded, self.frequencies, self.numeric_dim
            shapes |= {
                "numeric_embedding.frequencies": (n, k),
                "numeric_embedding.weight": (n, 2 * k, d),
                "numeric_embedding.bias": (n, d),
            }
        width, index = self.input_width, 0
        for size in self.hidden:  # a linear layer, MemberBatchNorm, ReLU, FastDropout
            shapes |= self._linear_shapes(f"head.{index}", width, size)
            norm = f"head.{index + 1}.norm"
            shapes |= {f"{norm}.{name}": (m * size,) for name in ("weight", "bias", "running_mean", "running_var")}
            shapes[f"{norm}.num_batches_tracked"] = ()
            width, index = size, index + 4
        if self.linear:
            shapes |= {"linear.weight": (m, self.linear_width, self.outputs), "linear.bias": (m, 1, self.outputs)}
        return shapes | self._linear_shapes(f"head.{index}", width, self.outputs)

    def _linear_shapes(self, prefix: str, n_in: int, n_out: int) -> dict[str, tuple[int, ...]]:
        m = self.members
        if self.ensemble == "batch":
            return {
                f"{prefix}.weight": (n_in, n_out),
                f"{prefix}.r": (m, 1, n_in),
                f"{prefix}.s": (m, 1, n_out),
                f"{prefix}.bias": (m, 1, n_out),
            }
        return {f"{prefix}.weight": (m, n_in, n_out), f"{prefix}.bias": (m, 1, n_out)}

    def parameters(self) -> int:
        """How many numbers the network of these arguments holds."""
        m = self.members
        total = sum(c * d * m for c, d in zip(self.cardinalities, self.embedding_dims, strict=True))
        total += self.embedded * (self.frequencies + (2 * self.frequencies + 1) * self.numeric_dim)
        width = self.input_width
        for size in [*self.hidden, self.outputs]:
            if self.ensemble == "batch":  # one shared weight; each member's scalings and bias
                total += width * size + m * (width + 2 * size)
            else:
                total += m * (width * size + size)
            width = size
        if self.linear:
            total += m * (self.linear_width + 1) * self.outputs
        return total + 4 * m * sum(self.hidden)  # batch norm's four vectors after each hidden layer


MAX_CARDINALITY = 10_000_000
MAX_WIDTH = 65_536
MAX_LAYERS = 32
MAX_MEMBERS = 64
ENSEMBLES = ("independent", "batch")
MAX_PARAMETERS = 200_000_000  # 800 MB of float32


def embedding_dim(cardinality: int, scale: float = 1.0, max_dim: int = 32) -> int:
    """A size that grows sub-linearly with the number of categories (fast.ai's rule of thumb, scaled)."""
    return max(2, min(max_dim, round(scale * 1.6 * math.pow(cardinality, 0.56))))
