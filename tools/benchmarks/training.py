"""Training throughput: batches sliced from tensors built once, against a per-row Dataset and a DataLoader.

The anchor is the textbook PyTorch input pipeline: a ``Dataset`` whose ``__getitem__`` returns one encoded row and
a ``DataLoader`` that collates rows into shuffled batches. Both feed the same network, with the same optimiser and
batch size, on the full training split, in the same process. Goal: the sliced path at least 3x faster.

The ratio depends on how much the model computes per row: the loader's cost is per row and fixed, so the cheaper
the model, the larger the share the input pipeline takes. Both the configured model (an ensemble of members) and a
single member of the same architecture are measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from torch.utils.data import DataLoader, Dataset

from tabloop.config import TrainConfig, load_train_config
from tabloop.runtime.network import TabularNet
from tabloop.runtime.preprocessing import Preprocessor, load_preprocessor
from tabloop.training.loop import model_args
from tabloop.training.tensors import SplitTensors, load_split
from tools.benchmarks.display import table, yes
from tools.benchmarks.measure import where

GOAL_RATIO = 3.0
SLICED, LOADER = "sliced tensors", "Dataset + DataLoader"


@dataclass(frozen=True)
class PathRun:
    """One input pipeline's best epoch: its seconds and training rows a second."""

    epoch_s: float
    rows_per_s: int


@dataclass(frozen=True)
class ModelRun:
    """Both input pipelines for one model configuration, by name, and the sliced path's speed-up."""

    members: int
    paths: dict[str, PathRun]
    speedup: float


@dataclass(frozen=True)
class TrainingResult:
    """The training benchmark: the configured ensemble and a single member, each on both input pipelines."""

    rows: int
    batch_size: int
    anchor: str
    configured: ModelRun
    single_member: ModelRun
    goal: float
    met: bool

    def show(self, console: Console) -> None:
        """Rows a second of both pipelines for both models, against the goal, as a table."""
        shown = table(
            f"Training input pipeline ({self.rows:,} rows, batch {self.batch_size})",
            ("model", "sliced tensors", "Dataset + DataLoader (anchor)", "speed-up", "goal >= 3x"),
        )
        for r, label in ((self.configured, "configured ensemble"), (self.single_member, "one member")):
            shown.add_row(
                f"{label} ({r.members} member{'s' if r.members > 1 else ''})",
                f"{r.paths[SLICED].rows_per_s:,} rows/s",
                f"{r.paths[LOADER].rows_per_s:,} rows/s",
                f"{r.speedup:.2f}x",
                yes(r.speedup >= self.goal),
            )
        console.print(shown)


class RowDataset(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """One encoded row at a time, as a per-row pipeline serves them."""

    def __init__(self, split: SplitTensors) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.split.categorical[i], self.split.numeric[i], self.split.target[i]


def _step(
    model: TabularNet, optimizer: torch.optim.Optimizer, c: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> None:
    logits = model(c, x)[..., 0]  # the network answers [batch, members, outputs]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.unsqueeze(1).expand_as(logits))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()


def sliced_epoch(model: TabularNet, optimizer: torch.optim.Optimizer, split: SplitTensors, batch: int) -> None:
    """One epoch the way the train stage runs it."""
    order = torch.randperm(len(split))
    for start in range(0, len(split), batch):
        rows = order[start : start + batch]
        _step(model, optimizer, split.categorical[rows], split.numeric[rows], split.target[rows])


def loader_epoch(
    model: TabularNet,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> None:
    """One epoch through a per-row Dataset and a DataLoader."""
    for c, x, y in loader:
        _step(model, optimizer, c, x, y)


def measure(split: SplitTensors, train_config: TrainConfig, preprocessor: Preprocessor, epochs: int) -> ModelRun:
    """Rows per second of both input pipelines for one model configuration (best of ``epochs`` epochs)."""
    batch = train_config.training.batch_for(len(split))
    loader = DataLoader(RowDataset(split), batch_size=batch, shuffle=True, num_workers=0)
    epochs_by_path: dict[str, Callable[[TabularNet, torch.optim.Optimizer], None]] = {
        SLICED: lambda m, o: sliced_epoch(m, o, split, batch),
        LOADER: lambda m, o: loader_epoch(m, o, loader),
    }
    paths = {
        name: _best_epoch(epoch, split, train_config, preprocessor, epochs) for name, epoch in epochs_by_path.items()
    }
    ratio = paths[SLICED].rows_per_s / paths[LOADER].rows_per_s
    return ModelRun(members=train_config.model.members, paths=paths, speedup=round(ratio, 2))


def _best_epoch(
    epoch: Callable[[TabularNet, torch.optim.Optimizer], None],
    split: SplitTensors,
    train_config: TrainConfig,
    preprocessor: Preprocessor,
    epochs: int,
) -> PathRun:
    torch.manual_seed(0)
    model = TabularNet(model_args(train_config, preprocessor)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.optimizer.lr)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        epoch(model, optimizer)
        times.append(time.perf_counter() - start)
    return PathRun(epoch_s=round(min(times), 2), rows_per_s=round(len(split) / min(times)))


def run(features: Path | None = None, config: Path | None = None, epochs: int = 2) -> TrainingResult:
    """The input pipelines compared for the configured ensemble and for a single member."""
    features = features or where().features
    config = config or where().train_config
    train_config = load_train_config(config)
    preprocessor = load_preprocessor(features)
    split = load_split(features, "train", preprocessor)
    torch.set_num_threads(train_config.threads or torch.get_num_threads())
    single = train_config.model_copy(update={"model": train_config.model.model_copy(update={"members": 1})})
    configured = measure(split, train_config, preprocessor, epochs)
    one_member = measure(split, single, preprocessor, epochs)
    return TrainingResult(
        rows=len(split),
        batch_size=train_config.training.batch_for(len(split)),
        anchor=LOADER,
        configured=configured,
        single_member=one_member,
        goal=GOAL_RATIO,
        met=configured.speedup >= GOAL_RATIO,
    )
