"""A run's state from epoch to epoch, and its checkpoint: written atomically after each epoch, resumed exactly."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from tabloop.config import TrainConfig
from tabloop.records import PrimaryMetric
from tabloop.runtime.model_args import ModelArgs
from tabloop.runtime.network import TabularNet
from tabloop.runtime.preprocessing import PREPROCESSING_FILE
from tabloop.training.distributed import (
    World,
    gathered,
)
from tabloop.training.objective import Objective

CHECKPOINT_FILE = "last.pt"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch achieved: the losses, and the validation score of the task's primary metric."""

    epoch: int
    train_loss: float
    valid_loss: float
    valid_score: float


@dataclass
class TrainingState:
    best_state: dict[str, torch.Tensor]
    primary: PrimaryMetric
    epoch: int = 0
    best_epoch: int = 0
    best_score: float = float("nan")  # nan until the first epoch: no score is better than it
    stale: int = 0
    history: list[EpochRecord] = field(default_factory=list)

    def record(self, record: EpochRecord, model: nn.Module) -> None:
        self.history.append(record)
        self.epoch = record.epoch
        if self.best_epoch == 0 or self.primary.better(record.valid_score, self.best_score):
            self.best_score = record.valid_score
            self.best_epoch = record.epoch
            self.best_state = copy.deepcopy(model.state_dict())
            self.stale = 0
        else:
            self.stale += 1


@dataclass
class Run:
    """What a run trains and carries from epoch to epoch: the network (and what steps it: itself, or its
    DistributedDataParallel wrapper under torchrun), its optimiser, the shuffling generator and the state."""

    args: ModelArgs
    model: TabularNet
    trainer: nn.Module
    optimizer: torch.optim.Optimizer
    shuffle: torch.Generator
    state: TrainingState
    world: World
    objective: Objective


def run_fingerprint(config: TrainConfig, features_dir: Path, world: World | None = None) -> str:
    """Identity of a training run's inputs (and of its number of processes); a checkpoint resumes only a run with
    the same fingerprint."""
    digest = hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode())
    if world is not None and world.distributed:
        digest.update(f"world size {world.size}".encode())
    for name in (PREPROCESSING_FILE, "train.parquet", "valid.parquet"):
        digest.update((features_dir / name).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """The run's checkpoint file, written atomically after each epoch; it resumes only the run whose inputs have
    its fingerprint."""

    path: Path
    fingerprint: str

    def save(self, run: Run) -> None:
        """Everything a resumed run needs to continue exactly, written to a temporary file and renamed over, by
        rank 0 (every rank calls it: each one's random state goes in too)."""
        rng = gathered(run.world, torch.get_rng_state())
        if not run.world.is_main:
            return
        state = run.state
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "fingerprint": self.fingerprint,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "best_state": state.best_state,
            "epoch": state.epoch,
            "best_epoch": state.best_epoch,
            "best_score": state.best_score,
            "stale": state.stale,
            "history": [asdict(r) for r in state.history],
            "torch_rng": rng[0],
            "shuffle_rng": run.shuffle.get_state(),
            **({"torch_rng_ranks": rng} if run.world.distributed else {}),
        }
        partial = self.path.with_suffix(".partial")
        torch.save(payload, partial)
        partial.replace(self.path)

    def restore(self, run: Run) -> int | None:
        """Restore ``run`` from the checkpoint if it belongs to this run; its epoch, or None."""
        if not self.path.exists():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
            if payload["fingerprint"] != self.fingerprint:
                logger.warning("discarding %s: it belongs to other data or parameters", self.path)
                self.path.unlink()
                return None
            run.model.load_state_dict(payload["model"])
            run.optimizer.load_state_dict(payload["optimizer"])
            torch.set_rng_state(
                payload["torch_rng_ranks"][run.world.rank] if run.world.distributed else payload["torch_rng"]
            )
            run.shuffle.set_state(payload["shuffle_rng"])
            state = run.state
            state.best_state = payload["best_state"]
            state.epoch = int(payload["epoch"])
            state.best_epoch = int(payload["best_epoch"])
            state.best_score = float(payload["best_score"])
            state.stale = int(payload["stale"])
            state.history = [EpochRecord(**r) for r in payload["history"]]
        except Exception as e:  # any unreadable checkpoint means: start again
            logger.warning("discarding %s: it cannot be loaded (%s); training starts from scratch", self.path, e)
            self.path.unlink(missing_ok=True)
            return None
        return state.epoch
