"""Data-parallel training under torchrun: two CPU processes (gloo) give identical replicas and a valid bundle, a
failing rank fails the job at once, and the checkpoint it leaves resumes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml

from helpers import REPO_ROOT
from tabloop.config import DistributedConfig, TrainConfig
from tabloop.features.fitting import frame_columns
from tabloop.io import read_json
from tabloop.runtime.bundle import Bundle, Predictor
from tabloop.training.checkpoint import CHECKPOINT_FILE

HERE = Path(__file__).parent


@pytest.fixture
def workdir(stage_outputs: dict[str, Path], tmp_path: Path) -> Path:
    shutil.copytree(stage_outputs["features"], tmp_path / "features")
    return tmp_path


def two_processes(train_config: TrainConfig, **training: int) -> TrainConfig:
    loop = train_config.training.model_copy(update={"max_epochs": 4, "patience": 4, **training})
    return train_config.model_copy(update={"training": loop, "distributed": DistributedConfig(nproc=2), "threads": 0})


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(HERE.parent)])}


def test_two_processes_train_identical_replicas_into_a_valid_bundle(workdir: Path, train_config: TrainConfig) -> None:
    config = two_processes(train_config)
    (workdir / "train.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.train", "--config", str(workdir / "train.yaml"),
         "--features", str(workdir / "features"), "--out", str(workdir / "bundle"),
         "--reports", str(workdir / "reports"), "--checkpoints", str(workdir / "checkpoints")],
        cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "the 2 replicas hold the same weights" in output  # checked on every rank, or training fails
    metrics = read_json(workdir / "reports" / "metrics.json")
    assert metrics["epochs_run"] == 4
    predictor = Predictor(Bundle.load(workdir / "bundle"))
    rows = pl.read_parquet(workdir / "features" / "test.parquet").head(50)
    proba = predictor.predict_proba(frame_columns(rows, predictor.bundle.contract))
    assert np.all((proba > 0) & (proba < 1))
    assert not (workdir / "checkpoints" / CHECKPOINT_FILE).exists()  # removed once the bundle is written


def crash_probe(config: Path, root: Path, crash_after: int) -> subprocess.CompletedProcess[str]:
    """``ddp_crash.py`` in two processes under torchrun, rank 1 failing after epoch ``crash_after`` (0: never)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "--max-restarts=0"]
    command = [*torchrun, str(HERE / "ddp_crash.py"), str(config), str(root), str(crash_after)]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=600, check=False
    )


def test_a_failing_rank_fails_the_job_fast_and_its_checkpoint_resumes_exactly(
    workdir: Path, train_config: TrainConfig, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = workdir / "config.json"
    config.write_text(two_processes(train_config).model_dump_json())
    started = time.monotonic()
    failed = crash_probe(config, workdir, crash_after=2)
    assert time.monotonic() - started < 120  # torchrun stops the surviving rank, which would wait for its peer
    assert failed.returncode != 0
    assert "rank 1 fails on purpose after epoch 2" in failed.stdout + failed.stderr
    checkpoint = torch.load(workdir / "checkpoints" / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] >= 2
    assert len(checkpoint["torch_rng_ranks"]) == 2
    assert not (workdir / "bundle").exists()

    resumed = crash_probe(config, workdir, crash_after=0)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming after epoch {checkpoint['epoch']}" in resumed.stdout + resumed.stderr
    assert read_json(workdir / "reports" / "metrics.json")["epochs_run"] == 4
    assert (workdir / "rank0.sha256").read_text() == (workdir / "rank1.sha256").read_text()

    straight = tmp_path_factory.mktemp("uninterrupted")
    shutil.copytree(workdir / "features", straight / "features")
    assert crash_probe(config, straight, crash_after=0).returncode == 0
    assert (straight / "rank0.sha256").read_text() == (workdir / "rank0.sha256").read_text()
