"""The network folded for inference: the same function as :class:`TabularNet` in eval mode, in a few operations.

Three exact rewrites make a prediction cheap enough to serve one row in microseconds:

- Batch normalisation in eval mode is an affine map, so it folds into the linear layer before it.
- The category embeddings feed the first linear layer directly, so each embedding table is multiplied by its block
  of that layer's weights once: a lookup in the product table replaces a lookup followed by a matrix product.
- Members that share a layer's weights (BatchEnsemble) are multiplied out into a weight per member,
  ``r_j W s_j``, once at load time.
- The linear path (``linear``) reads the same embeddings, so it folds the same way: a product table per category
  and a weight for the standardised numbers, added to the MLP's outputs.

Periodic number embeddings end in a ReLU and cannot fold; they are computed as the network does, all numbers of
all rows in a handful of array operations.

What remains is one gather, one small matrix product, ReLU and the head, in NumPy. For a request's few rows,
activations are kept flat, ``[rows, members x width]``, and later layers are block-diagonal matrices, so every
layer is a single matrix product: for one row, NumPy's per-call overhead, not arithmetic, is what costs. For a
batch, later layers are a batched product over members, which spends no arithmetic on the zeros. Tests hold the
result to the PyTorch network's output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tabloop.runtime.model_args import ModelArgs

Array = npt.NDArray[np.float32]
EPS = 1e-5  # nn.BatchNorm1d's default


@dataclass(frozen=True)
class FoldedNetwork:
    """First layer as product tables plus a numeric weight; later layers as batch-norm-folded linear maps."""

    members: int
    periodic: tuple[Array, Array, Array, Array] | None  # the numbers' embedding (see _embedded)
    raw: bool  # the embedded numbers also pass through as they are
    tables: Array  # [sum of cardinalities, members * width of the first layer's output]
    offsets: npt.NDArray[np.int64]  # where each categorical column's rows start in ``tables``
    numeric_weight: Array  # [n_numeric, members * width]
    bias: Array  # [members * width]
    layers: list[tuple[Array, Array]]  # (block-diagonal weight [members * in, members * out], bias) after a ReLU
    member_layers: list[tuple[Array, Array]]  # the same as (weight [members, in, out], bias [members, 1, out])
    linear: tuple[Array, Array, Array] | None = None  # the linear path: product tables, numeric weight, bias

    @classmethod
    def from_weights(cls, args: ModelArgs, weights: Mapping[str, npt.NDArray[Any]]) -> FoldedNetwork:
        """Fold the trained weights of a :class:`TabularNet` built from ``args``."""
        w = {name: np.asarray(array, dtype=np.float64) for name, array in weights.items()}
        m = args.members
        linears = []  # (weight, bias, batch-norm scale or None, shift or None) in order
        index = 0
        for size in [*args.hidden, 1]:
            weight, bias = w[f"head.{index}.weight"], w[f"head.{index}.bias"][:, 0, :]
            if f"head.{index}.r" in w:  # shared by the members: each member's weight is r_j W s_j
                weight = w[f"head.{index}.r"].transpose(0, 2, 1) * weight[None] * w[f"head.{index}.s"]
            scale = shift = None
            norm = f"head.{index + 1}.norm"
            if f"{norm}.weight" in w:  # hidden layers are followed by batch norm; the output layer is not
                gamma, beta = w[f"{norm}.weight"].reshape(m, size), w[f"{norm}.bias"].reshape(m, size)
                mean, var = w[f"{norm}.running_mean"].reshape(m, size), w[f"{norm}.running_var"].reshape(m, size)
                scale = gamma / np.sqrt(var + EPS)
                shift = beta - mean * scale
            linears.append((weight, bias, scale, shift))
            index += 4  # MemberLinear, MemberBatchNorm, ReLU, FastDropout
        folded = [
            (weight, bias) if scale is None or shift is None else (weight * scale[:, None, :], bias * scale + shift)
            for weight, bias, scale, shift in linears
        ]

        first_weight, first_bias = folded[0]
        stacked, numeric = _category_tables(args, w, first_weight)
        width = m * first_weight.shape[2]  # every member's first-layer outputs side by side
        linear = _linear_path(args, w) if args.linear else None
        periodic = None
        if args.embedded:
            e, k = "numeric_embedding", args.frequencies
            angular = 2 * np.pi * w[f"{e}.frequencies"]
            periodic = (  # cos(a) as sin(a + pi / 2): one sine of [cos | sin] angles, no concatenation
                np.concatenate([angular, angular], axis=1)[:, None, :].astype(np.float32),  # [n, 1, 2k]
                np.repeat([np.pi / 2, 0.0], k).astype(np.float32),  # [2k]
                w[f"{e}.weight"].astype(np.float32),  # [n, 2k, dim]
                w[f"{e}.bias"][:, None, :].astype(np.float32),  # [n, 1, dim]
            )
        return cls(
            members=m,
            periodic=periodic,
            raw=args.raw,
            tables=stacked.reshape(stacked.shape[0], width).astype(np.float32),
            offsets=np.cumsum([0, *args.cardinalities])[:-1].astype(np.int64),
            numeric_weight=numeric.transpose(1, 0, 2).reshape(numeric.shape[1], width).astype(np.float32),
            bias=first_bias.reshape(-1).astype(np.float32),
            layers=[(_block_diagonal(weight), bias.reshape(-1).astype(np.float32)) for weight, bias in folded[1:]],
            member_layers=[
                (weight.astype(np.float32), bias[:, None, :].astype(np.float32)) for weight, bias in folded[1:]
            ],
            linear=linear,
        )

    def outputs(self, categorical: npt.NDArray[np.int64], numeric: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Every member's outputs for encoded inputs, ``[rows, members, outputs]``."""
        rows = categorical + self.offsets
        mlp = self._mlp(rows, numeric)
        if self.linear is None:
            return mlp
        tables, weight, bias = self.linear
        straight = tables[rows].sum(axis=1) + numeric @ weight + bias
        mlp += straight.reshape(mlp.shape)
        return mlp

    def _mlp(self, rows: npt.NDArray[np.int64], numeric: Array) -> npt.NDArray[np.float64]:
        """The MLP's outputs, ``[rows, members, outputs]``, for category rows offset into ``tables``."""
        if len(rows) <= 16:  # one gather of [rows, columns, width]: fewest calls, for requests
            hidden = self.tables[rows].sum(axis=1)
        else:  # one gather per column, accumulated: no [rows, columns, width] intermediate for big batches
            hidden = np.zeros((len(rows), self.tables.shape[1]), dtype=np.float32)
            for j in range(rows.shape[1]):
                hidden += self.tables[rows[:, j]]
        if self.periodic is not None:
            numeric = self._embedded(numeric)
        hidden += numeric @ self.numeric_weight
        hidden += self.bias
        if len(rows) <= 16 or not self.layers:  # block-diagonal products: the fewest calls, for requests
            for weight, bias in self.layers:
                np.maximum(hidden, 0.0, out=hidden)
                hidden = hidden @ weight + bias
            members: npt.NDArray[np.float64] = hidden.astype(np.float64).reshape(len(rows), self.members, -1)
            return members
        # batched products over members, [members, rows, width]: no arithmetic on the block-diagonal's zeros
        by_member = hidden.reshape(len(rows), self.members, -1).transpose(1, 0, 2)
        for weight, bias in self.member_layers:
            np.maximum(by_member, 0.0, out=by_member)
            by_member = np.matmul(by_member, weight)
            by_member += bias
        outputs: npt.NDArray[np.float64] = by_member.transpose(1, 0, 2).astype(np.float64)
        return outputs

    def _embedded(self, numeric: Array) -> Array:
        """The leading numbers' periodic embeddings, then the numbers that pass through, as the network computes
        them."""
        assert self.periodic is not None
        frequencies, phase, weight, bias = self.periodic
        rows, n = len(numeric), len(frequencies)
        angles = numeric[:, :n].T[:, :, None] * frequencies  # [n, rows, 2k]: the cosines' angles, then the sines'
        angles += phase
        np.sin(angles, out=angles)
        embedded = np.matmul(angles, weight)  # [n, rows, dim]: each number's own linear map
        embedded += bias
        np.maximum(embedded, 0.0, out=embedded)
        passed = numeric if self.raw else numeric[:, n:]
        return np.concatenate([embedded.transpose(1, 0, 2).reshape(rows, -1), passed], axis=1)


