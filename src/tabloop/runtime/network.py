"""A tabular network: embeddings for categories, periodic embeddings for numbers, an MLP head; a few members.

The members are networks trained side by side on the same batches, their predictions averaged (an ensemble).
They are stored and computed as one module: each embedding table holds every member's slice and each layer is a
batched matrix product over members. With ``ensemble: independent`` every member has its own weights (a deep
ensemble, in a third of the operations of separate networks); with ``ensemble: batch`` the members share each
layer's weights and differ by their own scalings of its inputs and outputs (BatchEnsemble, as TabM uses it), so
many members cost few parameters, though as much arithmetic as independent ones.

With ``linear``, a linear map of the category embeddings and the standardised numbers is added to the MLP's
outputs (a wide-and-deep network): what a logistic or ridge regression would fit, which the MLP corrects, and a
trend that goes on past the training range.

Numbers reach the MLP as they are (standardised, with missing indicators) or, with ``numeric_embedding:
periodic``, through trained periodic embeddings, which let an MLP follow sharp and non-monotonic effects of a
number; the anchors are Gorishniy et al., *On Embeddings for Numerical Features in Tabular Deep Learning* (2022)
and *TabM* (2025), written here in plain PyTorch so that :mod:`tabloop.runtime.inference` can fold each layer into
NumPy for serving.

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


class SharedMemberLinear(nn.Module):
    """A linear layer shared by the members, each seeing it through its own scaling of the inputs and the outputs
    (BatchEnsemble, Wen et al. 2020, as TabM uses it): ``((x * r_j) W) * s_j + b_j`` for member ``j``.

    A member costs the same arithmetic as with :class:`MemberLinear` but few parameters, so many more members fit
    the same budget. ``first``: the input scalings start as random signs (so the members differ from the first
    step); later ones start at one.
    """

    def __init__(self, members: int, in_features: int, out_features: int, *, first: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.r = nn.Parameter(torch.ones(members, 1, in_features))
        self.s = nn.Parameter(torch.ones(members, 1, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features))
        bound = 1 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        if first:
            with torch.no_grad():
                self.r.copy_(torch.randint(0, 2, self.r.shape, dtype=self.r.dtype) * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, torch.matmul(x * self.r, self.weight), self.s)


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


class PeriodicEmbedding(nn.Module):
    """Each number as ``ReLU(W [cos(2 pi c x), sin(2 pi c x)] + b)`` with its own trained frequencies ``c``.

    Periodic embeddings with a linear map and ReLU ("PLR", Gorishniy et al. 2022, *On Embeddings for Numerical
    Features in Tabular Deep Learning*): they let an MLP fit the sharp, non-monotonic effects of a number that it
    otherwise bends towards smooth ones. Shared by the members, as in TabM. ``[batch, n]`` in,
    ``[batch, n * dim]`` out.
    """

    def __init__(self, features: int, frequencies: int, dim: int, scale: float) -> None:
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(features, frequencies) * scale)
        self.weight = nn.Parameter(torch.empty(features, 2 * frequencies, dim))
        self.bias = nn.Parameter(torch.empty(features, dim))
        bound = 1 / math.sqrt(2 * frequencies)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = (2 * math.pi) * self.frequencies * x.unsqueeze(-1)  # [batch, n, frequencies]
        periodic = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1).transpose(0, 1)  # [n, batch, 2k]
        embedded = torch.relu(torch.baddbmm(self.bias.unsqueeze(1), periodic, self.weight))  # [n, batch, dim]
        return embedded.transpose(0, 1).flatten(1)


class TabularNet(nn.Module):
    """``members`` networks trained side by side; :meth:`predict_proba` averages their probabilities."""

    def __init__(self, args: ModelArgs, *, frequency_scale: float = 0.1) -> None:
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
        self.numeric_embedding = (
            PeriodicEmbedding(args.embedded, args.frequencies, args.numeric_dim, frequency_scale)
            if args.embedded
            else None
        )
        layers: list[nn.Module] = []
        width = args.input_width
        for i, size in enumerate(args.hidden):
            layers += [self._linear(width, size, first=i == 0), MemberBatchNorm(m, size), nn.ReLU()]
            layers.append(FastDropout(args.dropout))
            width = size
        layers.append(self._linear(width, args.outputs, first=not args.hidden))
        self.head = nn.Sequential(*layers)
        self.linear = MemberLinear(m, args.linear_width, args.outputs) if args.linear else None
        if self.linear is not None:  # starts as the MLP alone; grows where a straight line explains the target
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def _linear(self, n_in: int, n_out: int, *, first: bool) -> nn.Module:
        if self.args.ensemble == "batch":
            return SharedMemberLinear(self.args.members, n_in, n_out, first=first)
        return MemberLinear(self.args.members, n_in, n_out)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """The outputs of every member, shape ``[batch, members, outputs]``: logits (binary, multiclass) or the
        scaled target (regression)."""
        batch, members = categorical.shape[0], self.args.members
        embedded = [
            embedding(categorical[:, i]).view(batch, members, -1).transpose(0, 1)
            for i, embedding in enumerate(self.embeddings)
        ]
        if embedded:
            categories = self.embedding_dropout(torch.cat(embedded, dim=2))
        else:  # a table of numbers only
            categories = numeric.new_zeros(members, batch, 0)
        standardised = numeric
        if self.numeric_embedding is not None:
            k = self.args.embedded
            passed = numeric if self.args.raw else numeric[:, k:]
            numeric = torch.cat([self.numeric_embedding(numeric[:, :k]), passed], dim=1)
        inputs = torch.cat(  # member-major: [members, batch, features], so every layer is a plain batched product
            [categories, numeric.unsqueeze(0).expand(members, batch, -1)], dim=2
        )
        outputs: torch.Tensor = self.head(inputs)
        if self.linear is not None:
            outputs = outputs + self.linear(
                torch.cat([categories, standardised.unsqueeze(0).expand(members, batch, -1)], dim=2)
            )
        return outputs.transpose(0, 1)
