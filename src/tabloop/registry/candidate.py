"""What a registered version records: its lineage, the run's parameters and metrics, the gate's tags, the receipt."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from pydantic import JsonValue

from tabloop.evaluation.metrics import EvaluationResult
from tabloop.evaluation.scoring import Scored
from tabloop.io import write_json
from tabloop.records import EVALUATION_METRICS_FILE, TRAIN_METRICS_FILE, TrainMetrics
from tabloop.registry.dvc_repo import lock_hashes
from tabloop.registry.mlflow import (
    BUNDLE_TAG,
    RunRecord,
)
from tabloop.registry.promotion import Decision, Scorecard
from tabloop.runtime.lineage import Lineage


def gate_tags(decision: Decision, champion: str | None, metric: str) -> dict[str, str]:
    """The gate's decision as tags of the version."""
    return {
        "gate.decision": decision.verdict,
        "gate.reasons": "\n".join(decision.reasons),  # a reason may hold "; " itself
        "gate.champion": champion or "none",
        "gate.metric": metric,
        "gate.delta": "n/a" if decision.delta is None else str(decision.delta),
    }


def write_receipt(path: Path, model_name: str, digest: str) -> None:
    """Which bundle the registry holds: the stage's output, the same for the same bundle on any machine."""
    write_json({"model_name": model_name, BUNDLE_TAG: digest}, path)


def scorecard(scored: Scored) -> Scorecard:
    """The gate's view of a scored model."""
    return Scorecard(metrics=scored.metrics, slices=scored.slices)


def run_record(inputs: RegisterInputs, lineage: Lineage) -> RunRecord:
    """What the run records: tags, parameters, per-epoch and final metrics, and the reports as artifacts."""
    train = TrainMetrics.read(inputs.train_reports / TRAIN_METRICS_FILE)
    evaluation = EvaluationResult.read(inputs.evaluation_dir / EVALUATION_METRICS_FILE)
    tags = {
        "git_commit": lineage.git.commit,
        "git_dirty": str(lineage.git.dirty),
        "dvc_lock_committed": str(lineage.git.lock_committed),
        "dvc_lock_sha256": str(lineage.git.lock_sha256),
        BUNDLE_TAG: lineage.bundle_sha256,
        **{f"dvc.{path}": md5 for path, md5 in lineage.data.items()},
        **({"dvc.experiment": lineage.dvc_experiment} if lineage.dvc_experiment else {}),
    }
    history = pl.read_csv(inputs.train_reports / "history.csv")
    steps = [(int(row.pop("epoch")), {k: float(v) for k, v in row.items()}) for row in history.iter_rows(named=True)]
    finals: dict[str, float] = {"best_epoch": float(train.best_epoch)}
    if train.threshold is not None:
        finals["threshold"] = float(train.threshold)
    for model, scores in evaluation.test.items():
        prefix = "test" if model == "pytorch" else f"{model}_test"
        finals |= {f"{prefix}_{k}": float(v) for k, v in scores.model_dump().items() if k != "rows"}
    if evaluation.decision is not None:
        finals |= {f"test_{k}": float(v) for k, v in evaluation.decision.model_dump().items() if k != "threshold"}
    return RunRecord(
        tags=tags,
        params=flatten(inputs.params),
        steps=steps,
        metrics={k: v for k, v in finals.items() if not math.isnan(v)},
        directories={"evaluation": inputs.evaluation_dir, "training": inputs.train_reports},
        files={"data": [path for path in inputs.other_reports if path.is_file()]},
    )


def flatten(params: dict[str, JsonValue], prefix: str = "") -> dict[str, str]:
    """Nested parameters as ``a.b.c`` keys, lists as text (MLflow params are flat)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = str(value)[:6000]  # MLflow's limit for a parameter value
    return flat


def data_hashes(lock_file: Path, outputs: dict[str, str]) -> dict[str, str]:
    """The hash ``dvc.lock`` holds for each data directory, by role (machine- and dataset-independent keys)."""
    hashes = lock_hashes(lock_file, list(outputs.values()))
    return {role: hashes[path] for role, path in outputs.items()}


@dataclass(frozen=True)
class RegisterInputs:
    """The pipeline outputs the register stage reads."""

    bundle_dir: Path
    features_dir: Path
    train_reports: Path
    evaluation_dir: Path
    lock_file: Path
    root: Path
    params: dict[str, JsonValue]  # the pipeline parameters, as DVC recorded them
    receipt: Path
    data_outputs: dict[str, str]  # the DVC-tracked data directories by role, as dvc.lock names them
    other_reports: list[Path] = field(default_factory=list)
