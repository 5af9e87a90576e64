"""The serving benchmark's results: what each run measured, the ratios and goals, and the table they print as."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table

from tools.benchmarks.display import table, yes

GOAL_RATIO = 10.0
GOAL_P99_MS = 20.0
GOAL_BATCH_MS = 15.0
GOAL_RSS_GROWTH_MB = 64.0  # over a saturating run, above the warmed-up server's
QUEUE_BOUND = 100_000  # the service's default log_max_queue: past it, predictions would get 503


@dataclass(frozen=True)
class WrkRun:
    """One ``wrk`` run: requests, failures, throughput and latency percentiles."""

    requests: int
    answered: int
    failed: int
    connect_errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class AnchoredRun(WrkRun):
    """A ``wrk`` run of this service, with its throughput as a multiple of the anchor's."""

    ratio: float


@dataclass(frozen=True)
class WorkersRun(WrkRun):
    """A ``wrk`` run of this service in two workers, with its throughput as a multiple of one worker's."""

    vs_1_worker: float


@dataclass(frozen=True)
class Unmeasured:
    """A server that could not be measured, and why."""

    error: str


@dataclass(frozen=True)
class RoundTrips:
    """Round trips of one large request, one at a time: median and 90th percentile."""

    round_trip_median_ms: float
    round_trip_p90_ms: float


@dataclass(frozen=True)
class TimedRoundTrips(RoundTrips):
    """Round trips with the server's own time on each (its ``Server-Timing`` header)."""

    server_median_ms: float
    server_p90_ms: float


@dataclass(frozen=True)
class AfterLoad:
    """Flights the server counted as predicted against rows in its prediction log, after the load runs."""

    predicted: int
    logged: int


@dataclass(frozen=True)
class Sigterm:
    """A server sent SIGTERM under load: 2xx responses received against rows logged, and its exit code."""

    answered: int
    logged: int
    exit_code: int
    errors_after_shutdown: int


@dataclass(frozen=True)
class Killed:
    """A server killed under load (at once, or after a grace period): answered ids missing from the log."""

    after_s: float
    grace_s: float | None
    answered: int
    journal_segments_left: int
    missing: int


@dataclass(frozen=True)
class Soak:
    """A saturating run: throughput, the log's queue and the server's memory."""

    duration_s: int
    rps: float
    p99_ms: float
    failed: int
    queue_max: int
    queue_median: float
    queue_after: int
    rss_start_mb: float
    rss_peak_mb: float
    logged: int
    answered: int


@dataclass(frozen=True)
class ServingGoals:
    """The goals and bounds the measurements are held to."""

    throughput_ratio: float
    p99_ms: float
    batch_server_ms: float
    rss_growth_mb: float
    queue_bound: int


GOALS = ServingGoals(
    throughput_ratio=GOAL_RATIO,
    p99_ms=GOAL_P99_MS,
    batch_server_ms=GOAL_BATCH_MS,
    rss_growth_mb=GOAL_RSS_GROWTH_MB,
    queue_bound=QUEUE_BOUND,
)


@dataclass(frozen=True)
class ServingMet:
    """Each goal's verdict; true as a whole when every one is met."""

    throughput: bool
    p99: bool
    batch: bool
    no_loss_after_load: bool
    no_loss_after_sigterm: bool
    no_errors: bool
    ahead_of_mlserver: bool
    no_loss_after_kill_9: bool
    no_loss_after_short_grace: bool
    queue_bounded: bool
    memory_bounded: bool

    def __bool__(self) -> bool:
        return all(asdict(self).values())


