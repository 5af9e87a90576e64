"""DVC stage ``features``: joins, derived features, temporal split and preprocessing fitted on train."""

from pathlib import Path
from typing import Annotated

import typer

from flightdelay.cli import entry_point
from flightdelay.config import load_data_config
from flightdelay.features.build import build_features

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    config: Annotated[Path, typer.Option(help="Data configuration file.")] = Path("configs/data.yaml"),
    validated: Annotated[Path, typer.Option(help="Directory of the validated tables.")] = Path("data/validated"),
    out: Annotated[Path, typer.Option(help="Directory for the feature tables and preprocessing.")] = Path(
        "data/features"
    ),
    metrics: Annotated[Path, typer.Option(help="Metrics file of the stage.")] = Path("reports/features.json"),
) -> None:
    """Build the train, validation and test feature tables and fit the preprocessing on train."""
    with entry_point("features"):
        build_features(load_data_config(config), validated, out, metrics)


if __name__ == "__main__":
    app()
