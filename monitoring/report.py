"""Evidently reports of one window against its model's reference: drift, data quality and, with labels, quality.

Each window gives up to two snapshots: ``drift`` on the predictions of the window (features, the prediction,
missing values, out-of-vocabulary rate, volume) and ``quality`` on the predictions whose outcome has arrived, in the
task's terms (binary: ROC AUC, precision, recall, calibration; multiclass: accuracy, F1, log loss, F1 per class;
regression: RMSE, MAE, R²; each with the drift of the outcomes), each side of a comparison on every row or on a
seeded sample of ``max_rows``. Column definitions come from the bundle's contract; ``monitoring.snapshots`` runs
the Evidently reports themselves.

A window's rows may come without their features (the bulk of the log): only the rows the drift report compares
are then fetched from the log and decoded. Everything a report needs is picklable (a ``Baseline`` rather than the
model), so that windows can be reported in worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import polars as pl

from monitoring.gate import WindowSummary
from monitoring.log_reader import LogError, Window, decode_features, read_features
from monitoring.snapshots import (
    TARGET,
    RunInfo,
    Snapshot,
    drift_snapshot,
    drift_summary,
    quality_snapshot,
    quality_summary,
    snapshot_html,
    snapshot_json,
)
from tabloop.runtime.contract import FeatureContract

if TYPE_CHECKING:  # the model (and PyTorch) stays out of worker processes
    from monitoring.reference import Reference


def window_metadata(window: Window) -> dict[str, str]:
    """What identifies a window's snapshots in the workspace (and tells whether they are up to date)."""
    return {"window_key": window.key, "rows": str(window.rows.height), "labelled": str(window.labelled)}


@dataclass(frozen=True)
class Baseline:
    """The reference side of a comparison without the model: light enough to send to a worker process."""

    version: str
    contract: FeatureContract
    vocabularies: dict[str, list[str]]  # categorical feature: the model's training vocabulary
    threshold: float | None  # a binary model's
    score: float | None  # the primary metric on the validation split (binary: ROC AUC)
    rows: pl.DataFrame  # contract features, the task's answers, actual

    @classmethod
    def of(cls, reference: Reference) -> Baseline:
        """A model version's reference without its model."""
        bundle = reference.bundle
        vocabularies = {e.name: [str(v) for v in e.vocabulary] for e in bundle.preprocessor.categorical}
        return cls(reference.version, bundle.contract, vocabularies, bundle.threshold, reference.score, reference.rows)

    def sampled(self, rows: int | None, seed: int) -> Baseline:
        """The same baseline with at most ``rows`` reference rows (all of them for None)."""
        return replace(self, rows=sample(self.rows, rows, seed))


@dataclass(frozen=True)
class WindowReport:
    """The snapshots of one window, and the numbers the gate needs."""

    window: Window
    drift: Snapshot | None
    quality: Snapshot | None
    summary: WindowSummary


@dataclass(frozen=True)
class WindowJob:
    """One window to report, with everything a worker process needs for it."""

    window: Window
    baseline: Baseline
    max_rows: int | None
    min_labels: int
    drift_share: float
    seed: int
    log_url: str | None = None  # where to fetch the features from, if the window's rows come without them
    html: bool = False  # whether to render the snapshots as self-contained HTML too


@dataclass(frozen=True)
class ReportedJob:
    """A job's outcome in picklable form, made where the report ran (a snapshot cannot be pickled): the window's
    numbers, its snapshots as the workspace stores them, and their self-contained HTML if the job asked for it."""

    summary: WindowSummary
    snapshots: dict[str, str]  # kind (drift, quality): JSON
    html: dict[str, str]  # kind: HTML


def run_job(job: WindowJob) -> ReportedJob:
    """Report one window (in this process or in a worker)."""
    result = report_window(
        job.window,
        job.baseline,
        max_rows=job.max_rows,
        min_labels=job.min_labels,
        drift_share=job.drift_share,
        seed=job.seed,
        log_url=job.log_url,
    )
    made = {kind: s for kind, s in (("drift", result.drift), ("quality", result.quality)) if s is not None}
    return ReportedJob(
        result.summary,
        {kind: snapshot_json(snapshot) for kind, snapshot in made.items()},
        {kind: snapshot_html(snapshot) for kind, snapshot in made.items()} if job.html else {},
    )


def sample(frame: pl.DataFrame, rows: int | None, seed: int) -> pl.DataFrame:
    return frame if rows is None or frame.height <= rows else frame.sample(n=rows, seed=seed)


def report_window(
    window: Window,
    reference: Baseline,
    *,
    max_rows: int | None,
    min_labels: int,
    drift_share: float,
    seed: int,
    log_url: str | None = None,
) -> WindowReport:
    """Run the window's reports; ``quality`` only once ``min_labels`` outcomes have arrived. Each side is sampled
    down to ``max_rows`` (None: every row); rows without features have them fetched from ``log_url``. The
    reference's rows are used as given: ``Baseline.sampled`` samples them once for every window."""
    features = list(reference.contract.features)
    current = current_rows(window, reference.contract, max_rows, seed, log_url)
    drift = drift_snapshot(
        current,
        reference.rows,
        contract=reference.contract,
        vocabularies=reference.vocabularies,
        drift_share=drift_share,
        run=run_info("drift", window),
    )
    quality = _quality(window, reference, max_rows=max_rows, min_labels=min_labels, seed=seed)
    task = reference.contract.target.task
    summary = drift_summary(
        drift,
        features,
        task=task,
        rows=window.rows.height,
        labelled=window.labelled,
        compared=current.height,
        quality=None if quality is None else quality_summary(quality, reference.score, task),
    )
    return WindowReport(window, drift, quality, summary)


def current_rows(
    window: Window, contract: FeatureContract, max_rows: int | None, seed: int, log_url: str | None
) -> pl.DataFrame:
    """The window's rows, sampled down to ``max_rows``, with their features decoded: fetched from ``log_url`` if
    the rows come without them."""
    current = sample(window.rows, max_rows, seed)
    if "features" not in current.columns:
        if log_url is None:
            raise LogError(f"window {window.key}: its rows have no features and no log to fetch them from")
        fetched = read_features(log_url, current["id"].to_list())
        current = current.join(fetched, on="id", how="left", maintain_order="left")
    return decode_features(current, contract)


def _quality(
    window: Window, reference: Baseline, *, max_rows: int | None, min_labels: int, seed: int
) -> Snapshot | None:
    """The quality of the predictions whose outcome has arrived, against the reference's; None with fewer than
    ``min_labels`` outcomes, or outcomes of one class (or one value) only."""
    labelled = window.rows.filter(pl.col(TARGET).is_not_null())
    if labelled.height < min_labels or labelled[TARGET].n_unique() < 2:
        return None
    current = sample(labelled, max_rows, seed)
    target = reference.contract.target
    return quality_snapshot(
        current, reference.rows, target=target, threshold=reference.threshold, run=run_info("quality", window)
    )


def run_info(kind: str, window: Window) -> RunInfo:
    """How the ``kind`` snapshot of ``window`` is tagged, described, dated and named in the workspace."""
    return RunInfo(
        tags=[f"model:{window.model_name}", f"version:{window.model_version}", f"kind:{kind}"],
        metadata={
            **window_metadata(window),
            "model_version": window.model_version,
            "window": f"{window.start:%Y-%m-%d}",
        },
        timestamp=window.start.replace(tzinfo=None),
        name=f"{kind} {window.key}",
    )
