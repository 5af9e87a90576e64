"""The training loop: fit the network on the training split, stop early on the validation split.

Batches are slices of tensors built once per split (no per-row ``Dataset``). Runs are seeded and, on the CPU,
deterministic: the same data, parameters and seed give the same weights. Every epoch ends with a checkpoint written
atomically; a run that was interrupted resumes from it exactly, and a checkpoint that does not load or belongs to
other data or parameters is discarded.

Under ``torchrun`` (``distributed.nproc`` > 1) each process trains a DistributedDataParallel replica on its shard
of every epoch (a ``DistributedSampler``, moved on each epoch), so an epoch takes ``nproc`` times the batch size per
step; the training loss is added up over the ranks, rank 0 scores the validation split and its numbers decide the
best epoch and early stopping on every rank, and only rank 0 writes checkpoints. The stage
(:mod:`tabloop.stages.train`) writes the bundle and the reports.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.metrics import precision_recall_curve, roc_auc_score
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, TensorDataset

from tabloop.config import TrainConfig
from tabloop.errors import ConfigError, FeatureError, TabloopError
from tabloop.features.fitting import frame_columns
from tabloop.runtime.bundle import Bundle
from tabloop.runtime.network import ModelArgs, TabularNet, embedding_dim
from tabloop.runtime.preprocessing import PREPROCESSING_FILE, Preprocessor, load_preprocessor
from tabloop.training.distributed import (
    World,
    from_main,
    gathered,
    process_group,
    state_digest,
    sum_over_ranks,
    sync_buffers,
)

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.pt"


class TrainingError(TabloopError):
    """Training went wrong in a way the data and parameters do not explain (replicas that disagree)."""


@dataclass(frozen=True)
class SplitTensors:
    """One split, encoded once: category indices, numbers and the target."""

    categorical: torch.Tensor
    numeric: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def to(self, device: torch.device) -> SplitTensors:
        """The same tensors on ``device``."""
        return SplitTensors(self.categorical.to(device), self.numeric.to(device), self.target.to(device))


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch achieved."""

    epoch: int
    train_loss: float
    valid_loss: float
    valid_roc_auc: float


@dataclass(frozen=True)
class TrainResult:
    """The outcome of a training run."""

    best_epoch: int
    valid_roc_auc: float
    threshold: float
    epochs_run: int
    resumed_from_epoch: int | None
    history: list[EpochRecord]
    weights_sha256: str  # of the kept weights and buffers, the same on every rank


EpochHook = Callable[[EpochRecord], None]


def load_split(features_dir: Path, split: str, preprocessor: Preprocessor) -> SplitTensors:
    """The split's features encoded by the fitted preprocessing, as tensors."""
    path = features_dir / f"{split}.parquet"
    if not path.is_file():
        raise FeatureError(f"{path}: not found; run the features stage first (dvc repro features)")
    frame = pl.read_parquet(path)
    target_name = preprocessor.contract.target.name
    if frame.height == 0:
        raise FeatureError(f"{path}: the {split} split is empty")
    if frame[target_name].n_unique() < 2:
        raise FeatureError(f"{path}: every row of the {split} split has the same label; nothing to learn or score")
    missing = [name for name in preprocessor.contract.features if name not in frame.columns]
    if missing:
        raise FeatureError(f"{path}: columns {missing} of the contract are missing; rebuild the features")
    encoded = preprocessor.transform(frame_columns(frame, preprocessor.contract))
    return SplitTensors(
        categorical=torch.from_numpy(encoded.categorical),
        numeric=torch.from_numpy(encoded.numeric),
        target=torch.from_numpy(frame[target_name].to_numpy().astype(np.float32)),
    )