def _linear_path(args: ModelArgs, w: Mapping[str, npt.NDArray[np.float64]]) -> tuple[Array, Array, Array]:
    """The linear path folded as the first layer is: each embedding table times its block of the weights, then
    the numbers' weight and the bias, all member-major ``[..., members * outputs]``."""
    stacked, numeric = _category_tables(args, w, w["linear.weight"])  # [members, embeddings + numbers, outputs]
    width = args.members * args.outputs
    return (
        stacked.reshape(-1, width).astype(np.float32),
        numeric.transpose(1, 0, 2).reshape(-1, width).astype(np.float32),
        w["linear.bias"].reshape(width).astype(np.float32),
    )


def _category_tables(
    args: ModelArgs, w: Mapping[str, npt.NDArray[np.float64]], weight: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A layer that reads the category embeddings then the numbers, ``weight`` ``[members, in, out]``, split into
    every category's product with its block (``[sum of cardinalities, members, out]``: a lookup replaces the
    embedding and its product) and the numbers' block ``[members, numbers, out]``."""
    m, tables, start = args.members, [], 0
    for i, (cardinality, dim) in enumerate(zip(args.cardinalities, args.embedding_dims, strict=True)):
        embedding = w[f"embeddings.{i}.weight"].reshape(cardinality, m, dim)
        tables.append(np.einsum("cmd,mdo->cmo", embedding, weight[:, start : start + dim, :]))
        start += dim
    stacked = np.concatenate(tables) if tables else np.zeros((0, m, weight.shape[2]))
    return stacked, weight[:, start:, :]


def _block_diagonal(weights: npt.NDArray[np.float64]) -> Array:
    """``[members, in, out]`` as one ``[members * in, members * out]`` matrix acting on each member's slice."""
    members, n_in, n_out = weights.shape
    block = np.zeros((members * n_in, members * n_out), dtype=np.float32)
    for j in range(members):
        block[j * n_in : (j + 1) * n_in, j * n_out : (j + 1) * n_out] = weights[j]
    return block
