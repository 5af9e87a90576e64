"""``make monitor``: every window of the prediction log reported into the workspace, the latest one judged.

Windows whose snapshots are already in the workspace for the same rows and outcomes are skipped (their numbers are
kept beside the verdict), so a second run costs reading the log and reporting what changed; the latest window is
always reported again. The log is read without its features (the bulk of its bytes): a report fetches and decodes
those of the rows it compares. The latest window, the one judged, is compared on every row (``judged_max_rows``),
earlier ones on samples (``max_rows``).

Windows are reported here and in ``workers`` more processes, which take them from one queue, the judged window
first; everything is written from this process, in that order. The workers start at once: one reads the log while
this process imports Evidently and PyTorch (seconds each, hence imported here only then), and they import Evidently
while this process loads the references.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from monitoring.gate import Verdict, WindowSummary, describe, judge
from monitoring.log_reader import Window, check_log, read_log, windows
from tabloop.config import RegistryConfig
from tabloop.config.monitor import MonitorConfig, ReportsConfig
from tabloop.errors import TabloopError
from tabloop.io import JsonRecord, write_json
from tabloop.runtime.contract import TaskKind
from tabloop.settings import Settings

if TYPE_CHECKING:
    from monitoring.reference import References
    from monitoring.report import ReportedJob, WindowJob
    from monitoring.workspace import MonitoringWorkspace

logger = logging.getLogger(__name__)

HTML_FILES = {"drift": "latest.html", "quality": "latest_quality.html"}


class WindowEntry(BaseModel):
    """A window of the log as the verdict lists it: what it holds and what this run did with it."""

    model_config = ConfigDict(frozen=True)

    window: str  # its key
    rows: int
    labelled: int
    status: str  # reported, up to date (its snapshots kept), or not judged (too small)


class MonitorError(TabloopError):
    """A monitoring run's output cannot be read."""


