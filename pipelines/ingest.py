"""DVC stage ``ingest``: source tables → ``data/raw/*.parquet`` with the contract's dtypes."""

import typer

from tabloop.commands.boundary import DatasetOption, PathOption, entry_point
from tabloop.config import load_data_config
from tabloop.stages.ingest import run as ingest

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    dataset: DatasetOption = None,
    config: PathOption = None,
    out: PathOption = None,
) -> None:
    """Read the source tables, type them by the contract and write them as Parquet."""
    with entry_point("ingest") as settings:
        where = settings.layout(dataset)
        ingest(load_data_config(config or where.data_config), out or where.raw)


if __name__ == "__main__":
    app()
