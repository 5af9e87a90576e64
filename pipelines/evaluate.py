"""DVC stage ``evaluate``: the model against two baselines on the test split, with curves and a model card."""

import typer

from tabloop.commands.boundary import DatasetOption, PathOption, entry_point
from tabloop.config import load_data_config, load_evaluate_config, load_tuned_config
from tabloop.stages.evaluate import run as evaluate

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    dataset: DatasetOption = None,
    config: PathOption = None,
    data_config: PathOption = None,
    features: PathOption = None,
    bundle: PathOption = None,
    out: PathOption = None,
) -> None:
    """Score the model and the baselines on the test split; write metrics, curves and the model card."""
    with entry_point("evaluate") as settings:
        where = settings.layout(dataset)
        evaluate(
            load_data_config(data_config or where.data_config),
            load_evaluate_config(config or where.evaluate_config),
            features or where.features,
            bundle or where.bundle,
            out or where.evaluation,
            training_metrics=where.train_reports / "metrics.json",
            tuned_lightgbm=load_tuned_config(where.tuned_config).lightgbm,
        )


if __name__ == "__main__":
    app()
