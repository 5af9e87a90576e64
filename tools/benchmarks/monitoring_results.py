"""The monitoring benchmark's results: the anchor's runs and the monitor's, their verdicts, and their table."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rich.console import Console

from tools.benchmarks.display import table, yes


@dataclass(frozen=True)
class AnchorDrift:
    """What the anchor found: the drifted columns, as a count and a share."""

    drifted_columns: int
    share: float


@dataclass(frozen=True)
class AnchorRuns:
    """Evidently's preset on the real features: best wall time of its runs, peak memory, and what it found."""

    what: str
    wall_s: float
    wall_s_runs: tuple[float, ...]
    peak_gib: float
    drift: AnchorDrift


@dataclass(frozen=True)
class ReportsConfig:
    """The shipped configuration's settings that decide the monitor's cost."""

    window: str
    max_rows: int | None
    judged_max_rows: int | None
    workers: int


@dataclass(frozen=True)
class GateVerdict:
    """What the gate decided, and on what: compared between the sampled and the full-data runs."""

    status: str
    exit_code: int
    window: str | None
    drifted_features: tuple[str, ...]
    prediction_drift: bool
    reasons: int


@dataclass(frozen=True)
class MonitorRuns:
    """The monitor with the shipped configuration: best wall time of its runs, peak memory, verdict and goals."""

    config: ReportsConfig
    wall_s: float
    wall_s_runs: tuple[float, ...]
    peak_gib: float
    exit_code: int
    verdict: GateVerdict
    wall_vs_anchor: float
    peak_vs_anchor: float
    goal_wall_s: float
    goal_peak_gib: float


@dataclass(frozen=True)
class FullData:
    """The monitor with sampling off: its cost and its verdict."""

    wall_s: float
    peak_gib: float
    exit_code: int
    verdict: GateVerdict


@dataclass(frozen=True)
class MonitoringMet:
    """Each goal's verdict; true as a whole when every one is met."""

    wall: bool
    memory: bool
    same_verdict: bool

    def __bool__(self) -> bool:
        return all(asdict(self).values())


@dataclass(frozen=True)
class MonitoringResult:
    """The monitoring benchmark: the monitor against the anchor, and its verdict against the full data's."""

    rows: int
    model: str
    windows: int
    setup_s: float
    anchor: AnchorRuns
    monitor: MonitorRuns
    full_data: FullData
    met: MonitoringMet

    def show(self, console: Console) -> None:
        """The monitor's cost against the anchor's and the goals, and both verdicts, as a table."""
        monitor, anchor, full, met = self.monitor, self.anchor, self.full_data, self.met
        config = monitor.config
        shown = table(
            f"Monitoring {self.rows:,} logged predictions ({self.windows} weekly windows), "
            "python -m monitoring monitor, two cores",
            ("measurement", "value", "anchor / goal", "ratio", "met"),
        )
        judged = config.judged_max_rows or "every row"
        shown.add_row(
            f"monitor, shipped configuration (max_rows {config.max_rows}, judged window: {judged}, "
            f"{config.workers} worker): wall, best of {len(monitor.wall_s_runs)}",
            f"{monitor.wall_s:.1f} s",
            f"anchor {anchor.wall_s:.1f} s; goal ≤ {monitor.goal_wall_s:.0f} s",
            f"{monitor.wall_vs_anchor:.2f}x anchor",
            yes(met.wall),
        )
        shown.add_row(
            "  peak memory, whole process tree",
            f"{monitor.peak_gib:.2f} GiB",
            f"anchor {anchor.peak_gib:.2f} GiB; goal ≤ {monitor.goal_peak_gib:.0f} GiB",
            f"{monitor.peak_vs_anchor:.2f}x anchor",
            yes(met.memory),
        )
        shown.add_row(f"anchor: {anchor.what}, best of {len(anchor.wall_s_runs)}", f"{anchor.wall_s:.1f} s", "", "", "")
        shown.add_row(f"verdict on {monitor.verdict.window}", _verdict(monitor.verdict), "", "", "")
        shown.add_row(
            "  the same on the full data (no sampling anywhere)",
            _verdict(full.verdict),
            f"{full.wall_s:.1f} s, {full.peak_gib:.2f} GiB",
            "",
            yes(met.same_verdict),
        )
        setup = f"{self.setup_s:.0f} s" if self.setup_s else "cached"
        shown.add_row("set-up: the log generated (not timed)", setup, "", "", "")
        console.print(shown)


def _verdict(v: GateVerdict) -> str:
    drifted, prediction = len(v.drifted_features), "yes" if v.prediction_drift else "no"
    return f"{v.status} (exit {v.exit_code}): {drifted} features drifted, prediction drift: {prediction}"
