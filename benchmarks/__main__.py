"""``make bench``: run the benchmarks, print each against its anchor and goal, save the results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from benchmarks import data_stages, training
from flightdelay.settings import Settings, apply_process_defaults

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
console = Console()


def show_data_stages(result: dict[str, Any]) -> bool:
    pipeline, joins = result["pipeline"], result["joins"]
    table = Table(title=f"Data stages on the full data ({result['flights']:,} flights)")
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
        "joins (flights ⟕ weather ⟕ planes), polars",
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


def _yes(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="Where to save the results as JSON.")] = Path("reports/benchmarks"),
    repeat: Annotated[int, typer.Option(min=1, help="Runs per measurement; the best is reported.")] = 3,
) -> None:
    """Run every benchmark against its anchor; exit 1 if a goal is missed."""
    apply_process_defaults(Settings())
    results = {"data_stages": data_stages.run(repeat=repeat), "training": training.run()}
    met = show_data_stages(results["data_stages"])
    met = show_training(results["training"]) and met
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"results saved to {out / 'results.json'}")
    if not met:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