@dataclass(frozen=True)
class ServingResult:
    """The serving benchmark: this service, the anchor and MLServer under load, and the service's durability."""

    concurrency: int
    duration_s: int
    batch_rows: int
    anchor: WrkRun
    anchor_batch: RoundTrips
    predict: AnchoredRun
    invocations: AnchoredRun
    batch: TimedRoundTrips
    batch_idle: TimedRoundTrips
    after_load: AfterLoad
    predict_2_workers: WorkersRun
    v2: AnchoredRun
    mlserver: WrkRun | Unmeasured
    sigterm: Sigterm
    killed: tuple[Killed, ...]
    grace: Killed
    soak: Soak
    goals: ServingGoals
    met: ServingMet

    def show(self, console: Console) -> None:
        """Every measurement beside the anchor's and its goal, as a table."""
        shown = table(
            f"Serving, one worker on one core, wrk on the other ({self.duration_s} s per run)",
            ("measurement", "this service", "mlflow models serve (anchor)", "ratio / goal", "met"),
        )
        self._load_rows(shown)
        self._batch_rows(shown)
        self._durability_rows(shown)
        console.print(shown)

    def _load_rows(self, shown: Table) -> None:
        c, anchor, met, goals = self.concurrency, self.anchor, self.met, self.goals
        for r, label, own in (
            (self.predict, "POST /predict", True),
            (self.invocations, "POST /invocations (same bodies as anchor)", False),
        ):
            shown.add_row(
                f"{label}, 1 row, concurrency {c}: req/s",
                f"{r.rps:,.0f}",
                f"{anchor.rps:,.0f}",
                f"{r.ratio:.1f}x (goal >= {goals.throughput_ratio:.0f}x)",
                yes(met.throughput) if own else "",
            )
            shown.add_row(
                "  latency p50 / p99",
                f"{r.p50_ms:.1f} / {r.p99_ms:.1f} ms",
                f"{anchor.p50_ms:.1f} / {anchor.p99_ms:.1f} ms",
                f"p99 goal <= {goals.p99_ms:.0f} ms" if own else "",
                yes(met.p99) if own else "",
            )
        two = self.predict_2_workers
        shown.add_row(
            f"POST /predict, 1 row, concurrency {c}, 2 workers on both cores (wrk on the second): req/s",
            f"{two.rps:,.0f}",
            "",
            f"{two.vs_1_worker:.2f}x one worker (no goal)",
            "",
        )
        shown.add_row("  latency p50 / p99", f"{two.p50_ms:.1f} / {two.p99_ms:.1f} ms", "", "", "")
        v2, other = self.v2, self.mlserver
        if isinstance(other, Unmeasured):
            shown.add_row("MLServer, the same V2 requests", "", f"not measured: {other.error[:200]}", "", yes(False))
            return
        shown.add_row(
            f"POST /v2/models/…/infer, 1 row, concurrency {c}: req/s (anchor column: MLServer)",
            f"{v2.rps:,.0f}",
            f"{other.rps:,.0f}",
            f"{v2.rps / other.rps:.1f}x; /predict {self.predict.rps / other.rps:.1f}x (goal > 1x)",
            yes(met.ahead_of_mlserver),
        )
        shown.add_row(
            "  latency p50 / p99",
            f"{v2.p50_ms:.1f} / {v2.p99_ms:.1f} ms",
            f"{other.p50_ms:.1f} / {other.p99_ms:.1f} ms",
            "",
            "",
        )

    def _batch_rows(self, shown: Table) -> None:
        batch, anchor_batch, idle = self.batch, self.anchor_batch, self.batch_idle
        shown.add_row(
            f"batch of {self.batch_rows:,} rows, one at a time: server-side (median / p90)",
            f"{batch.server_median_ms:.1f} / {batch.server_p90_ms:.1f} ms",
            "",
            f"goal <= {self.goals.batch_server_ms:.0f} ms",
            yes(self.met.batch),
        )
        shown.add_row(
            "  round trip (median)",
            f"{batch.round_trip_median_ms:.1f} ms",
            f"{anchor_batch.round_trip_median_ms:.1f} ms",
            f"{anchor_batch.round_trip_median_ms / batch.round_trip_median_ms:.1f}x",
            "",
        )
        shown.add_row(
            "  on an idle server (0.5 s pause before each): server-side (median)",
            f"{idle.server_median_ms:.1f} ms",
            "",
            "",
            "",
        )

    def _durability_rows(self, shown: Table) -> None:
        after, sigterm, grace, soak, met = self.after_load, self.sigterm, self.grace, self.soak, self.met
        shown.add_row(
            "after the load runs: rows predicted = rows logged",
            f"{after.predicted:,} = {after.logged:,}",
            "",
            "",
            yes(met.no_loss_after_load),
        )
        shown.add_row(
            "SIGTERM under load: 2xx received = rows logged",
            f"{sigterm.answered:,} = {sigterm.logged:,} (exit {sigterm.exit_code})",
            "",
            "",
            yes(met.no_loss_after_sigterm),
        )
        for killed in self.killed:
            shown.add_row(
                f"SIGKILL {killed.after_s:g} s into a saturating run: answered ids missing from the log",
                f"{killed.missing} of {killed.answered:,}",
                "",
                "goal 0",
                yes(killed.missing == 0),
            )
        shown.add_row(
            f"SIGTERM, then SIGKILL {grace.grace_s:g} s later (a container stop): answered ids missing",
            f"{grace.missing} of {grace.answered:,}",
            "",
            "goal 0",
            yes(met.no_loss_after_short_grace),
        )
        shown.add_row(
            f"{soak.duration_s} s saturating run: req/s, p99", f"{soak.rps:,.0f}, {soak.p99_ms:.1f} ms", "", "", ""
        )
        shown.add_row(
            "  log queue (journal records not in the database): median / max / 2 s after",
            f"{soak.queue_median:,.0f} / {soak.queue_max:,} / {soak.queue_after:,}",
            "",
            f"max < {self.goals.queue_bound:,} (503 beyond)",
            yes(met.queue_bounded),
        )
        shown.add_row(
            "  resident memory: warmed up / peak",
            f"{soak.rss_start_mb:.0f} / {soak.rss_peak_mb:.0f} MB",
            "",
            f"growth <= {self.goals.rss_growth_mb:.0f} MB",
            yes(met.memory_bounded),
        )
        shown.add_row(
            "failed requests under load",
            str(self.predict.failed + self.invocations.failed),
            str(self.anchor.failed),
            "",
            yes(met.no_errors),
        )


