"""The replay benchmark's results: each replay and ``wrk`` run, the ratios, medians and goals, and their table."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table

from tools.benchmarks.display import table, yes
from tools.benchmarks.measure import BenchmarkError
from tools.benchmarks.serving import CONCURRENCY
from tools.benchmarks.serving_results import WrkRun

GOAL_RATE_SHARE = 0.05  # a paced replay achieves its rate within 5%


@dataclass(frozen=True)
class ReplayRun:
    """One bounded replay: what it sent, how fast, how busy each core was, and what the log holds."""

    rate: float | None
    sent: int
    answered: int
    rejected: int
    feedback: int
    seconds: float
    stopped_by: str
    predictions_per_s: float
    feedback_per_s: float
    client_busy: float
    server_busy: float
    client_cpu_ms_per_row: float
    server_cpu_ms_per_row: float
    logged: int
    recorded: int


@dataclass(frozen=True)
class PacedRun(ReplayRun):
    """A replay held to a rate, with the share of the rate it achieved."""

    rate_ratio: float


@dataclass(frozen=True)
class UnlimitedRun(ReplayRun):
    """The median replay without a rate limit, as a share of the service's capacity for its requests and for plain
    ones."""

    capacity_share: float
    plain_share: float


@dataclass(frozen=True)
class TimedWrkRun(WrkRun):
    """A ``wrk`` run with the service's own mean time on a ``POST /predict`` meanwhile (its ``/metrics``)."""

    server_mean_ms: float


@dataclass(frozen=True)
class ThroughputPair:
    """The service's capacity (``wrk`` with plain and with replay-like requests), then a replay without a limit."""

    capacity: WrkRun
    replay_like: WrkRun
    unlimited: ReplayRun
    ratio: float
    plain_ratio: float


@dataclass(frozen=True)
class LatencyPair:
    """``wrk`` at a moderate pace alone, then while a paced replay runs."""

    alone: TimedWrkRun
    with_replay: TimedWrkRun
    replay: PacedRun


@dataclass(frozen=True)
class Medians:
    """The medians of one side of the latency pairs, and their failed requests in all."""

    rps: float
    p50_ms: float
    p99_ms: float
    server_mean_ms: float
    failed: int


@dataclass(frozen=True)
class Effect:
    """The median over the latency pairs of each pair's ratio, with a replay to alone."""

    rps: float
    p50_ms: float
    p99_ms: float
    server_mean_ms: float


@dataclass(frozen=True)
class ReplayMet:
    """Each goal's verdict; true as a whole when every one is met."""

    keeps_up: bool
    nothing_lost: bool
    no_rejections: bool
    rate_held: bool
    no_errors: bool

    def __bool__(self) -> bool:
        return all(asdict(self).values())


