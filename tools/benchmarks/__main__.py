"""``make bench``: run the benchmarks, print each against its anchor and goal, save the results."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol

import typer
from rich.console import Console

from tabloop.settings import Settings, apply_process_defaults
from tools.benchmarks import data_stages, distributed, monitoring, replay, serving, stack, training
from tools.benchmarks.measure import BenchmarkError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    class Verdict(Protocol):
        """Whether a benchmark met its goals: a bool, or a record of each goal's verdict, true when all are met."""

        def __bool__(self) -> bool: ...

    class Result(DataclassInstance, Protocol):
        """What a benchmark returns: a dataclass of its measurements (saved through ``dataclasses.asdict``) that
        knows its verdict and prints its table."""

        @property
        def met(self) -> Verdict: ...

        def show(self, console: Console) -> None: ...


BENCHMARKS: dict[str, Callable[[int], Result]] = {
    "data_stages": lambda repeat: data_stages.run(repeat=repeat),
    "training": lambda _: training.run(),
    "distributed": lambda _: distributed.run(),
    "serving": lambda _: serving.run(),
    "replay": lambda _: replay.run(),
    "monitoring": lambda repeat: monitoring.run(repeat=repeat),
    "stack": lambda _: stack.run(),
}
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
console = Console()


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
    results: dict[str, object] = {}
    met = True
    for name in (b for b in BENCHMARKS if b in chosen):
        try:
            result = BENCHMARKS[name](repeat)
        except BenchmarkError as e:
            console.print(f"[red]{name} not measured:[/] {e}")
            met = False
        else:
            results[name] = asdict(result)
            result.show(console)
            met = bool(result.met) and met
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"results saved to {out / 'results.json'}")
    if not met:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