def anchored(run: WrkRun, anchor: WrkRun) -> AnchoredRun:
    """``run`` with its throughput as a multiple of ``anchor``'s."""
    return AnchoredRun(**asdict(run), ratio=run.rps / anchor.rps)


def summarise(
    *,
    duration_s: int,
    concurrency: int,
    batch_rows: int,
    anchor: WrkRun,
    anchor_batch: RoundTrips,
    predict: WrkRun,
    invocations: WrkRun,
    batch: TimedRoundTrips,
    batch_idle: TimedRoundTrips,
    after_load: AfterLoad,
    predict_2_workers: WrkRun,
    v2: WrkRun,
    mlserver: WrkRun | Unmeasured,
    sigterm: Sigterm,
    killed: tuple[Killed, ...],
    grace: Killed,
    soak: Soak,
) -> ServingResult:
    """The measurements with their ratios against the anchor and each goal's verdict."""
    ahead = isinstance(mlserver, WrkRun) and v2.rps > mlserver.rps and predict.rps > mlserver.rps
    loaded = (anchor, predict, invocations, v2, predict_2_workers)
    met = ServingMet(
        throughput=predict.rps / anchor.rps >= GOAL_RATIO,
        p99=predict.p99_ms <= GOAL_P99_MS,
        batch=batch.server_median_ms <= GOAL_BATCH_MS,
        no_loss_after_load=after_load.predicted == after_load.logged,
        # uvicorn re-raises the SIGTERM it handled once shutdown is complete, so -15 is a clean exit
        no_loss_after_sigterm=sigterm.answered == sigterm.logged and sigterm.exit_code in (0, -15),
        no_errors=all(r.failed == 0 for r in loaded),
        ahead_of_mlserver=ahead,
        no_loss_after_kill_9=all(k.missing == 0 and k.answered > 0 for k in killed),
        no_loss_after_short_grace=grace.missing == 0 and grace.answered > 0,
        queue_bounded=soak.queue_max < QUEUE_BOUND and soak.failed == 0,
        memory_bounded=soak.rss_peak_mb - soak.rss_start_mb <= GOAL_RSS_GROWTH_MB,
    )
    return ServingResult(
        concurrency=concurrency,
        duration_s=duration_s,
        batch_rows=batch_rows,
        anchor=anchor,
        anchor_batch=anchor_batch,
        predict=anchored(predict, anchor),
        invocations=anchored(invocations, anchor),
        batch=batch,
        batch_idle=batch_idle,
        after_load=after_load,
        predict_2_workers=WorkersRun(**asdict(predict_2_workers), vs_1_worker=predict_2_workers.rps / predict.rps),
        v2=anchored(v2, anchor),
        mlserver=mlserver,
        sigterm=sigterm,
        killed=killed,
        grace=grace,
        soak=soak,
        goals=GOALS,
        met=met,
    )
