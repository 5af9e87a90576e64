"""DVC stage ``features``: joins, derived features, temporal split and preprocessing fitted on train."""

import typer

from tabloop.commands.boundary import DatasetOption, PathOption, entry_point
from tabloop.config import load_data_config
from tabloop.stages.features import run as build_features

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    dataset: DatasetOption = None,
    config: PathOption = None,
    validated: PathOption = None,
    out: PathOption = None,
    metrics: PathOption = None,
) -> None:
    """Build the train, validation and test feature tables and fit the preprocessing on train."""
    with entry_point("features") as settings:
        where = settings.layout(dataset)
        build_features(
            load_data_config(config or where.data_config),
            validated or where.validated,
            out or where.features,
            metrics or where.features_metrics,
        )


if __name__ == "__main__":
    app()
