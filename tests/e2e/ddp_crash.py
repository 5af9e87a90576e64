"""Run by torchrun from test_distributed_training.py: training in which rank 1 fails after epoch ``argv[3]`` (0:
never); each rank that finishes writes the digest of its weights to ``rank<n>.sha256``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from tabloop.config import TrainConfig
from tabloop.stages.train import run as train
from tabloop.training.checkpoint import EpochRecord
from tabloop.training.distributed import World


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = TrainConfig.model_validate_json(Path(sys.argv[1]).read_text())
    root, crash_after = Path(sys.argv[2]), int(sys.argv[3])
    rank = World.from_environment().rank

    def crash(record: EpochRecord) -> None:
        if rank == 1 and record.epoch == crash_after:
            raise RuntimeError(f"rank 1 fails on purpose after epoch {record.epoch}")

    result = train(
        config, root / "features", root / "bundle", root / "reports", root / "checkpoints", on_epoch_end=crash
    )
    (root / f"rank{rank}.sha256").write_text(result.weights_sha256)


if __name__ == "__main__":
    main()
