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

    def to_dict(self) -> dict[str, int | float | list[int]]:
        """A JSON-ready copy (``outputs`` left out when it is one, as bundles were written before it existed)."""
        data: dict[str, int | float | list[int]] = asdict(self)
        if self.outputs == 1:
            del data["outputs"]
        return data

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
        if not isinstance(self.n_numeric, int) or not 0 <= self.n_numeric <= MAX_WIDTH:
            found.append(f"n_numeric must be an integer from 0 to {MAX_WIDTH}, not {self.n_numeric!r}")
        if not isinstance(self.members, int) or not 1 <= self.members <= MAX_MEMBERS:
            found.append(f"members must be an integer from 1 to {MAX_MEMBERS}, not {self.members!r}")
        if not isinstance(self.outputs, int) or isinstance(self.outputs, bool) or not 1 <= self.outputs <= MAX_WIDTH:
            found.append(f"outputs must be an integer from 1 to {MAX_WIDTH}, not {self.outputs!r}")
        if not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            found.append(f"dropout must be in [0, 1), not {self.dropout!r}")
        if not found and self.parameters() > MAX_PARAMETERS:
            found.append(f"{self.parameters():,} parameters; at most {MAX_PARAMETERS:,}")
        return found

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """The name and shape of every tensor of :class:`~tabloop.runtime.network.TabularNet`'s state (the
        bundle's weights), known without building it; a test holds this to the network's own state."""
        m = self.members
        shapes: dict[str, tuple[int, ...]] = {
            f"embeddings.{i}.weight": (c, d * m)
            for i, (c, d) in enumerate(zip(self.cardinalities, self.embedding_dims, strict=True))
        }
        width, index = sum(self.embedding_dims) + self.n_numeric, 0
        for size in self.hidden:  # MemberLinear, MemberBatchNorm, ReLU, FastDropout
            shapes |= {f"head.{index}.weight": (m, width, size), f"head.{index}.bias": (m, 1, size)}
            norm = f"head.{index + 1}.norm"
            shapes |= {f"{norm}.{name}": (m * size,) for name in ("weight", "bias", "running_mean", "running_var")}
            shapes[f"{norm}.num_batches_tracked"] = ()
            width, index = size, index + 4
        k = self.outputs
        return shapes | {f"head.{index}.weight": (m, width, k), f"head.{index}.bias": (m, 1, k)}

    def parameters(self) -> int:
        """How many numbers the network of these arguments holds."""
        m = self.members
        total = sum(c * d * m for c, d in zip(self.cardinalities, self.embedding_dims, strict=True))
        width = sum(self.embedding_dims) + self.n_numeric
        for size in self.hidden:
            total += m * (width * size + size) + 4 * m * size  # a linear layer, then batch norm's four vectors
            width = size
        return total + m * (width + 1) * self.outputs


MAX_CARDINALITY = 10_000_000
MAX_WIDTH = 65_536
MAX_LAYERS = 32
MAX_MEMBERS = 64
MAX_PARAMETERS = 200_000_000  # 800 MB of float32


def embedding_dim(cardinality: int, scale: float = 1.0, max_dim: int = 32) -> int:
    """A size that grows sub-linearly with the number of categories (fast.ai's rule of thumb, scaled)."""
    return max(2, min(max_dim, round(scale * 1.6 * math.pow(cardinality, 0.56))))
