"""The ``register`` stage: log the run and the model to MLflow, register a version, run the promotion gate.

Order matters so that nothing is half-registered: the store is checked first (failing in seconds if it is down),
the gate decides before anything is written, and a version whose aliases or tags cannot be set is deleted again.
Registering the same bundle twice does nothing, so the stage can run on every ``dvc repro``.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from pydantic import JsonValue

from tabloop.config import EvaluateConfig, RegistryConfig
from tabloop.dvc_repo import lock_hashes
from tabloop.errors import FeatureError
from tabloop.evaluation.metrics import EvaluationResult
from tabloop.evaluation.stage import CARD_FILE, METRICS_FILE, Scored, read_split, score
from tabloop.io import write_json
from tabloop.lineage import Lineage, LineageMetrics, git_state
from tabloop.model.bundle import Bundle, Predictor, files_digest
from tabloop.promotion import Decision, Scorecard, decide
from tabloop.registry import (
    BUNDLE_ARTIFACT,
    BUNDLE_TAG,
    CHALLENGER,
    CHAMPION,
    FILES_TAG,
    LoggedModel,
    Registry,
    RunRecord,
    log_pyfunc_model,
    log_run,
    now,
)
from tabloop.settings import Settings
from tabloop.training import METRICS_FILE as TRAIN_METRICS_FILE
from tabloop.training import TrainMetrics

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class RegisterOutcome:
    """What the stage did: the version holding the bundle, whether it is new, the gate's decision."""

    version: str
    new: bool
    champion: str | None
    decision: Decision | None = None


def register_candidate(
    settings: Settings, config: RegistryConfig, evaluation: EvaluateConfig, inputs: RegisterInputs
) -> RegisterOutcome:
    """Register the trained bundle as ``@challenger`` and promote it to ``@champion`` if the gate agrees."""
    registry = Registry(settings, config)
    registry.connect()
    bundle = Bundle.load(inputs.bundle_dir)
    digest = bundle.digest()
    existing = registry.by_bundle(digest)
    if existing is not None:
        version = Registry.number(existing)
        logger.info("this bundle is already version %s of %s; nothing to register", version, config.model_name)
        write_receipt(inputs.receipt, config.model_name, digest)
        return RegisterOutcome(version, new=False, champion=_champion(registry))

    held_out = read_split(inputs.features_dir, "test")
    challenger = score(Predictor(bundle), held_out, evaluation.slices, evaluation.calibration_bins)
    champion_version = _champion(registry)
    if champion_version is None:
        decision = decide(scorecard(challenger), None, config.gate)
    else:
        decision = _against_champion(
            registry, champion_version, challenger, held_out, evaluation=evaluation, config=config
        )
    candidate = _Candidate(bundle, held_out, challenger, decision, champion_version)
    version = _register(registry, config, settings, inputs, candidate)
    write_receipt(inputs.receipt, config.model_name, digest)
    champion = _champion(registry)
    logger.info("registered version %s of %s as @%s", version, config.model_name, CHALLENGER)
    for reason in decision.reasons:
        logger.info("gate: %s", reason)
    logger.info("gate decision: %s; @%s is version %s", decision.verdict, CHAMPION, champion or "-")
    return RegisterOutcome(version, new=True, champion=champion, decision=decision)


@dataclass(frozen=True)
class _Candidate:
    """The challenger as the gate judged it."""

    bundle: Bundle
    held_out: pl.DataFrame
    scored: Scored
    decision: Decision
    champion: str | None  # the champion it was compared with


def _register(
    registry: Registry, config: RegistryConfig, settings: Settings, inputs: RegisterInputs, candidate: _Candidate
) -> str:
    """Log the run and the model, register the version as ``@challenger`` with the gate's decision, and promote it
    if the gate agreed; a version whose aliases or tags cannot be set is deleted again."""
    decision = candidate.decision
    lineage = _lineage(settings, inputs, candidate.bundle.digest())
    run_name = settings.dvc_exp_name or f"{config.model_name}-{lineage.git.commit[:8]}"
    with registry.run(run_name) as run_id:
        lineage = lineage.model_copy(update={"mlflow_run_id": run_id})
        log_run(run_record(inputs, lineage))
        logged = log_model(
            candidate.bundle.with_lineage(lineage), inputs.evaluation_dir / CARD_FILE, candidate.held_out
        )
        version = registry.register(
            logged.uri,
            {
                BUNDLE_TAG: lineage.bundle_sha256,
                FILES_TAG: logged.files_sha256,
                "git_commit": lineage.git.commit,
                "git_dirty": str(lineage.git.dirty),
                "dvc_lock_committed": str(lineage.git.lock_committed),
                "data_features_md5": lineage.data["features"],
                "test_roc_auc": str(candidate.scored.metrics["roc_auc"]),
                "registered_at": now(),
            },
        )
        try:
            registry.set_alias(CHALLENGER, version)
            registry.tag(version, gate_tags(decision, candidate.champion, config.gate.metric))
            if decision.promote:
                registry.promote(version, reason="; ".join(decision.reasons), decided_by="gate")
        except Exception:  # whatever failed, no half-registered version stays behind; the error goes on
            registry.delete(version)
            raise
    return version


