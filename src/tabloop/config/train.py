"""The training configuration (``train.yaml``): the network, the optimiser, the loop, distributed training."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from tabloop.runtime.contract import StrictModel


class ModelConfig(StrictModel):
    """The network. The defaults are the recipe a new table meets untuned: chosen on the validation splits of six
    tables of every task kind (binary, multiclass, regression; 300 to 220,000 training rows)."""

    members: int = Field(3, ge=1, le=64)
    ensemble: Literal["independent", "batch"] = "independent"
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [128, 128])
    dropout: float = Field(0.15, ge=0, lt=1)
    embedding_scale: float = Field(0.5, gt=0)
    max_embedding_dim: int = Field(32, ge=1)
    numeric_embedding: Literal["none", "periodic"] = "periodic"
    frequencies: int = Field(16, ge=1, le=256)  # of a periodic embedding, per number
    frequency_scale: float = Field(0.1, gt=0, le=100)  # standard deviation of the initial frequencies
    numeric_dim: int = Field(8, ge=1, le=256)  # numbers out of each number's embedding
    raw_numbers: bool = True  # embedded numbers also enter as they are (a path that extends past the training range)
    linear: bool = True  # a linear map of the inputs added to the outputs (a wide-and-deep network)


class OptimizerConfig(StrictModel):
    """AdamW settings."""

    lr: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(0.01, ge=0)


class LoopConfig(StrictModel):
    """Batching and stopping."""

    batch_size: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"

    def batch_for(self, rows: int) -> int:
        """The batch size for a training split of ``rows`` rows: the configured one, or for ``auto`` a power of two
        near rows / 64 from 32 to 1024: about 64 steps an epoch, fewer below 2,000 rows and more above 65,000."""
        if self.batch_size != "auto":
            return self.batch_size
        return int(min(1024, max(32, 2 ** round(math.log2(max(rows, 1) / 64)))))

    max_epochs: int = Field(200, ge=1)
    patience: int = Field(10, ge=1)
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
