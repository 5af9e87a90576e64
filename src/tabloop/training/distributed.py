"""Data-parallel training across the processes ``torchrun`` starts: which one this is, and the few collective steps
training needs (gloo on the CPU, NCCL on CUDA).

A process not started by ``torchrun`` is a world of one: nothing is initialised and every step below returns its
input, so single-process training runs exactly the code it always ran.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from tabloop.settings import TorchrunSettings, from_environment


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and
    ``LOCAL_RANK``)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> World:
        """This process's place, from what torchrun set (:class:`~tabloop.settings.TorchrunSettings`)."""
        given = from_environment(TorchrunSettings)
        return cls(rank=given.rank, size=given.world_size or 1, local_rank=given.local_rank or 0)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes: checkpoints, the bundle, the reports and the log of each epoch."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun started this process (a process it started does not start it again)."""
    return from_environment(TorchrunSettings).launched


def torchrun_command(nproc: int, module: str, args: list[str]) -> list[str]:
    """``python -m module args`` in ``nproc`` processes on this machine, started by torchrun: if one fails, torchrun
    stops the others and exits with an error naming it. (On several machines, run ``torchrun`` yourself with
    ``--nnodes`` and a rendezvous endpoint; a process torchrun started does not start it again.)"""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "--max-restarts=0",
        "-m",
        module,
        *args,
    ]


@contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """The process group for the duration of the block: NCCL when training on CUDA, gloo otherwise."""
    if not world.distributed:
        yield
        return
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    yield  # a rank that raised leaves the group to its exit: tearing it down while a peer waits can deadlock
    dist.barrier()  # every rank is done with collectives before any tears the group down (a lone destroy can hang)
    dist.destroy_process_group()


def sum_over_ranks(world: World, values: list[float]) -> list[float]:
    """Each of ``values`` added up over the ranks (float64)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) for v in tensor.tolist()]


def from_main(world: World, values: list[float]) -> list[float]:
    """Rank 0's ``values``, on every rank: how the decisions rank 0 takes reach the others."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.broadcast(tensor, src=0)
    return [float(v) for v in tensor.tolist()]


def sync_buffers(world: World, module: nn.Module) -> None:
    """Rank 0's buffers (batch normalisation's running statistics) copied to every rank: each rank updates its
    own from its own batches, and the replicas must be the same model when it is scored or kept."""
    if world.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gathered(world: World, value: object) -> list[object]:
    """``value`` of every rank, in rank order."""
    if not world.distributed:
        return [value]
    found: list[object] = [None] * world.size
    dist.all_gather_object(found, value)
    return found


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names and bytes: equal digests mean identical weights and buffers."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