class MonitorResult(JsonRecord):
    """What a monitoring run found and decided; ``verdict.json`` is its serialisation (the verdict's fields, then
    the windows), read back through this type."""

    windows: list[WindowEntry]  # every window of the log, in time order
    verdict: Verdict

    @model_serializer(mode="wrap")
    def _verdict_first(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {**data["verdict"], "windows": data["windows"]}

    @model_validator(mode="before")
    @classmethod
    def _verdict_nested(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "verdict" in data:
            return data
        return {"windows": data.get("windows", []), "verdict": {k: v for k, v in data.items() if k != "windows"}}

    @classmethod
    def origin(cls) -> tuple[str, str, type[TabloopError]]:
        return "the monitor", "make monitor", MonitorError


def run_monitor(
    config: MonitorConfig, settings: Settings, registry: RegistryConfig, task: TaskKind = "binary"
) -> MonitorResult:
    """Report every window, update the dashboard, judge the latest window with enough rows; the log's answers and
    outcomes, the reports and the panels are ``task``'s."""
    check_log(config.reports.log_url)  # before starting workers, which would only delay the error
    pool = start_workers(config.reports.workers)
    try:
        return _monitor(config, settings, registry, pool, task)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _monitor(
    config: MonitorConfig,
    settings: Settings,
    registry: RegistryConfig,
    pool: ProcessPoolExecutor | None,
    task: TaskKind,
) -> MonitorResult:
    reports = config.reports
    reading = None
    if pool is not None:  # the workers start at once: one reads the log, then each imports Evidently
        reading = pool.submit(read_log, reports.log_url, features=False, task=task)
        for _ in range(reports.workers):
            pool.submit(warm_up)
    # Seconds of imports (Evidently, PyTorch), made while a worker reads the log.
    warm_up()
    from monitoring.reference import References
    from monitoring.workspace import MonitoringWorkspace

    workspace = MonitoringWorkspace(reports.workspace, reports.project)
    references = References(settings, registry, reports.cache_dir, reports.reference_dir)
    log = reading.result() if reading is not None else read_log(reports.log_url, features=False, task=task)
    found = windows(log, reports.window)
    latest = _judged(found, reports.min_rows)
    settled, todo = _plan(found, latest, workspace, reports)
    jobs = _jobs(todo, latest, references, reports)
    latest_summary = _write_reports(todo, run_jobs(jobs, pool, reports.workers), latest, workspace, reports)
    versions = sorted({w.model_version for w in found}, key=_version_order)
    workspace.save_dashboard(versions, reports.dashboard_features, task)
    verdict = judge(latest.key if latest else None, latest_summary, config.gate)
    listed = [
        WindowEntry(window=w.key, rows=w.rows.height, labelled=w.labelled, status=settled.get(w.key, "reported"))
        for w in found
    ]
    result = MonitorResult(windows=listed, verdict=verdict)
    result.write(reports.out_dir / "verdict.json")
    (reports.out_dir / "summary.md").write_text(describe(verdict), encoding="utf-8")
    return result


def _judged(found: list[Window], min_rows: int) -> Window | None:
    """The window the gate judges: the latest with at least ``min_rows`` predictions."""
    judged = [w for w in found if w.rows.height >= min_rows]
    return judged[-1] if judged else None


def _plan(
    found: list[Window], latest: Window | None, workspace: MonitoringWorkspace, reports: ReportsConfig
) -> tuple[dict[str, str], list[Window]]:
    """The status of each window not to report, by its key, and the windows to report: not those too small to
    judge, nor earlier ones the workspace holds for the same rows and outcomes; the judged window first, since it
    is compared on every row and should not be the last to end."""
    from monitoring.report import window_metadata

    settled: dict[str, str] = {}
    todo: list[Window] = []
    for window in found:
        if window.rows.height < reports.min_rows:
            settled[window.key] = f"not judged: fewer than {reports.min_rows} predictions"
        elif (
            window is not latest
            and workspace.is_current(window.key, "drift", window_metadata(window))
            and _summary_path(reports, window).is_file()
        ):
            settled[window.key] = "up to date"
        else:
            todo.append(window)
    todo.sort(key=lambda window: window is not latest)
    return settled, todo


def _write_reports(
    todo: list[Window],
    results: Iterator[ReportedJob],
    latest: Window | None,
    workspace: MonitoringWorkspace,
    reports: ReportsConfig,
) -> WindowSummary | None:
    """The judged window's numbers (None without one), once each window's result is written as it comes: its
    snapshots into the workspace, its numbers beside the verdict and, for the judged window, its reports as
    self-contained HTML, for sharing."""
    latest_summary: WindowSummary | None = None
    reports.out_dir.mkdir(parents=True, exist_ok=True)
    for window, done in zip(todo, results, strict=True):
        for kind, snapshot in done.snapshots.items():
            workspace.put(window.key, kind, snapshot)
        for kind, html in done.html.items():
            (reports.out_dir / HTML_FILES[kind]).write_text(html, encoding="utf-8")
        write_json(done.summary.model_dump(), _summary_path(reports, window))
        if window is latest:
            latest_summary = done.summary
    return latest_summary


def _summary_path(reports: ReportsConfig, window: Window) -> Path:
    return reports.out_dir / "windows" / f"{_safe(window.key)}.json"


def _jobs(todo: list[Window], latest: Window | None, references: References, reports: ReportsConfig) -> list[WindowJob]:
    """A job per window; each model version's reference is loaded and sampled once, not once per window."""
    from monitoring.report import Baseline, WindowJob

    baselines: dict[tuple[str, str, int | None], Baseline] = {}
    jobs = []
    for window in todo:
        rows = reports.judged_max_rows if window is latest else reports.max_rows
        key = (window.model_name, window.model_version, rows)
        if key not in baselines:
            reference = references.get(window.model_name, window.model_version)
            baselines[key] = Baseline.of(reference).sampled(rows, reports.seed)
        jobs.append(
            WindowJob(
                window,
                baselines[key],
                max_rows=rows,
                min_labels=reports.min_labels,
                drift_share=reports.drift_share,
                seed=reports.seed,
                log_url=reports.log_url,
                html=window is latest,
            )
        )
    return jobs


def start_workers(workers: int) -> ProcessPoolExecutor | None:
    """A pool of ``workers`` processes, started as tasks arrive. Spawned, not forked: the thread pools of polars
    and PyTorch in this process would not survive a fork."""
    if workers <= 0:
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def warm_up() -> None:
    """Import what reporting a window needs (Evidently, seconds of it), here or in a worker, before its first
    window."""
    import monitoring.report  # noqa: F401


def run_jobs(jobs: list[WindowJob], pool: ProcessPoolExecutor | None, workers: int) -> Iterator[ReportedJob]:
    """Each job's result, in job order. The jobs are taken in order by ``workers + 1`` threads: the one that finds
    this process free reports its job here, the others each hand theirs to a process of ``pool``; so the judged
    window, the first job, starts here at once, while the workers finish importing Evidently. After a failed job,
    no other starts."""
    from monitoring.report import run_job

    if pool is None or len(jobs) < 2:
        yield from map(run_job, jobs)
        return
    here = threading.Lock()  # held while this process reports a job

    def report(job: WindowJob) -> ReportedJob:
        try:
            if here.acquire(blocking=False):  # this process is free
                try:
                    return run_job(job)
                finally:
                    here.release()
            return pool.submit(run_job, job).result()
        except BaseException:
            threads.shutdown(wait=False, cancel_futures=True)  # the jobs not yet taken
            raise

    with ThreadPoolExecutor(workers + 1) as threads:
        yield from threads.map(report, jobs)


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (0, version)
