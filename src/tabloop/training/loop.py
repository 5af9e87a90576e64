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
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, TensorDataset

from tabloop.config import TrainConfig
from tabloop.errors import ConfigError, TabloopError
from tabloop.records import PrimaryMetric
from tabloop.runtime.bundle import Bundle
from tabloop.runtime.model_args import ModelArgs, embedding_dim
from tabloop.runtime.network import TabularNet
from tabloop.runtime.preprocessing import Preprocessor, load_preprocessor
from tabloop.training.checkpoint import Checkpoint, EpochRecord, Run, TrainingState, run_fingerprint
from tabloop.training.distributed import (
    World,
    from_main,
    gathered,
    process_group,
    state_digest,
    sum_over_ranks,
    sync_buffers,
)
from tabloop.training.objective import Objective
from tabloop.training.tensors import SplitTensors, batch_bounds, choose_threshold, load_split

logger = logging.getLogger(__name__)


class TrainingError(TabloopError):
    """Training went wrong in a way the data and parameters do not explain (replicas that disagree)."""


@dataclass(frozen=True)
class TrainResult:
    """The outcome of a training run."""

    best_epoch: int
    valid_score: float  # of the task's primary metric
    threshold: float | None  # a binary model's
    epochs_run: int
    resumed_from_epoch: int | None
    history: list[EpochRecord]
    weights_sha256: str  # of the kept weights and buffers, the same on every rank
    primary: PrimaryMetric


EpochHook = Callable[[EpochRecord], None]


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
        outputs=preprocessor.contract.target.outputs,
        embedded=len(preprocessor.numeric) if m.numeric_embedding == "periodic" else 0,
        frequencies=m.frequencies,
        numeric_dim=m.numeric_dim,
        raw=m.raw_numbers and m.numeric_embedding == "periodic",
        ensemble=m.ensemble,
        linear=m.linear,
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
    progress: bool = True,
) -> Trained:
    """Train, keep the best epoch, choose the threshold on validation; checkpoints go to ``checkpoint_path``.
    ``on_epoch_end`` sees every epoch's record (and may stop the run by raising); ``progress``: draw the bar."""
    device = _prepare(config, world)
    with process_group(world, device):
        preprocessor = load_preprocessor(features_dir)
        _check_threshold(config, preprocessor.contract.target.task)
        train_split = load_split(features_dir, "train", preprocessor).to(device)
        valid_split = load_split(features_dir, "valid", preprocessor).to(device)
        checkpoint = Checkpoint(checkpoint_path, run_fingerprint(config, features_dir, world))
        objective = Objective.fit(preprocessor.contract.target, train_split.target.cpu().numpy())
        run, resumed = _start(
            config, model_args(config, preprocessor), objective, device, checkpoint=checkpoint, world=world
        )
        _fit(config, run, train_split, valid_split, checkpoint, on_epoch_end=on_epoch_end, progress=progress)

        state = run.state
        run.model.load_state_dict(state.best_state)
        digest = _replica_digest(run)
        threshold = _threshold(config, run, valid_split)
    result = TrainResult(
        best_epoch=state.best_epoch,
        valid_score=state.best_score,
        threshold=threshold,
        epochs_run=state.epoch,
        resumed_from_epoch=resumed,
        history=state.history,
        weights_sha256=digest,
        primary=objective.primary,
    )
    weights = {name: tensor.detach().cpu().numpy().copy() for name, tensor in state.best_state.items()}
    bundle = Bundle(run.args, weights, preprocessor, threshold, scaling=objective.scaling)
    return Trained(bundle, result)


def _check_threshold(config: TrainConfig, task: str) -> None:
    """A ConfigError for a fixed decision threshold on a model that has none (multiclass, regression)."""
    if config.threshold != "f1" and task != "binary":
        raise ConfigError(
            f"threshold: {config.threshold} in train.yaml fixes a binary model's decision threshold, and this "
            f"dataset's task is {task}; remove the key"
        )


def _threshold(config: TrainConfig, run: Run, valid_split: SplitTensors) -> float | None:
    """A binary model's decision threshold: the one that maximises F1 on validation, or the configured one."""
    if run.objective.target.task != "binary":
        return None
    if config.threshold != "f1":
        return float(config.threshold)
    proba = run.objective.predict(run.model, valid_split, config.training.eval_batch_size)
    return choose_threshold(valid_split.target.cpu().numpy(), proba)


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


def _replica_digest(run: Run) -> str:
    """The digest of the kept weights, checked to be the same on every rank."""
    digest = state_digest(run.model.state_dict())
    found = gathered(run.world, digest)
    if len(set(found)) > 1:
        raise TrainingError(f"the {run.world.size} training processes ended with different weights: {found}")
    if run.world.distributed and run.world.is_main:
        logger.info("the %d replicas hold the same weights (sha256 %s)", run.world.size, digest[:12])
    return digest


def _start(
    config: TrainConfig,
    args: ModelArgs,
    objective: Objective,
    device: torch.device,
    *,
    checkpoint: Checkpoint,
    world: World,
) -> tuple[Run, int | None]:
    """The run to continue: resumed from the checkpoint if it belongs to this run, else fresh; the epoch resumed."""
    run = _fresh_start(config, args, objective, device, world)
    resumed = checkpoint.restore(run)
    if resumed is None:  # a checkpoint that failed half-way may have touched the objects: start clean
        run = _fresh_start(config, args, objective, device, world)
    elif world.is_main:
        logger.info("resuming after epoch %d from %s", resumed, checkpoint.path)
    return run, resumed


