"""DVC stage ``validate``: raw tables checked against the contract; broken rows excluded and reported."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markdown import Markdown

from flightdelay.cli import console, entry_point
from flightdelay.config import load_data_config
from flightdelay.data.validate import validate

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    config: Annotated[Path, typer.Option(help="Data configuration file.")] = Path("configs/data.yaml"),
    raw: Annotated[Path, typer.Option(help="Directory of the ingested tables.")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="Directory for the validated tables.")] = Path("data/validated"),
    reports: Annotated[Path, typer.Option(help="Directory for the validation reports.")] = Path("reports/validation"),
) -> None:
    """Validate the raw tables; write accepted rows, rejected rows and a summary."""
    with entry_point("validate"):
        report = validate(load_data_config(config), raw, out, reports)
        console.print(Markdown(report.to_markdown()))


if __name__ == "__main__":
    app()
