"""DVC stage ``register``: log the run and the model to MLflow, register a version, run the promotion gate."""

from pathlib import Path
from typing import Annotated

import typer
from pydantic import JsonValue

from tabloop.commands.boundary import DatasetOption, console, entry_point
from tabloop.config import (
    load_data_config,
    load_evaluate_config,
    load_registry_config,
    load_train_config,
    load_tuned_config,
)
from tabloop.registry.candidate import RegisterInputs
from tabloop.stages.register import run as register_candidate

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    dataset: DatasetOption = None,
    lock: Annotated[Path, typer.Option(help="DVC lock file (hashes of the data).")] = Path("dvc.lock"),
) -> None:
    """Register the trained model as @challenger; promote it to @champion if it passes the gate."""
    with entry_point("register") as settings:
        where = settings.layout(dataset)
        registry = load_registry_config(where.registry_config)
        evaluate = load_evaluate_config(where.evaluate_config)
        data = load_data_config(where.data_config)
        params: dict[str, JsonValue] = {
            "train": load_train_config(where.train_config, where.tuned_config).model_dump(mode="json"),
            "data": data.model_dump(mode="json", include={"label", "split", "preprocessing"}),
            "evaluate": evaluate.model_dump(mode="json"),
            "tuned": load_tuned_config(where.tuned_config).model_dump(mode="json"),
            "gate": registry.gate.model_dump(mode="json"),
        }
        inputs = RegisterInputs(
            bundle_dir=where.bundle,
            features_dir=where.features,
            train_reports=where.train_reports,
            evaluation_dir=where.evaluation,
            lock_file=lock,
            root=Path.cwd(),
            params=params,
            receipt=where.receipt,
            data_outputs=where.data_outputs,
            other_reports=[where.validation_reports / "summary.md", where.features_metrics],
        )
        outcome = register_candidate(settings, registry, evaluate, inputs)
        verdict = f"gate: {outcome.decision.verdict}" if outcome.decision else "already registered"
        console.print(
            f"{registry.model_name}: version {outcome.version} ({verdict}); "
            f"@champion is version {outcome.champion or '-'}"
        )


if __name__ == "__main__":
    app()
