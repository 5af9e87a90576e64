"""DVC stage ``ingest``: source tables → ``data/raw/*.parquet`` with the contract's dtypes."""

from pathlib import Path
from typing import Annotated

import typer

from flightdelay.cli import entry_point
from flightdelay.config import load_data_config
from flightdelay.data.ingest import ingest

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    config: Annotated[Path, typer.Option(help="Data configuration file.")] = Path("configs/data.yaml"),
    out: Annotated[Path, typer.Option(help="Directory for the typed Parquet tables.")] = Path("data/raw"),
) -> None:
    """Read the source tables, type them by the contract and write them as Parquet."""
    with entry_point("ingest"):
        ingest(load_data_config(config), out)


if __name__ == "__main__":
    app()