def _fit(
    config: TrainConfig,
    run: Run,
    train_split: SplitTensors,
    valid_split: SplitTensors,
    checkpoint: Checkpoint,
    *,
    on_epoch_end: EpochHook | None,
    progress: bool,
) -> None:
    """Epochs until the last one or until validation stops improving for ``patience`` epochs; a checkpoint after
    each."""
    state = run.state
    batches = len(batch_bounds(len(train_split), config.training.batch_for(len(train_split))))
    with _progress(enabled=run.world.is_main and progress) as bar:
        task = bar.add_task(
            "train", total=batches, loss=float("nan"), score=state.best_score, metric=run.objective.primary.title
        )
        while state.epoch < config.training.max_epochs and state.stale < config.training.patience:
            bar.reset(task, total=batches, description=f"epoch {state.epoch + 1}")
            record = _epoch(
                config, run, train_split, valid_split, on_batch=lambda loss: bar.update(task, advance=1, loss=loss)
            )
            state.record(record, run.model)
            bar.update(task, score=state.best_score)
            _log_epoch(run, record)
            checkpoint.save(run)
            if on_epoch_end is not None:
                on_epoch_end(record)


def _log_epoch(run: Run, record: EpochRecord) -> None:
    if run.world.is_main:
        logger.info(
            "epoch %2d  train loss %.4f  valid loss %.4f  valid %s %.4f%s",
            record.epoch,
            record.train_loss,
            record.valid_loss,
            run.objective.primary.title,
            record.valid_score,
            "  (best)" if run.state.best_epoch == record.epoch else "",
        )


def _epoch(
    config: TrainConfig,
    run: Run,
    train_split: SplitTensors,
    valid_split: SplitTensors,
    *,
    on_batch: Callable[[float], object],
) -> EpochRecord:
    """One epoch over the training split (this rank's shard of it) in a fresh shuffled order, scored on the
    validation split by rank 0."""
    device = train_split.target.device
    order = _epoch_order(run, len(train_split), config.seed).to(device)
    batch_size = config.training.batch_for(len(train_split))
    loss, rows = _run_epoch(run, train_split, order, batch_size, on_batch=on_batch)
    loss_sum, row_count = sum_over_ranks(run.world, [loss, float(rows)])
    sync_buffers(run.world, run.model)
    valid_loss = valid_score = 0.0
    if run.world.is_main:
        prediction = run.objective.predict(run.model, valid_split, config.training.eval_batch_size)
        valid_loss, valid_score = run.objective.score(valid_split.target.cpu().numpy(), prediction)
    valid_loss, valid_score = from_main(run.world, [valid_loss, valid_score])
    return EpochRecord(
        epoch=run.state.epoch + 1,
        train_loss=round(loss_sum / row_count, 6),
        valid_loss=round(valid_loss, 6),
        valid_score=round(valid_score, 6),
    )


def _epoch_order(run: Run, rows: int, seed: int) -> torch.Tensor:
    """The rows of the next epoch, in order: a permutation of all of them, or under torchrun this rank's shard of
    the epoch's permutation (padded so that every rank takes as many steps)."""
    if not run.world.distributed:
        return torch.randperm(rows, generator=run.shuffle)
    sampler: DistributedSampler[tuple[torch.Tensor, ...]] = DistributedSampler(
        TensorDataset(torch.arange(rows)), num_replicas=run.world.size, rank=run.world.rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(run.state.epoch)
    return torch.tensor(list(sampler), dtype=torch.int64)


def _fresh_start(config: TrainConfig, args: ModelArgs, objective: Objective, device: torch.device, world: World) -> Run:
    """A seeded network, its optimiser, the shuffling generator and an empty state; under torchrun, the network
    wrapped for data parallelism and each rank's dropout seeded apart."""
    torch.manual_seed(config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)
    model = TabularNet(args, frequency_scale=config.model.frequency_scale).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay
    )
    trainer: nn.Module = model
    if world.distributed:
        trainer = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        torch.manual_seed(config.seed + world.rank)
    state = TrainingState(best_state=copy.deepcopy(model.state_dict()), primary=objective.primary)
    return Run(args, model, trainer, optimizer, shuffle, state, world, objective)


def _run_epoch(
    run: Run,
    split: SplitTensors,
    order: torch.Tensor,
    batch_size: int,
    *,
    on_batch: Callable[[float], object],
) -> tuple[float, int]:
    """One pass over the rows of ``split`` in ``order``, sliced into batches; the training loss summed over the
    rows, and their number."""
    run.trainer.train()
    total = 0.0
    for start, end in batch_bounds(len(order), batch_size):
        rows = order[start:end]
        outputs = run.trainer(split.categorical[rows], split.numeric[rows])
        loss = run.objective.loss(outputs, split.target[rows])
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        run.optimizer.step()
        value = loss.detach().item()
        total += value * len(rows)
        on_batch(value)
    return total, len(order)


def _progress(*, enabled: bool = True) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  best valid {task.fields[metric]} {task.fields[score]:.4f}"),
        TimeElapsedColumn(),
        transient=True,
        disable=not (enabled and sys.stderr.isatty()),
    )