@dataclass(frozen=True)
class ReplayResult:
    """The replay benchmark: throughput against the service's capacity, pacing, and the effect on other clients."""

    duration_s: int
    concurrency: int
    rate: float
    wrk_connections: int
    wrk_pause_ms: int
    throughput: tuple[ThroughputPair, ...]
    paced: PacedRun
    paced_reachable: PacedRun
    pairs: tuple[LatencyPair, ...]
    capacity: WrkRun
    unlimited: UnlimitedRun
    replay_like: WrkRun
    unlimited_concurrency: int
    alone: Medians
    with_replay: Medians
    effect: Effect
    replay_rate: float
    met: ReplayMet

    def show(self, console: Console) -> None:
        """Every measurement beside its anchor and goal, as a table."""
        shown = table(
            "Replay against the service, one worker on one core; the replayer and wrk on the other",
            ("measurement", "value", "anchor", "ratio", "met"),
        )
        self._throughput_rows(shown)
        self._pacing_rows(shown)
        self._latency_rows(shown)
        console.print(shown)

    def _throughput_rows(self, shown: Table) -> None:
        unlimited, capacity = self.unlimited, self.capacity
        ratios = ", ".join(f"{pair.ratio:.2f}" for pair in self.throughput)
        shown.add_row(
            f"replay, no rate limit, concurrency {self.unlimited_concurrency}, {unlimited.sent:,} rows: "
            f"predictions/s (median of {len(self.throughput)} rounds, ratios {ratios})",
            f"{unlimited.predictions_per_s:,.0f}",
            f"wrk sending the replay's requests (an id and an event time each), concurrency {CONCURRENCY}: "
            f"{self.replay_like.rps:,.0f} req/s",
            f"{unlimited.capacity_share:.2f} of it (goal >= 1)",
            yes(self.met.keeps_up),
        )
        shown.add_row(
            "  the same, against plain requests (no id: nothing to look up)",
            "",
            f"wrk, concurrency {CONCURRENCY}: {capacity.rps:,.0f} req/s",
            f"{unlimited.plain_share:.2f} of it",
            "",
        )
        shown.add_row("  outcomes sent to /feedback", f"{unlimited.feedback_per_s:,.0f}/s", "", "", "")
        shown.add_row(
            "  CPU a row (its prediction and outcome): the service / the replayer",
            f"{unlimited.server_cpu_ms_per_row:.2f} / {unlimited.client_cpu_ms_per_row:.2f} ms",
            "",
            f"cores busy {unlimited.server_busy:.0%} / {unlimited.client_busy:.0%}",
            "",
        )

    def _pacing_rows(self, shown: Table) -> None:
        paced, reachable = self.paced, self.paced_reachable
        for label, r in (("the configured rate", paced), ("a quarter of the rate reached without a limit", reachable)):
            shown.add_row(
                f"replay at {label}, {r.seconds:.0f} s: achieved",
                f"{r.predictions_per_s:,.1f}/s",
                f"rate {r.rate:,.0f}/s",
                f"{r.rate_ratio:.3f} of it",
                "",
            )
        shown.add_row(
            "  never above the rate; within it by the goal where reachable",
            "",
            "",
            f"goal within {GOAL_RATE_SHARE:.0%}",
            yes(self.met.rate_held),
        )
        replays = [self.unlimited, paced, reachable, *(p.replay for p in self.pairs)]
        sent, logged = sum(r.sent for r in replays), sum(r.logged for r in replays)
        outcomes, recorded = sum(r.feedback for r in replays), sum(r.recorded for r in replays)
        shown.add_row(
            f"every replay: predictions sent = logged; outcomes sent = recorded; {sum(r.rejected for r in replays)} "
            "rejected",
            f"{sent:,} = {logged:,}; {outcomes:,} = {recorded:,}",
            "",
            "",
            yes(self.met.nothing_lost and self.met.no_rejections),
        )

    def _latency_rows(self, shown: Table) -> None:
        alone, loaded, effect = self.alone, self.with_replay, self.effect
        shown.add_row(
            f"POST /predict, wrk {self.wrk_connections} connections pausing {self.wrk_pause_ms} ms "
            f"(closed loop), {len(self.pairs)} x {self.duration_s / 2:g} s alone and with a replay "
            f"(at {self.replay_rate:,.0f}/s), medians: req/s",
            f"{loaded.rps:,.0f}",
            f"alone: {alone.rps:,.0f}",
            f"{effect.rps:.2f}x",
            "",
        )
        shown.add_row(
            "  latency p50 / p99",
            f"{loaded.p50_ms:.1f} / {loaded.p99_ms:.1f} ms",
            f"{alone.p50_ms:.1f} / {alone.p99_ms:.1f} ms",
            f"{effect.p50_ms:.2f}x / {effect.p99_ms:.2f}x",
            "",
        )
        shown.add_row(
            "  the service's own time on a POST /predict, mean (its /metrics; every client)",
            f"{loaded.server_mean_ms:.2f} ms",
            f"{alone.server_mean_ms:.2f} ms",
            f"{effect.server_mean_ms:.2f}x",
            "",
        )
        shown.add_row(
            "failed requests (wrk)",
            str(loaded.failed + self.capacity.failed),
            str(alone.failed),
            "",
            yes(self.met.no_errors),
        )


def at_rate(run: ReplayRun) -> PacedRun:
    """``run``, held to a rate, with the share of it achieved."""
    if run.rate is None:
        raise BenchmarkError("a paced replay ran without a rate")
    return PacedRun(**asdict(run), rate_ratio=run.predictions_per_s / run.rate)


