"""The training configuration (``train.yaml``): the network, the optimiser, the loop, distributed training."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tabloop.runtime.contract import StrictModel


class ModelConfig(StrictModel):
    """Sizes of the network."""

    members: int = Field(3, ge=1, le=32)
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64])
    dropout: float = Field(0.3, ge=0, lt=1)
    embedding_scale: float = Field(0.5, gt=0)
    max_embedding_dim: int = Field(32, ge=1)


class OptimizerConfig(StrictModel):
    """AdamW settings."""

    lr: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(0.01, ge=0)


class LoopConfig(StrictModel):
    """Batching and stopping."""

    batch_size: int = Field(256, ge=1)
    max_epochs: int = Field(60, ge=1)
    patience: int = Field(6, ge=1)
    eval_batch_size: int = Field(65536, ge=1)


class DistributedConfig(StrictModel):
    """Data-parallel training: ``nproc`` processes on this machine, started by ``torchrun`` (1: one process)."""

    nproc: int = Field(1, ge=1, le=256)


class TrainConfig(StrictModel):
    """Everything the train stage needs: ``configs/train.yaml``."""

    seed: int = Field(42, ge=0)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    threads: int = Field(0, ge=0)
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    training: LoopConfig = LoopConfig()
    distributed: DistributedConfig = DistributedConfig()
    threshold: Literal["f1"] | Annotated[float, Field(gt=0, lt=1)] = "f1"
