"""Training in one process against two under torchrun, on the full training split of the dataset.

Both run the train stage's own command (``pipelines/run train``) with the configured model and loop, once
with ``distributed.nproc: 1`` (the anchor) and once with 2, one after the other, each into a scratch directory.
Reported: wall time (process start to bundle written), training rows per second (epochs run x training rows /
wall) and the bundle's ROC AUC on the test split. The two do not train the same model: two processes take twice
the rows per step (half the steps per epoch at the same learning rate), so they may stop at another epoch.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
import yaml
from rich.console import Console
from sklearn.metrics import roc_auc_score

from tabloop.config import DistributedConfig, load_train_config
from tabloop.features.fitting import frame_columns
from tabloop.io import read_json
from tabloop.runtime.bundle import Predictor
from tools.benchmarks.display import table
from tools.benchmarks.measure import GIB, BenchmarkError, run_command, where
from tools.benchmarks.workspace import REPO_ROOT, environment


@dataclass(frozen=True)
class Trained:
    """One full training run: its wall time, memory, epochs, throughput and ROC AUC."""

    wall_s: float
    peak_gib: float
    epochs_run: int
    best_epoch: int
    rows_per_s: int
    valid_roc_auc: float
    test_roc_auc: float


@dataclass(frozen=True)
class ProcessRun(Trained):
    """A training run in some processes, with its speed-up over the anchor's."""

    speedup: float


@dataclass(frozen=True)
class DistributedResult:
    """The distributed benchmark: a run per process count, keyed by the count."""

    train_rows: int
    anchor: str
    runs: dict[str, ProcessRun]

    @property
    def met(self) -> bool:
        """Always: there is no goal, the figures are reported side by side."""
        return True

    def show(self, console: Console) -> None:
        """Each process count's figures, side by side, as a table."""
        shown = table(
            f"Training in processes under torchrun ({self.train_rows:,} training rows, full run)",
            ("processes", "wall", "rows/s", "speed-up", "epochs (best)", "valid ROC AUC", "test ROC AUC"),
        )
        for n, r in self.runs.items():
            anchor = " (anchor)" if f"nproc {n}" == self.anchor else ""
            shown.add_row(
                f"{n}{anchor}",
                f"{r.wall_s} s",
                f"{r.rows_per_s:,}",
                f"{r.speedup:.2f}x",
                f"{r.epochs_run} ({r.best_epoch})",
                f"{r.valid_roc_auc:.4f}",
                f"{r.test_roc_auc:.4f}",
            )
        console.print(shown)


def run(processes: tuple[int, ...] = (1, 2)) -> DistributedResult:
    """Each process count's wall time, throughput and test ROC AUC, and the speed-up over one process."""
    layout = where()
    rows = pl.scan_parquet(layout.features / "train.parquet").select(pl.len()).collect().item()
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        runs = {n: _train(n, Path(tmp) / f"nproc{n}", layout.features, layout.train_config, rows) for n in processes}
    anchor = runs[processes[0]]
    return DistributedResult(
        train_rows=rows,
        anchor=f"nproc {processes[0]}",
        runs={str(n): ProcessRun(**asdict(r), speedup=round(anchor.wall_s / r.wall_s, 2)) for n, r in runs.items()},
    )


def _train(nproc: int, root: Path, features: Path, config_file: Path, rows: int) -> Trained:
    config = load_train_config(config_file).model_copy(update={"distributed": DistributedConfig(nproc=nproc)})
    root.mkdir(parents=True)
    (root / "train.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    command = [str(REPO_ROOT / "pipelines" / "run"), "train", "--config", str(root / "train.yaml")]
    command += ["--features", str(features)]
    command += ["--out", str(root / "bundle"), "--reports", str(root / "reports")]
    command += ["--checkpoints", str(root / "checkpoints")]
    measured = run_command(command, REPO_ROOT, environment())
    if measured.returncode != 0:
        raise BenchmarkError(f"training in {nproc} process(es) failed:\n{measured.output[-3000:]}")
    metrics = read_json(root / "reports" / "metrics.json")
    epochs = int(metrics["epochs_run"])
    return Trained(
        wall_s=round(measured.wall_s, 1),
        peak_gib=round(measured.peak_tree_bytes / GIB, 2),
        epochs_run=epochs,
        best_epoch=int(metrics["best_epoch"]),
        rows_per_s=round(epochs * rows / measured.wall_s),
        valid_roc_auc=float(metrics["valid_roc_auc"]),
        test_roc_auc=round(_test_roc_auc(root / "bundle", features), 4),
    )


def _test_roc_auc(bundle: Path, features: Path) -> float:
    predictor = Predictor.from_directory(bundle)
    test = pl.read_parquet(features / "test.parquet")
    proba = predictor.predict_proba(frame_columns(test, predictor.bundle.contract))
    return float(roc_auc_score(test[predictor.bundle.contract.target.name].to_numpy(), proba))