def timed(run: WrkRun, server_mean_ms: float) -> TimedWrkRun:
    """``run`` with the service's own mean time on a request meanwhile."""
    return TimedWrkRun(**asdict(run), server_mean_ms=server_mean_ms)


def throughput_pair(capacity: WrkRun, replay_like: WrkRun, unlimited: ReplayRun) -> ThroughputPair:
    """A replay without a limit against the service's capacity for its requests and for plain ones."""
    return ThroughputPair(
        capacity=capacity,
        replay_like=replay_like,
        unlimited=unlimited,
        ratio=unlimited.predictions_per_s / replay_like.rps,
        plain_ratio=unlimited.predictions_per_s / capacity.rps,
    )


def medians(runs: Sequence[TimedWrkRun]) -> Medians:
    """The medians of ``runs``, and their failed requests in all."""
    return Medians(
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        server_mean_ms=statistics.median(r.server_mean_ms for r in runs),
        failed=sum(r.failed for r in runs),
    )


def effect(pairs: Sequence[LatencyPair]) -> Effect:
    """Each pair's ratio, taken a few seconds apart, then the median: slow drifts of a shared machine cancel out."""
    return Effect(
        rps=statistics.median(p.with_replay.rps / p.alone.rps for p in pairs),
        p50_ms=statistics.median(p.with_replay.p50_ms / p.alone.p50_ms for p in pairs),
        p99_ms=statistics.median(p.with_replay.p99_ms / p.alone.p99_ms for p in pairs),
        server_mean_ms=statistics.median(p.with_replay.server_mean_ms / p.alone.server_mean_ms for p in pairs),
    )


def summarise(
    *,
    duration_s: int,
    concurrency: int,
    rate: float,
    wrk_connections: int,
    wrk_pause_ms: int,
    throughput: Sequence[ThroughputPair],
    paced: PacedRun,
    paced_reachable: PacedRun,
    pairs: Sequence[LatencyPair],
) -> ReplayResult:
    """The measurements with the median pairs and each goal's verdict: nothing lost or rejected, the rate held, no
    failed request."""
    middle = sorted(throughput, key=lambda pair: pair.ratio)[len(throughput) // 2]  # the median pair
    plain_share = statistics.median(pair.plain_ratio for pair in throughput)
    unlimited = UnlimitedRun(**asdict(middle.unlimited), capacity_share=middle.ratio, plain_share=plain_share)
    alone, with_replay = medians([p.alone for p in pairs]), medians([p.with_replay for p in pairs])
    held = [paced, paced_reachable, *(p.replay for p in pairs)]
    replays = [*(pair.unlimited for pair in throughput), *held]
    met = ReplayMet(
        keeps_up=middle.ratio >= 1.0,
        nothing_lost=all(r.logged == r.answered == r.sent and r.recorded == r.feedback for r in replays),
        no_rejections=all(r.rejected == 0 for r in replays),
        # never faster than the rate; as fast where the replay can be
        rate_held=all(r.rate_ratio <= 1 + GOAL_RATE_SHARE for r in held)
        and paced_reachable.rate_ratio >= 1 - GOAL_RATE_SHARE,
        no_errors=all(pair.capacity.failed == 0 and pair.replay_like.failed == 0 for pair in throughput)
        and alone.failed == 0
        and with_replay.failed == 0,
    )
    return ReplayResult(
        duration_s=duration_s,
        concurrency=concurrency,
        rate=rate,
        wrk_connections=wrk_connections,
        wrk_pause_ms=wrk_pause_ms,
        throughput=tuple(throughput),
        paced=paced,
        paced_reachable=paced_reachable,
        pairs=tuple(pairs),
        capacity=middle.capacity,
        unlimited=unlimited,
        replay_like=middle.replay_like,
        unlimited_concurrency=CONCURRENCY,
        alone=alone,
        with_replay=with_replay,
        effect=effect(pairs),
        replay_rate=statistics.median(p.replay.predictions_per_s for p in pairs),
        met=met,
    )
