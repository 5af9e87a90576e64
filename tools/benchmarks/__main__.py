"""``make bench``: run the benchmarks, print each against its anchor and goal, save the results."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tabloop.settings import Settings, apply_process_defaults
from tools.benchmarks import data_stages, distributed, monitoring, replay, serving, stack, training
from tools.benchmarks.measure import BenchmarkError

BENCHMARKS = ("data_stages", "training", "distributed", "serving", "replay", "monitoring", "stack")
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
console = Console()


def show_data_stages(result: dict[str, Any]) -> bool:
    pipeline, joins = result["pipeline"], result["joins"]
    table = Table(title=f"Data stages of {result['dataset']} on the full data ({result['rows']:,} rows)")
    for column in ("measurement", "value", "anchor / goal", "ratio", "met"):
        table.add_column(column)
    table.add_row(
        "dvc repro ingest → validate → features (wall, best)",
        f"{pipeline['wall_s']:.1f} s",
        f"goal ≤ {pipeline['goal_wall_s']:.0f} s",
        f"{pipeline['wall_s'] / pipeline['goal_wall_s']:.2f} of goal",
        _yes(pipeline["wall_s"] <= pipeline["goal_wall_s"]),
    )
    table.add_row(
        "  peak memory, whole process tree",
        f"{pipeline['peak_gib']:.2f} GiB",
        f"goal ≤ {pipeline['goal_peak_gib']:.0f} GiB",
        f"{pipeline['peak_gib'] / pipeline['goal_peak_gib']:.2f} of goal",
        _yes(pipeline["peak_gib"] <= pipeline["goal_peak_gib"]),
    )
    table.add_row("dvc repro with nothing changed", f"{pipeline['noop_wall_s']:.1f} s", "", "", "")
    for stage, numbers in result["stages"].items():
        table.add_row(f"  stage {stage} alone", f"{numbers['wall_s']:.1f} s, {numbers['peak_gib']:.2f} GiB", "", "", "")
    table.add_row(
        f"the adapter's joins ({' ⟕ '.join(joins['tables'])}), polars",
        f"{joins['polars_best_s'] * 1000:.0f} ms",
        f"pandas {joins['pandas_best_s'] * 1000:.0f} ms",
        f"{joins['speedup_vs_pandas']:.1f}x faster",
        _yes(joins["met"]),
    )
    console.print(table)
    return bool(pipeline["met"] and joins["met"])


def show_training(result: dict[str, Any]) -> bool:
    table = Table(title=f"Training input pipeline ({result['rows']:,} rows, batch {result['batch_size']})")
    for column in ("model", "sliced tensors", "Dataset + DataLoader (anchor)", "speed-up", "goal >= 3x"):
        table.add_column(column)
    for key, label in (("configured", "configured ensemble"), ("single_member", "one member")):
        r = result[key]
        table.add_row(
            f"{label} ({r['members']} member{'s' if r['members'] > 1 else ''})",
            f"{r['paths']['sliced tensors']['rows_per_s']:,} rows/s",
            f"{r['paths']['Dataset + DataLoader']['rows_per_s']:,} rows/s",
            f"{r['speedup']:.2f}x",
            _yes(r["speedup"] >= result["goal"]),
        )
    console.print(table)
    return bool(result["met"])


def show_distributed(result: dict[str, Any]) -> bool:
    table = Table(title=f"Training in processes under torchrun ({result['train_rows']:,} training rows, full run)")
    for column in ("processes", "wall", "rows/s", "speed-up", "epochs (best)", "valid ROC AUC", "test ROC AUC"):
        table.add_column(column)
    for n, r in result["runs"].items():
        anchor = " (anchor)" if f"nproc {n}" == result["anchor"] else ""
        table.add_row(
            f"{n}{anchor}",
            f"{r['wall_s']} s",
            f"{r['rows_per_s']:,}",
            f"{r['speedup']:.2f}x",
            f"{r['epochs_run']} ({r['best_epoch']})",
            f"{r['valid_roc_auc']:.4f}",
            f"{r['test_roc_auc']:.4f}",
        )
    console.print(table)
    return True  # no goal: the figures are reported side by side


def show_serving(result: dict[str, Any]) -> bool:
    c, rows = result["concurrency"], result["batch_rows"]
    table = Table(title=f"Serving, one worker on one core, wrk on the other ({result['duration_s']} s per run)")
    for column in ("measurement", "this service", "mlflow models serve (anchor)", "ratio / goal", "met"):
        table.add_column(column)
    anchor, met, goals = result["anchor"], result["met"], result["goals"]
    for key, label in (("predict", "POST /predict"), ("invocations", "POST /invocations (same bodies as anchor)")):
        r = result[key]
        table.add_row(
            f"{label}, 1 row, concurrency {c}: req/s",
            f"{r['rps']:,.0f}",
            f"{anchor['rps']:,.0f}",
            f"{r['ratio']:.1f}x (goal >= {goals['throughput_ratio']:.0f}x)",
            _yes(met["throughput"]) if key == "predict" else "",
        )
        table.add_row(
            "  latency p50 / p99",
            f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms",
            f"{anchor['p50_ms']:.1f} / {anchor['p99_ms']:.1f} ms",
            f"p99 goal <= {goals['p99_ms']:.0f} ms" if key == "predict" else "",
            _yes(met["p99"]) if key == "predict" else "",
        )
    two = result["predict_2_workers"]
    table.add_row(
        f"POST /predict, 1 row, concurrency {c}, 2 workers on both cores (wrk on the second): req/s",
        f"{two['rps']:,.0f}",
        "",
        f"{two['vs_1_worker']:.2f}x one worker (no goal)",
        "",
    )
    table.add_row("  latency p50 / p99", f"{two['p50_ms']:.1f} / {two['p99_ms']:.1f} ms", "", "", "")
    v2, other = result["v2"], result["mlserver"]
    if "error" in other:
        table.add_row("MLServer, the same V2 requests", "", f"not measured: {other['error'][:200]}", "", _yes(False))
    else:
        table.add_row(
            f"POST /v2/models/…/infer, 1 row, concurrency {c}: req/s (anchor column: MLServer)",
            f"{v2['rps']:,.0f}",
            f"{other['rps']:,.0f}",
            f"{v2['rps'] / other['rps']:.1f}x; /predict {result['predict']['rps'] / other['rps']:.1f}x (goal > 1x)",
            _yes(met["ahead_of_mlserver"]),
        )
        table.add_row(
            "  latency p50 / p99",
            f"{v2['p50_ms']:.1f} / {v2['p99_ms']:.1f} ms",
            f"{other['p50_ms']:.1f} / {other['p99_ms']:.1f} ms",
            "",
            "",
        )
    batch, anchor_batch, idle = result["batch"], result["anchor_batch"], result["batch_idle"]
    table.add_row(
        f"batch of {rows:,} rows, one at a time: server-side (median / p90)",
        f"{batch['server_median_ms']:.1f} / {batch['server_p90_ms']:.1f} ms",
        "",
        f"goal <= {goals['batch_server_ms']:.0f} ms",
        _yes(met["batch"]),
    )
    table.add_row(
        "  round trip (median)",
        f"{batch['round_trip_median_ms']:.1f} ms",
        f"{anchor_batch['round_trip_median_ms']:.1f} ms",
        f"{anchor_batch['round_trip_median_ms'] / batch['round_trip_median_ms']:.1f}x",
        "",
    )
    table.add_row(
        "  on an idle server (0.5 s pause before each): server-side (median)",
        f"{idle['server_median_ms']:.1f} ms",
        "",
        "",
        "",
    )
    after, sigterm = result["after_load"], result["sigterm"]
    table.add_row(
        "after the load runs: rows predicted = rows logged",
        f"{after['predicted']:,} = {after['logged']:,}",
        "",
        "",
        _yes(met["no_loss_after_load"]),
    )
    table.add_row(
        "SIGTERM under load: 2xx received = rows logged",
        f"{sigterm['answered']:,} = {sigterm['logged']:,} (exit {sigterm['exit_code']})",
        "",
        "",
        _yes(met["no_loss_after_sigterm"]),
    )
    for killed in result["killed"]:
        table.add_row(
            f"SIGKILL {killed['after_s']:g} s into a saturating run: answered ids missing from the log",
            f"{killed['missing']} of {killed['answered']:,}",
            "",
            "goal 0",
            _yes(killed["missing"] == 0),
        )
    grace = result["grace"]
    table.add_row(
        f"SIGTERM, then SIGKILL {grace['grace_s']:g} s later (a container stop): answered ids missing",
        f"{grace['missing']} of {grace['answered']:,}",
        "",
        "goal 0",
        _yes(met["no_loss_after_short_grace"]),
    )
    soak = result["soak"]
    table.add_row(
        f"{soak['duration_s']} s saturating run: req/s, p99",
        f"{soak['rps']:,.0f}, {soak['p99_ms']:.1f} ms",
        "",
        "",
        "",
    )
    table.add_row(
        "  log queue (journal records not in the database): median / max / 2 s after",
        f"{soak['queue_median']:,.0f} / {soak['queue_max']:,} / {soak['queue_after']:,}",
        "",
        f"max < {goals['queue_bound']:,} (503 beyond)",
        _yes(met["queue_bounded"]),
    )
    table.add_row(
        "  resident memory: warmed up / peak",
        f"{soak['rss_start_mb']:.0f} / {soak['rss_peak_mb']:.0f} MB",
        "",
        f"growth <= {goals['rss_growth_mb']:.0f} MB",
        _yes(met["memory_bounded"]),
    )
    table.add_row(
        "failed requests under load",
        str(sum(result[k]["failed"] for k in ("predict", "invocations"))),
        str(anchor["failed"]),
        "",
        _yes(met["no_errors"]),
    )
    console.print(table)
    return all(met.values())


def show_replay(result: dict[str, Any]) -> bool:
    met = result["met"]
    table = Table(title="Replay against the service, one worker on one core; the replayer and wrk on the other")
    for column in ("measurement", "value", "anchor", "ratio", "met"):
        table.add_column(column)
    unlimited, capacity = result["unlimited"], result["capacity"]
    ratios = ", ".join(f"{pair['ratio']:.2f}" for pair in result["throughput"])
    table.add_row(
        f"replay, no rate limit, concurrency {result['unlimited_concurrency']}, {unlimited['sent']:,} rows: "
        f"predictions/s (median of {len(result['throughput'])} rounds, ratios {ratios})",
        f"{unlimited['predictions_per_s']:,.0f}",
        f"wrk sending the replay's requests (an id and an event time each), concurrency {serving.CONCURRENCY}: "
        f"{result['replay_like']['rps']:,.0f} req/s",
        f"{unlimited['capacity_share']:.2f} of it (goal >= 1)",
        _yes(met["keeps_up"]),
    )
    table.add_row(
        "  the same, against plain requests (no id: nothing to look up)",
        "",
        f"wrk, concurrency {serving.CONCURRENCY}: {capacity['rps']:,.0f} req/s",
        f"{unlimited['plain_share']:.2f} of it",
        "",
    )
    table.add_row("  outcomes sent to /feedback", f"{unlimited['feedback_per_s']:,.0f}/s", "", "", "")
    table.add_row(
        "  CPU a row (its prediction and outcome): the service / the replayer",
        f"{unlimited['server_cpu_ms_per_row']:.2f} / {unlimited['client_cpu_ms_per_row']:.2f} ms",
        "",
        f"cores busy {unlimited['server_busy']:.0%} / {unlimited['client_busy']:.0%}",
        "",
    )
    paced, reachable = result["paced"], result["paced_reachable"]
    for label, r in (("the configured rate", paced), ("a quarter of the rate reached without a limit", reachable)):
        table.add_row(
            f"replay at {label}, {r['seconds']:.0f} s: achieved",
            f"{r['predictions_per_s']:,.1f}/s",
            f"rate {r['rate']:,.0f}/s",
            f"{r['rate_ratio']:.3f} of it",
            "",
        )
    table.add_row(
        "  never above the rate; within it by the goal where reachable",
        "",
        "",
        f"goal within {replay.GOAL_RATE_SHARE:.0%}",
        _yes(met["rate_held"]),
    )
    replays = [unlimited, paced, reachable, *(p["replay"] for p in result["pairs"])]
    sent, logged = sum(r["sent"] for r in replays), sum(r["logged"] for r in replays)
    outcomes, recorded = sum(r["feedback"] for r in replays), sum(r["recorded"] for r in replays)
    table.add_row(
        f"every replay: predictions sent = logged; outcomes sent = recorded; {sum(r['rejected'] for r in replays)} "
        "rejected",
        f"{sent:,} = {logged:,}; {outcomes:,} = {recorded:,}",
        "",
        "",
        _yes(met["nothing_lost"] and met["no_rejections"]),
    )
    alone, loaded, effect = result["alone"], result["with_replay"], result["effect"]
    table.add_row(
        f"POST /predict, wrk {result['wrk_connections']} connections pausing {result['wrk_pause_ms']} ms "
        f"(closed loop), {len(result['pairs'])} x {result['duration_s'] / 2:g} s alone and with a replay "
        f"(at {result['replay_rate']:,.0f}/s), medians: req/s",
        f"{loaded['rps']:,.0f}",
        f"alone: {alone['rps']:,.0f}",
        f"{effect['rps']:.2f}x",
        "",
    )
    table.add_row(
        "  latency p50 / p99",
        f"{loaded['p50_ms']:.1f} / {loaded['p99_ms']:.1f} ms",
        f"{alone['p50_ms']:.1f} / {alone['p99_ms']:.1f} ms",
        f"{effect['p50_ms']:.2f}x / {effect['p99_ms']:.2f}x",
        "",
    )
    table.add_row(
        "  the service's own time on a POST /predict, mean (its /metrics; every client)",
        f"{loaded['server_mean_ms']:.2f} ms",
        f"{alone['server_mean_ms']:.2f} ms",
        f"{effect['server_mean_ms']:.2f}x",
        "",
    )
    table.add_row(
        "failed requests (wrk)",
        str(loaded["failed"] + capacity["failed"]),
        str(alone["failed"]),
        "",
        _yes(met["no_errors"]),
    )
    console.print(table)
    return all(met.values())


def show_monitoring(result: dict[str, Any]) -> bool:
    monitor, anchor, full, met = result["monitor"], result["anchor"], result["full_data"], result["met"]
    config = monitor["config"]
    table = Table(
        title=f"Monitoring {result['rows']:,} logged predictions ({result['windows']} weekly windows), "
        "python -m monitoring monitor, two cores"
    )
    for column in ("measurement", "value", "anchor / goal", "ratio", "met"):
        table.add_column(column)
    judged = config["judged_max_rows"] or "every row"
    table.add_row(
        f"monitor, shipped configuration (max_rows {config['max_rows']}, judged window: {judged}, "
        f"{config['workers']} worker): wall, best of {len(monitor['wall_s_runs'])}",
        f"{monitor['wall_s']:.1f} s",
        f"anchor {anchor['wall_s']:.1f} s; goal ≤ {monitor['goal_wall_s']:.0f} s",
        f"{monitor['wall_vs_anchor']:.2f}x anchor",
        _yes(met["wall"]),
    )
    table.add_row(
        "  peak memory, whole process tree",
        f"{monitor['peak_gib']:.2f} GiB",
        f"anchor {anchor['peak_gib']:.2f} GiB; goal ≤ {monitor['goal_peak_gib']:.0f} GiB",
        f"{monitor['peak_vs_anchor']:.2f}x anchor",
        _yes(met["memory"]),
    )
    table.add_row(
        f"anchor: {anchor['what']}, best of {len(anchor['wall_s_runs'])}", f"{anchor['wall_s']:.1f} s", "", "", ""
    )

    def verdict(v: dict[str, Any]) -> str:
        drifted, prediction = len(v["drifted_features"]), "yes" if v["prediction_drift"] else "no"
        return f"{v['status']} (exit {v['exit_code']}): {drifted} features drifted, prediction drift: {prediction}"

    table.add_row(f"verdict on {monitor['verdict']['window']}", verdict(monitor["verdict"]), "", "", "")
    table.add_row(
        "  the same on the full data (no sampling anywhere)",
        verdict(full["verdict"]),
        f"{full['wall_s']:.1f} s, {full['peak_gib']:.2f} GiB",
        "",
        _yes(met["same_verdict"]),
    )
    setup = f"{result['setup_s']:.0f} s" if result["setup_s"] else "cached"
    table.add_row("set-up: the log generated (not timed)", setup, "", "", "")
    console.print(table)
    return all(met.values())


def _yes(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


def show_stack(result: dict[str, Any]) -> bool:
    table = Table(title=f"Embedded stores against the stack's servers ({result['dataset']})")
    for column in ("measurement", "embedded (anchor)", "stack", "ratio"):
        table.add_column(column)
    local, server = result["registry"]["sqlite (anchor)"], result["registry"]["tracking server"]
    for key, label in (
        ("register_s", "register a version (run, model, gate)"),
        ("resolve_s", "resolve @champion, download"),
    ):
        table.add_row(
            f"{label}: SQLite vs MLflow server",
            f"{local[key]:.2f} s",
            f"{server[key]:.2f} s",
            f"{server[key] / local[key]:.2f}x the time",
        )
    sqlite, postgres = result["log"]["sqlite (anchor)"], result["log"]["postgresql"]
    table.add_row(
        f"prediction log, {result['log_rows']:,} single-row requests loaded: SQLite vs PostgreSQL",
        f"{sqlite['rows_per_s']:,} rows/s",
        f"{postgres['rows_per_s']:,} rows/s",
        f"{postgres['rows_per_s'] / sqlite['rows_per_s']:.2f}x the rate",
    )
    console.print(table)
    return True  # no goal: the figures are reported side by side


RUNS: dict[str, tuple[Callable[[int], dict[str, Any]], Callable[[dict[str, Any]], bool]]] = {
    "data_stages": (lambda repeat: data_stages.run(repeat=repeat), show_data_stages),
    "training": (lambda _: training.run(), show_training),
    "distributed": (lambda _: distributed.run(), show_distributed),
    "serving": (lambda _: serving.run(), show_serving),
    "replay": (lambda _: replay.run(), show_replay),
    "monitoring": (lambda repeat: monitoring.run(repeat=repeat), show_monitoring),
    "stack": (lambda _: stack.run(), show_stack),
}


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="Where to save the results as JSON.")] = Path("reports/benchmarks"),
    repeat: Annotated[int, typer.Option(min=1, help="Runs per measurement; the best is reported.")] = 3,
    only: Annotated[list[str] | None, typer.Option(help=f"Run only these ({', '.join(BENCHMARKS)}).")] = None,
) -> None:
    """Run every benchmark against its anchor; exit 1 if a goal is missed."""
    apply_process_defaults(Settings())
    chosen = only or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        raise typer.BadParameter(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    results: dict[str, Any] = {}
    met = True
    for name in (b for b in BENCHMARKS if b in chosen):
        measure, show = RUNS[name]
        try:
            results[name] = measure(repeat)
        except BenchmarkError as e:
            console.print(f"[red]{name} not measured:[/] {e}")
            met = False
        else:
            met = show(results[name]) and met
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"results saved to {out / 'results.json'}")
    if not met:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
