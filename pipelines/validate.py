"""DVC stage ``validate``: raw tables checked against the contract; broken rows excluded and reported."""

import typer
from rich.markdown import Markdown

from tabloop.commands.boundary import DatasetOption, PathOption, console, entry_point
from tabloop.config import load_data_config
from tabloop.stages.validate import run as validate

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    dataset: DatasetOption = None,
    config: PathOption = None,
    raw: PathOption = None,
    out: PathOption = None,
    reports: PathOption = None,
) -> None:
    """Validate the raw tables; write accepted rows, rejected rows and a summary."""
    with entry_point("validate") as settings:
        where = settings.layout(dataset)
        report = validate(
            load_data_config(config or where.data_config),
            raw or where.raw,
            out or where.validated,
            reports or where.validation_reports,
        )
        console.print(Markdown(report.to_markdown()))


if __name__ == "__main__":
    app()
