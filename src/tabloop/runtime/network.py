"""A tabular network: embeddings for categories, numbers with missing indicators, an MLP head; a few members.

The members are independently initialised networks trained side by side on the same batches, their probabilities
averaged at prediction time (a deep ensemble). They are stored and computed as one module: each embedding table
holds every member's slice and each layer is a batched matrix product over members, which is the same arithmetic
as separate networks in a third of the operations.

Plain PyTorch with no knowledge of MLflow, serving or monitoring. Everything needed to rebuild it is in
:class:`~tabloop.runtime.model_args.ModelArgs`, which the bundle stores next to the weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tabloop.runtime.model_args import ModelArgs


class MemberLinear(nn.Module):
    """One ``nn.Linear`` per member, applied to ``[members, batch, in]`` as a single batched product."""

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features))
        bound = 1 / math.sqrt(in_features)  # nn.Linear's default initialisation, member by member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class MemberBatchNorm(nn.Module):
    """``nn.BatchNorm1d`` for every member and feature of ``[members, batch, features]``.

    The fused batch-norm kernel on a reshaped copy is about twice as fast as normalising the strided layout.
    """

    def __init__(self, members: int, features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(members * features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members, batch, features = x.shape
        flat: torch.Tensor = self.norm(x.transpose(0, 1).reshape(batch, members * features))
        return flat.view(batch, members, features).transpose(0, 1).contiguous()


class FastDropout(nn.Module):
    """Inverted dropout whose mask comes from random bytes, eight per draw of the generator.

    On the CPU, drawing one random number per element dominated a training step; random 64-bit words cut that
    cost about sevenfold. The drop probability is rounded to a multiple of 1/256 (0.3 becomes 0.3008).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.cut = round(p * 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.cut == 0:
            return x
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=x.device)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self.cut
        return x * keep / (1 - self.cut / 256)


class TabularNet(nn.Module):
    """``members`` networks trained side by side; :meth:`predict_proba` averages their probabilities."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        if len(args.cardinalities) != len(args.embedding_dims):
            raise ValueError("one embedding size per categorical column is required")
        self.args = args
        m = args.members
        self.embeddings = nn.ModuleList(
            nn.Embedding(cardinality, dim * m)
            for cardinality, dim in zip(args.cardinalities, args.embedding_dims, strict=True)
        )
        self.embedding_dropout = FastDropout(args.dropout / 2)
        layers: list[nn.Module] = []
        width = sum(args.embedding_dims) + args.n_numeric
        for size in args.hidden:
            layers += [MemberLinear(m, width, size), MemberBatchNorm(m, size), nn.ReLU(), FastDropout(args.dropout)]
            width = size
        layers.append(MemberLinear(m, width, args.outputs))
        self.head = nn.Sequential(*layers)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """The outputs of every member, shape ``[batch, members, outputs]``: logits (binary, multiclass) or the
        scaled target (regression)."""
        batch, members = categorical.shape[0], self.args.members
        embedded = [
            embedding(categorical[:, i]).view(batch, members, -1).transpose(0, 1)
            for i, embedding in enumerate(self.embeddings)
        ]
        inputs = torch.cat(  # member-major: [members, batch, features], so every layer is a plain batched product
            [self.embedding_dropout(torch.cat(embedded, dim=2)), numeric.unsqueeze(0).expand(members, batch, -1)],
            dim=2,
        )
        outputs: torch.Tensor = self.head(inputs)
        return outputs.transpose(0, 1)
