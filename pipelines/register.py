"""DVC stage ``register``: log the run and the model to MLflow, register a version, run the promotion gate."""

from pathlib import Path
from typing import Annotated

import typer

from flightdelay.cli import console, entry_point
from flightdelay.config import load_data_config, load_evaluate_config, load_registry_config, load_train_config
from flightdelay.register import RegisterInputs, register_candidate

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    config: Annotated[Path, typer.Option(help="Registry configuration file.")] = Path("configs/registry.yaml"),
    train_config: Annotated[Path, typer.Option(help="Training configuration file.")] = Path("configs/train.yaml"),
    evaluate_config: Annotated[Path, typer.Option(help="Evaluation configuration file.")] = Path(
        "configs/evaluate.yaml"
    ),
    data_config: Annotated[Path, typer.Option(help="Data configuration file.")] = Path("configs/data.yaml"),
    bundle: Annotated[Path, typer.Option(help="Directory of the model bundle.")] = Path("models/bundle"),
    features: Annotated[Path, typer.Option(help="Directory of the feature tables.")] = Path("data/features"),
    train_reports: Annotated[Path, typer.Option(help="Directory of the training reports.")] = Path("reports/train"),
    evaluation: Annotated[Path, typer.Option(help="Directory of the evaluation reports.")] = Path("reports/evaluation"),
    lock: Annotated[Path, typer.Option(help="DVC lock file (hashes of the data).")] = Path("dvc.lock"),
    receipt: Annotated[Path, typer.Option(help="Where to note which bundle the registry holds.")] = Path(
        "reports/registry.json"
    ),
) -> None:
    """Register the trained model as @challenger; promote it to @champion if it passes the gate."""
    with entry_point("register") as settings:
        registry = load_registry_config(config)
        evaluate = load_evaluate_config(evaluate_config)
        data = load_data_config(data_config)
        params = {
            "train": load_train_config(train_config).model_dump(mode="json"),
            "data": data.model_dump(mode="json", include={"label", "split", "preprocessing"}),
            "evaluate": evaluate.model_dump(mode="json"),
            "gate": registry.gate.model_dump(mode="json"),
        }
        inputs = RegisterInputs(
            bundle_dir=bundle,
            features_dir=features,
            train_reports=train_reports,
            evaluation_dir=evaluation,
            lock_file=lock,
            root=Path.cwd(),
            params=params,
            receipt=receipt,
            other_reports=[Path("reports/validation/summary.md"), Path("reports/features.json")],
        )
        outcome = register_candidate(settings, registry, evaluate, inputs)
        verdict = f"gate: {outcome.decision.verdict}" if outcome.decision else "already registered"
        console.print(
            f"{registry.model_name}: version {outcome.version} ({verdict}); "
            f"@champion is version {outcome.champion or '-'}"
        )


if __name__ == "__main__":
    app()
