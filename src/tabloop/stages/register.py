"""The ``register`` stage: log the run and the model to MLflow, register a version, run the promotion gate.

Order matters so that nothing is half-registered: the store is checked first (failing in seconds if it is down),
the gate decides before anything is written, and a version whose aliases or tags cannot be set is deleted again.
Registering the same bundle twice does nothing, so the stage can run on every ``dvc repro``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tabloop.config import EvaluateConfig, RegistryConfig
from tabloop.errors import FeatureError
from tabloop.evaluation.metrics import EvaluationResult
from tabloop.evaluation.scoring import Scored, read_split, score
from tabloop.records import CARD_FILE, EVALUATION_METRICS_FILE, PRIMARY_METRICS, TRAIN_METRICS_FILE, TrainMetrics
from tabloop.registry.candidate import RegisterInputs, data_hashes, gate_tags, run_record, scorecard, write_receipt
from tabloop.registry.mlflow import (
    BUNDLE_TAG,
    CHALLENGER,
    CHAMPION,
    FILES_TAG,
    LoggedModel,
    Registry,
    log_pyfunc_model,
    log_run,
    now,
)
from tabloop.registry.promotion import Decision, decide, gate_metric
from tabloop.runtime.bundle import BUNDLE_ARTIFACT, Bundle, Predictor, files_digest
from tabloop.runtime.lineage import Lineage, LineageMetrics, git_state
from tabloop.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisterOutcome:
    """What the stage did: the version holding the bundle, whether it is new, the gate's decision."""

    version: str
    new: bool
    champion: str | None
    decision: Decision | None = None


def run(
    settings: Settings, config: RegistryConfig, evaluation: EvaluateConfig, inputs: RegisterInputs
) -> RegisterOutcome:
    """Register the trained bundle as ``@challenger`` and promote it to ``@champion`` if the gate agrees."""
    bundle = Bundle.load(inputs.bundle_dir)
    task = bundle.contract.target.task
    metric = gate_metric(config.gate, task)  # a gate that cannot score the model stops before anything is written
    registry = Registry(settings, config)
    registry.connect()
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
        decision = decide(scorecard(challenger), None, config.gate, metric)
    else:
        decision = _against_champion(
            registry, champion_version, challenger, held_out, evaluation=evaluation, config=config, metric=metric
        )
    candidate = _Candidate(bundle, held_out, challenger, decision, champion_version, metric)
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
    metric: str  # the gate's


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
                **_test_score(candidate),
                "registered_at": now(),
            },
        )
        try:
            registry.set_alias(CHALLENGER, version)
            registry.tag(version, gate_tags(decision, candidate.champion, candidate.metric))
            if decision.promote:
                registry.promote(version, reason="; ".join(decision.reasons), decided_by="gate")
        except Exception:  # whatever failed, no half-registered version stays behind; the error goes on
            registry.delete(version)
            raise
    return version


def _lineage(settings: Settings, inputs: RegisterInputs, digest: str) -> Lineage:
    """Where the model comes from: its bundle, the commit, the data, the parameters and its metrics."""
    train_metrics = TrainMetrics.read(inputs.train_reports / TRAIN_METRICS_FILE)
    evaluation_metrics = EvaluationResult.read(inputs.evaluation_dir / EVALUATION_METRICS_FILE)
    return Lineage(
        bundle_sha256=digest,
        git=git_state(inputs.root, inputs.lock_file),
        data=data_hashes(inputs.lock_file, inputs.data_outputs),
        params=inputs.params,
        metrics=LineageMetrics(
            valid_roc_auc=train_metrics.valid_roc_auc,
            test=evaluation_metrics.network.model_dump(),
            **(
                {"primary": evaluation_metrics.primary.name, "valid_score": train_metrics.valid_score}
                if train_metrics.valid_roc_auc is None
                else {}
            ),
        ),
        dvc_experiment=settings.dvc_exp_name,
    )


def _champion(registry: Registry) -> str | None:
    version = registry.by_alias(CHAMPION)
    return Registry.number(version) if version is not None else None


def _against_champion(
    registry: Registry,
    champion: str,
    challenger: Scored,
    held_out: pl.DataFrame,
    *,
    evaluation: EvaluateConfig,
    config: RegistryConfig,
    metric: str,
) -> Decision:
    """The gate's decision after scoring the current champion on the same held-out rows."""
    with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
        try:
            predictor = Predictor(Bundle.load(registry.fetch_bundle(champion, Path(tmp))))
            theirs, ours = predictor.bundle.contract.target, challenger_target(held_out, predictor)
            if theirs.task != ours:
                raise FeatureError(f"it is a {theirs.task} model, the challenger a {ours} one")
            scored = score(predictor, held_out, evaluation.slices, evaluation.calibration_bins)
        except (FeatureError, KeyError) as e:
            return Decision(
                False,
                [
                    f"champion version {champion} cannot be scored on the current held-out data ({e}); "
                    "compare by hand and use 'make promote'"
                ],
            )
    return decide(scorecard(challenger), scorecard(scored), config.gate, metric)


def challenger_target(held_out: pl.DataFrame, champion: Predictor) -> str:
    """The task of the held-out target as the challenger's features stage wrote it (its column's type)."""
    name = champion.bundle.contract.target.name
    if name not in held_out.columns:
        raise FeatureError(f"the held-out data has no {name} column")
    dtype = held_out.schema[name]
    return "binary" if dtype == pl.Boolean else "multiclass" if dtype.is_integer() else "regression"


def _test_score(candidate: _Candidate) -> dict[str, str]:
    """The version's tag of its test score in the task's primary metric (``test_roc_auc`` for binary)."""
    primary = PRIMARY_METRICS[candidate.bundle.contract.target.task].name
    return {f"test_{primary}": str(candidate.scored.metrics[primary])}


def log_model(bundle: Bundle, card: Path, held_out: pl.DataFrame) -> LoggedModel:
    """Log ``bundle`` (with its model card) to the active run as a pyfunc model."""
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        bundle_dir = Path(tmp) / BUNDLE_ARTIFACT
        bundle.save(bundle_dir)
        if card.is_file():
            shutil.copy(card, bundle_dir / CARD_FILE)
        return log_pyfunc_model(bundle_dir, bundle.contract, held_out, files_sha256=files_digest(bundle_dir))