def _lineage(settings: Settings, inputs: RegisterInputs, digest: str) -> Lineage:
    """Where the model comes from: its bundle, the commit, the data, the parameters and its metrics."""
    train_metrics = TrainMetrics.read(inputs.train_reports / TRAIN_METRICS_FILE)
    evaluation_metrics = EvaluationResult.read(inputs.evaluation_dir / METRICS_FILE)
    return Lineage(
        bundle_sha256=digest,
        git=git_state(inputs.root, inputs.lock_file),
        data=data_hashes(inputs.lock_file, inputs.data_outputs),
        params=inputs.params,
        metrics=LineageMetrics(
            valid_roc_auc=train_metrics.valid_roc_auc, test=evaluation_metrics.test["pytorch"].model_dump()
        ),
        dvc_experiment=settings.dvc_exp_name,
    )


def gate_tags(decision: Decision, champion: str | None, metric: str) -> dict[str, str]:
    """The gate's decision as tags of the version."""
    return {
        "gate.decision": decision.verdict,
        "gate.reasons": "\n".join(decision.reasons),  # a reason may hold "; " itself
        "gate.champion": champion or "none",
        "gate.metric": metric,
        "gate.delta": "n/a" if decision.delta is None else str(decision.delta),
    }


def _champion(registry: Registry) -> str | None:
    version = registry.by_alias(CHAMPION)
    return Registry.number(version) if version is not None else None


def write_receipt(path: Path, model_name: str, digest: str) -> None:
    """Which bundle the registry holds: the stage's output, the same for the same bundle on any machine."""
    write_json({"model_name": model_name, BUNDLE_TAG: digest}, path)


def scorecard(scored: Scored) -> Scorecard:
    """The gate's view of a scored model."""
    return Scorecard(metrics=scored.metrics, slices=scored.slices)


def _against_champion(
    registry: Registry,
    champion: str,
    challenger: Scored,
    held_out: pl.DataFrame,
    *,
    evaluation: EvaluateConfig,
    config: RegistryConfig,
) -> Decision:
    """The gate's decision after scoring the current champion on the same held-out rows."""
    with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
        try:
            predictor = Predictor(Bundle.load(registry.fetch_bundle(champion, Path(tmp))))
            scored = score(predictor, held_out, evaluation.slices, evaluation.calibration_bins)
        except (FeatureError, KeyError) as e:
            return Decision(
                False,
                [
                    f"champion version {champion} cannot be scored on the current held-out data ({e}); "
                    "compare by hand and use 'make promote'"
                ],
            )
    return decide(scorecard(challenger), scorecard(scored), config.gate)


def run_record(inputs: RegisterInputs, lineage: Lineage) -> RunRecord:
    """What the run records: tags, parameters, per-epoch and final metrics, and the reports as artifacts."""
    train = TrainMetrics.read(inputs.train_reports / TRAIN_METRICS_FILE)
    evaluation = EvaluationResult.read(inputs.evaluation_dir / METRICS_FILE)
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
    finals: dict[str, float] = {"best_epoch": float(train.best_epoch), "threshold": float(train.threshold)}
    for model, scores in evaluation.test.items():
        prefix = "test" if model == "pytorch" else f"{model}_test"
        finals |= {f"{prefix}_{k}": float(v) for k, v in scores.model_dump().items() if k != "rows"}
    finals |= {f"test_{k}": float(v) for k, v in evaluation.decision.model_dump().items() if k != "threshold"}
    return RunRecord(
        tags=tags,
        params=flatten(inputs.params),
        steps=steps,
        metrics={k: v for k, v in finals.items() if not math.isnan(v)},
        directories={"evaluation": inputs.evaluation_dir, "training": inputs.train_reports},
        files={"data": [path for path in inputs.other_reports if path.is_file()]},
    )


def log_model(bundle: Bundle, card: Path, held_out: pl.DataFrame) -> LoggedModel:
    """Log ``bundle`` (with its model card) to the active run as a pyfunc model."""
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        bundle_dir = Path(tmp) / BUNDLE_ARTIFACT
        bundle.save(bundle_dir)
        if card.is_file():
            shutil.copy(card, bundle_dir / CARD_FILE)
        return log_pyfunc_model(bundle_dir, bundle.contract, held_out, files_sha256=files_digest(bundle_dir))


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