def resolve_device(name: str) -> torch.device:
    """The device to train on: ``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} was asked for but CUDA is not available here (use auto or cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' was asked for but Apple MPS is not available here (use auto or cpu)")
    return torch.device(name)


def model_args(config: TrainConfig, preprocessor: Preprocessor) -> ModelArgs:
    """Constructor arguments for the network, from the training config and the fitted preprocessing."""
    m = config.model
    return ModelArgs(
        cardinalities=preprocessor.cardinalities,
        embedding_dims=[embedding_dim(c, m.embedding_scale, m.max_embedding_dim) for c in preprocessor.cardinalities],
        n_numeric=len(preprocessor.numeric_names),
        hidden=list(m.hidden),
        dropout=m.dropout,
        members=m.members,
    )


@dataclass(frozen=True)
class Trained:
    """A fitted network at its best epoch, as a bundle, and how the run went."""

    bundle: Bundle
    result: TrainResult


def fit_model(
    config: TrainConfig,
    features_dir: Path,
    checkpoint_path: Path,
    world: World,
    *,
    on_epoch_end: EpochHook | None = None,
) -> Trained:
    """Train, keep the best epoch, choose the threshold on validation; checkpoints go to ``checkpoint_path``."""
    device = _prepare(config, world)
    with process_group(world, device):
        preprocessor = load_preprocessor(features_dir)
        train_split = load_split(features_dir, "train", preprocessor).to(device)
        valid_split = load_split(features_dir, "valid", preprocessor).to(device)
        checkpoint = _Checkpoint(checkpoint_path, run_fingerprint(config, features_dir, world))
        run, resumed = _start(config, model_args(config, preprocessor), device, checkpoint, world)
        _fit(config, run, train_split, valid_split, checkpoint, on_epoch_end=on_epoch_end)

        state = run.state
        run.model.load_state_dict(state.best_state)
        digest = _replica_digest(run)
        proba = predict_proba(run.model, valid_split, config.training.eval_batch_size)
        valid_target = valid_split.target.cpu().numpy()
        threshold = choose_threshold(valid_target, proba) if config.threshold == "f1" else float(config.threshold)
    result = TrainResult(
        best_epoch=state.best_epoch,
        valid_roc_auc=state.best_score,
        threshold=threshold,
        epochs_run=state.epoch,
        resumed_from_epoch=resumed,
        history=state.history,
        weights_sha256=digest,
    )
    bundle = Bundle(run.args, {k: v.cpu() for k, v in state.best_state.items()}, preprocessor, threshold)
    return Trained(bundle, result)


def _prepare(config: TrainConfig, world: World) -> torch.device:
    """The device to train on (this rank's GPU under torchrun), with the thread count and (on the CPU)
    deterministic algorithms set."""
    device = resolve_device(config.device)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    return device


def _replica_digest(run: _Run) -> str:
    """The digest of the kept weights, checked to be the same on every rank."""
    digest = state_digest(run.model.state_dict())
    found = gathered(run.world, digest)
    if len(set(found)) > 1:
        raise TrainingError(f"the {run.world.size} training processes ended with different weights: {found}")
    if run.world.distributed and run.world.is_main:
        logger.info("the %d replicas hold the same weights (sha256 %s)", run.world.size, digest[:12])
    return digest


def _start(
    config: TrainConfig, args: ModelArgs, device: torch.device, checkpoint: _Checkpoint, world: World
) -> tuple[_Run, int | None]:
    """The run to continue: resumed from the checkpoint if it belongs to this run, else fresh; the epoch resumed."""
    run = _fresh_start(config, args, device, world)
    resumed = checkpoint.restore(run)
    if resumed is None:  # a checkpoint that failed half-way may have touched the objects: start clean
        run = _fresh_start(config, args, device, world)
    elif world.is_main:
        logger.info("resuming after epoch %d from %s", resumed, checkpoint.path)
    return run, resumed


def _fit(
    config: TrainConfig,
    run: _Run,
    train_split: SplitTensors,
    valid_split: SplitTensors,
    checkpoint: _Checkpoint,
    *,
    on_epoch_end: EpochHook | None,
) -> None:
    """Epochs until the last one or until validation stops improving for ``patience`` epochs; a checkpoint after
    each."""
    state = run.state
    batches = len(batch_bounds(len(train_split), config.training.batch_size))
    with _progress(enabled=run.world.is_main) as progress:
        task = progress.add_task("train", total=batches, loss=float("nan"), auc=state.best_score)
        while state.epoch < config.training.max_epochs and state.stale < config.training.patience:
            progress.reset(task, total=batches, description=f"epoch {state.epoch + 1}")
            record = _epoch(
                config, run, train_split, valid_split, on_batch=lambda loss: progress.update(task, advance=1, loss=loss)
            )
            state.record(record, run.model)
            progress.update(task, auc=state.best_score)
            _log_epoch(run, record)
            checkpoint.save(run)
            if on_epoch_end is not None:
                on_epoch_end(record)


def _log_epoch(run: _Run, record: EpochRecord) -> None:
    if run.world.is_main:
        logger.info(
            "epoch %2d  train loss %.4f  valid loss %.4f  valid ROC AUC %.4f%s",
            record.epoch,
            record.train_loss,
            record.valid_loss,
            record.valid_roc_auc,
            "  (best)" if run.state.best_epoch == record.epoch else "",
        )


def _epoch(
    config: TrainConfig,
    run: _Run,
    train_split: SplitTensors,
    valid_split: SplitTensors,
    *,
    on_batch: Callable[[float], object],
) -> EpochRecord:
    """One epoch over the training split (this rank's shard of it) in a fresh shuffled order, scored on the
    validation split by rank 0."""
    device = train_split.target.device
    order = _epoch_order(run, len(train_split), config.seed).to(device)
    loss, rows = _run_epoch(
        run.trainer, run.optimizer, train_split, order, config.training.batch_size, on_batch=on_batch
    )
    loss_sum, row_count = sum_over_ranks(run.world, [loss, float(rows)])
    sync_buffers(run.world, run.model)
    valid_loss = valid_roc_auc = 0.0
    if run.world.is_main:
        proba = predict_proba(run.model, valid_split, config.training.eval_batch_size)
        valid_target = valid_split.target.cpu().numpy()
        valid_loss, valid_roc_auc = log_loss(valid_target, proba), float(roc_auc_score(valid_target, proba))
    valid_loss, valid_roc_auc = from_main(run.world, [valid_loss, valid_roc_auc])
    return EpochRecord(
        epoch=run.state.epoch + 1,
        train_loss=round(loss_sum / row_count, 6),
        valid_loss=round(valid_loss, 6),
        valid_roc_auc=round(valid_roc_auc, 6),
    )


def _epoch_order(run: _Run, rows: int, seed: int) -> torch.Tensor:
    """The rows of the next epoch, in order: a permutation of all of them, or under torchrun this rank's shard of
    the epoch's permutation (padded so that every rank takes as many steps)."""
    if not run.world.distributed:
        return torch.randperm(rows, generator=run.shuffle)
    sampler: DistributedSampler[tuple[torch.Tensor, ...]] = DistributedSampler(
        TensorDataset(torch.arange(rows)), num_replicas=run.world.size, rank=run.world.rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(run.state.epoch)
    return torch.tensor(list(sampler), dtype=torch.int64)


@dataclass
class _TrainingState:
    best_state: dict[str, torch.Tensor]
    epoch: int = 0
    best_epoch: int = 0
    best_score: float = float("-inf")
    stale: int = 0
    history: list[EpochRecord] = field(default_factory=list)

    def record(self, record: EpochRecord, model: nn.Module) -> None:
        self.history.append(record)
        self.epoch = record.epoch
        if record.valid_roc_auc > self.best_score:
            self.best_score = record.valid_roc_auc
            self.best_epoch = record.epoch
            self.best_state = copy.deepcopy(model.state_dict())
            self.stale = 0
        else:
            self.stale += 1


@dataclass
class _Run:
    """What a run trains and carries from epoch to epoch: the network (and what steps it: itself, or its
    DistributedDataParallel wrapper under torchrun), its optimiser, the shuffling generator and the state."""

    args: ModelArgs
    model: TabularNet
    trainer: nn.Module
    optimizer: torch.optim.Optimizer
    shuffle: torch.Generator
    state: _TrainingState
    world: World


def _fresh_start(config: TrainConfig, args: ModelArgs, device: torch.device, world: World) -> _Run:
    """A seeded network, its optimiser, the shuffling generator and an empty state; under torchrun, the network
    wrapped for data parallelism and each rank's dropout seeded apart."""
    torch.manual_seed(config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)
    model = TabularNet(args).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay
    )
    trainer: nn.Module = model
    if world.distributed:
        trainer = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        torch.manual_seed(config.seed + world.rank)
    state = _TrainingState(best_state=copy.deepcopy(model.state_dict()))
    return _Run(args, model, trainer, optimizer, shuffle, state, world)


def batch_bounds(rows: int, batch_size: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each batch of an epoch; a lone last row joins the batch before it, because batch
    normalisation cannot train on a batch of one."""
    bounds = [(start, min(start + batch_size, rows)) for start in range(0, rows, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], rows)]
    return bounds


def _run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    split: SplitTensors,
    order: torch.Tensor,
    batch_size: int,
    *,
    on_batch: Callable[[float], object],
) -> tuple[float, int]:
    """One pass over the rows of ``split`` in ``order``, sliced into batches; the training loss summed over the
    rows, and their number."""
    model.train()
    loss_fn = nn.BCEWithLogitsLoss()
    total = 0.0
    for start, end in batch_bounds(len(order), batch_size):
        rows = order[start:end]
        logits = model(split.categorical[rows], split.numeric[rows])
        loss = loss_fn(logits, split.target[rows].unsqueeze(1).expand_as(logits))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.detach().item()
        total += value * len(rows)
        on_batch(value)
    return total, len(order)


def predict_proba(model: TabularNet, split: SplitTensors, batch_size: int) -> npt.NDArray[np.float64]:
    """Averaged member probabilities for every row of ``split``, in evaluation mode."""
    was_training = model.training
    model.eval()
    parts = [
        model.predict_proba(split.categorical[i : i + batch_size], split.numeric[i : i + batch_size])
        for i in range(0, len(split), batch_size)
    ]
    model.train(was_training)
    return torch.cat(parts).cpu().numpy().astype(np.float64)


def log_loss(target: npt.NDArray[Any], proba: npt.NDArray[np.float64]) -> float:
    """Mean binary cross-entropy of probabilities (clipped away from 0 and 1)."""
    p = np.clip(proba, 1e-7, 1 - 1e-7)
    return float(-np.mean(target * np.log(p) + (1 - target) * np.log(1 - p)))


def choose_threshold(target: npt.NDArray[Any], proba: npt.NDArray[np.float64]) -> float:
    """The probability threshold that maximises F1 on ``target``."""
    precision, recall, thresholds = precision_recall_curve(target, proba)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


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
class _Checkpoint:
    """The run's checkpoint file, written atomically after each epoch; it resumes only the run whose inputs have
    its fingerprint."""

    path: Path
    fingerprint: str

    def save(self, run: _Run) -> None:
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

    def restore(self, run: _Run) -> int | None:
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


def _progress(*, enabled: bool = True) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  best valid AUC {task.fields[auc]:.4f}"),
        TimeElapsedColumn(),
        transient=True,
        disable=not (enabled and sys.stderr.isatty()),
    )
