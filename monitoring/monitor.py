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
import queue
import re
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from monitoring.config import MonitorConfig, ReportsConfig
from monitoring.gate import Verdict, describe, judge
from monitoring.log import Window, check_log, read_log, windows
from tabloop.config import RegistryConfig
from tabloop.io import write_json
from tabloop.settings import Settings

if TYPE_CHECKING:
    from monitoring.reference import References
    from monitoring.report import ReportedJob, WindowJob

logger = logging.getLogger(__name__)

HTML_FILES = {"drift": "latest.html", "quality": "latest_quality.html"}


@dataclass(frozen=True)
class MonitorResult:
    """What a monitoring run found and decided."""

    windows: list[dict[str, Any]]  # key, rows, labelled, judged, reported (or skipped as current)
    verdict: Verdict


def run_monitor(config: MonitorConfig, settings: Settings, registry: RegistryConfig) -> MonitorResult:
    """Report every window, update the dashboard, judge the latest window with enough rows."""
    check_log(config.reports.log_url)  # before starting workers, which would only delay the error
    pool = start_workers(config.reports.workers)
    try:
        return _monitor(config, settings, registry, pool)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _monitor(
    config: MonitorConfig, settings: Settings, registry: RegistryConfig, pool: ProcessPoolExecutor | None
) -> MonitorResult:
    reports = config.reports
    reading = pool.submit(read_log, reports.log_url, features=False) if pool is not None else None
    warm = [pool.submit(warm_up) for _ in range(reports.workers)] if pool is not None else []
    # Seconds of imports (Evidently, PyTorch), made while a worker reads the log.
    from monitoring.reference import References
    from monitoring.report import window_metadata
    from monitoring.workspace import MonitoringWorkspace

    workspace = MonitoringWorkspace(reports.workspace, reports.project)
    references = References(settings, registry, reports.cache_dir, reports.reference_dir)
    log = reading.result() if reading is not None else read_log(reports.log_url, features=False)
    found = windows(log, reports.window)
    summaries_dir = reports.out_dir / "windows"
    judged = [w for w in found if w.rows.height >= reports.min_rows]
    latest = judged[-1] if judged else None
    listed: list[dict[str, Any]] = []
    todo: list[tuple[Window, dict[str, Any]]] = []
    for window in found:
        entry = {"window": window.key, "rows": window.rows.height, "labelled": window.labelled}
        listed.append(entry)
        if window.rows.height < reports.min_rows:
            entry["status"] = f"not judged: fewer than {reports.min_rows} predictions"
            continue
        summary_path = summaries_dir / f"{_safe(window.key)}.json"
        metadata = window_metadata(window)
        if window is not latest and workspace.is_current(window.key, "drift", metadata) and summary_path.is_file():
            entry["status"] = "up to date"
            continue
        todo.append((window, entry))
    todo.sort(key=lambda item: item[0] is not latest)  # the judged window, on every row, first: not the last to end
    jobs = _jobs([w for w, _ in todo], latest, references, reports)
    latest_summary: dict[str, Any] | None = None
    reports.out_dir.mkdir(parents=True, exist_ok=True)
    for index, done in _in_order(run_jobs(jobs, pool, reports.workers, warm)):
        window, entry = todo[index]
        for kind, snapshot in done.snapshots.items():
            workspace.put(window.key, kind, snapshot)
        for kind, html in done.html.items():  # the latest window's reports, self-contained, for sharing
            (reports.out_dir / HTML_FILES[kind]).write_text(html, encoding="utf-8")
        write_json(done.summary, summaries_dir / f"{_safe(window.key)}.json")
        entry["status"] = "reported"
        if window is latest:
            latest_summary = done.summary
    workspace.save_dashboard(sorted({w.model_version for w in found}, key=_version_order), reports.dashboard_features)
    verdict = judge(latest.key if latest else None, latest_summary, config.gate)
    write_json({**verdict.as_dict(), "windows": listed}, reports.out_dir / "verdict.json")
    (reports.out_dir / "summary.md").write_text(describe(verdict), encoding="utf-8")
    return MonitorResult(listed, verdict)


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
    """Import what reporting a window needs (Evidently, seconds of it) in a worker, before its first window."""
    import monitoring.report  # noqa: F401


def run_jobs(
    jobs: list[WindowJob], pool: ProcessPoolExecutor | None, workers: int, warm: Sequence[Future[None]] = ()
) -> Iterator[tuple[int, ReportedJob]]:
    """Each job's index and result as soon as it is done. This process and the ``workers`` of ``pool`` take the
    jobs from the front of one queue, the workers once ``warm`` is done; their results are handed out before this
    process takes another job."""
    from monitoring.report import run_job

    pending = deque(range(len(jobs)))
    feeders = min(workers, len(jobs) - 1)
    if pool is None or feeders <= 0:
        for index in pending:
            yield index, run_job(jobs[index])
        return
    lock = threading.Lock()
    done: queue.SimpleQueue[tuple[int, ReportedJob | BaseException]] = queue.SimpleQueue()

    def take() -> int | None:
        with lock:
            return pending.popleft() if pending else None

    def feed() -> None:  # one thread per worker process: a job for it whenever it is free
        try:
            for future in warm:
                future.result()
            while (index := take()) is not None:
                done.put((index, pool.submit(run_job, jobs[index]).result()))
        except BaseException as e:  # handed to this process, which raises it
            done.put((-1, e))

    with ThreadPoolExecutor(feeders) as threads:
        for _ in range(feeders):
            threads.submit(feed)
        try:
            for _ in jobs:
                own = take() if done.empty() else None
                if own is not None:
                    yield own, run_job(jobs[own])
                    continue
                index, result = done.get()
                if isinstance(result, BaseException):
                    raise result
                yield index, result
        finally:
            with lock:
                pending.clear()  # after an error, the workers take no new job


def _in_order(results: Iterator[tuple[int, ReportedJob]]) -> Iterator[tuple[int, ReportedJob]]:
    """``results`` in the order of their indexes, each as soon as every one before it has come."""
    waiting: dict[int, ReportedJob] = {}
    following = 0
    for index, result in results:
        waiting[index] = result
        while following in waiting:
            yield following, waiting.pop(following)
            following += 1


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (0, version)
