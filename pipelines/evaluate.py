"""DVC stage ``evaluate``: the model against two baselines on the test months, with curves and a model card."""

from pathlib import Path
from typing import Annotated

import typer

from flightdelay.cli import entry_point
from flightdelay.config import load_data_config, load_evaluate_config
from flightdelay.evaluation.stage import evaluate

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    config: Annotated[Path, typer.Option(help="Evaluation configuration file.")] = Path("configs/evaluate.yaml"),
    data_config: Annotated[Path, typer.Option(help="Data configuration file.")] = Path("configs/data.yaml"),
    features: Annotated[Path, typer.Option(help="Directory of the feature tables.")] = Path("data/features"),
    bundle: Annotated[Path, typer.Option(help="Directory of the model bundle.")] = Path("models/bundle"),
    training: Annotated[Path, typer.Option(help="Metrics of the train stage.")] = Path("reports/train/metrics.json"),
    out: Annotated[Path, typer.Option(help="Directory for metrics, plots and the model card.")] = Path(
        "reports/evaluation"
    ),
) -> None:
    """Score the model and the baselines on the test split; write metrics, curves and the model card."""
    with entry_point("evaluate"):
        evaluate(
            load_data_config(data_config),
            load_evaluate_config(config),
            features,
            bundle,
            out,
            training_metrics=training,
        )


if __name__ == "__main__":
    app()
