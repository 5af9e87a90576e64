"""``make monitor``: every window of the prediction log reported into the workspace, the latest one judged.

Windows whose snapshots are already in the workspace for the same rows and outcomes are skipped (their numbers are
kept beside the verdict), so a second run costs reading the log and reporting what changed.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from flightdelay.config import RegistryConfig
from flightdelay.io import write_json
from flightdelay.settings import Settings
from monitoring.config import MonitorConfig
from monitoring.gate import Verdict, describe, judge
from monitoring.log import Window, read_log, windows
from monitoring.reference import References
from monitoring.report import report_window, window_metadata
from monitoring.workspace import MonitoringWorkspace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorResult:
    """What a monitoring run found and decided."""

    windows: list[dict[str, Any]]  # key, rows, labelled, judged, reported (or skipped as current)
    verdict: Verdict


def run_monitor(config: MonitorConfig, settings: Settings, registry: RegistryConfig) -> MonitorResult:
    """Report every window, update the dashboard, judge the latest window with enough rows."""
    reports = config.reports
    log = read_log(reports.log_url)
    found = windows(log, reports.window)
    workspace = MonitoringWorkspace(reports.workspace, reports.project)
    references = References(settings, registry, reports.cache_dir, reports.reference_dir)
    summaries_dir = reports.out_dir / "windows"
    judged = [w for w in found if w.rows.height >= reports.min_rows]
    latest = judged[-1] if judged else None
    listed: list[dict[str, Any]] = []
    latest_summary: dict[str, Any] | None = None
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
        summary = _report(window, references, workspace, config, latest=window is latest)
        write_json(summary, summary_path)
        entry["status"] = "reported"
        if window is latest:
            latest_summary = summary
    workspace.save_dashboard(sorted({w.model_version for w in found}, key=_version_order), reports.dashboard_features)
    verdict = judge(latest.key if latest else None, latest_summary, config.gate)
    reports.out_dir.mkdir(parents=True, exist_ok=True)
    write_json({**verdict.as_dict(), "windows": listed}, reports.out_dir / "verdict.json")
    (reports.out_dir / "summary.md").write_text(describe(verdict), encoding="utf-8")
    return MonitorResult(listed, verdict)


def _report(
    window: Window, references: References, workspace: MonitoringWorkspace, config: MonitorConfig, *, latest: bool
) -> dict[str, Any]:
    reports = config.reports
    reference = references.get(window.model_name, window.model_version)
    result = report_window(
        window,
        reference,
        max_rows=reports.max_rows,
        min_labels=reports.min_labels,
        drift_share=reports.drift_share,
        seed=reports.seed,
    )
    reports.out_dir.mkdir(parents=True, exist_ok=True)
    if result.drift is not None:
        workspace.put(window.key, "drift", result.drift)
        if latest:  # a self-contained report of the latest window, for sharing
            result.drift.save_html(str(reports.out_dir / "latest.html"))
    if result.quality is not None:
        workspace.put(window.key, "quality", result.quality)
        if latest:
            result.quality.save_html(str(reports.out_dir / "latest_quality.html"))
    summary: dict[str, Any] = json.loads(json.dumps(result.summary, default=float))
    return summary


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (0, version)
