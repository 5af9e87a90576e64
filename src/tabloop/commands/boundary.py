"""What every command-line entry point shares: logging, process defaults, and errors without tracebacks."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler

from tabloop.errors import ConfigError, TabloopError, redact
from tabloop.settings import Settings, apply_process_defaults, from_environment

QUIET_LOGGERS = ("httpx", "httpcore")
console = Console()
DatasetOption = Annotated[
    str | None, typer.Option(help="Dataset (configs/<name>/); default: TABLOOP_DATASET, else configs/datasets.yaml's.")
]
PathOption = Annotated[Path | None, typer.Option(help="Override of the dataset's default path.")]
error_console = Console(stderr=True)


@contextmanager
def entry_point(name: str) -> Iterator[Settings]:
    """Set up the process for command ``name``; turn project errors into a message and exit code 1."""
    try:
        settings = from_environment(Settings)
    except ConfigError as e:
        _fail(name, e)
    apply_process_defaults(settings)
    handler = RichHandler(console=error_console, show_path=False, show_time=False)
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=settings.log_level, format="%(message)s", handlers=[handler], force=True)
    for chatty in QUIET_LOGGERS:  # a line per HTTP request would bury what the command says
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        yield settings
    except TabloopError as e:
        _fail(name, e)
    except KeyboardInterrupt:
        error_console.print(f"[yellow]{name} interrupted[/]")
        sys.exit(130)


class RedactingFilter(logging.Filter):
    """Takes the credentials out of URLs in every record a handler writes, tracebacks included."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def _fail(name: str, error: TabloopError) -> NoReturn:
    """Say what went wrong, without a traceback, and exit with 1 (also outside a Typer command)."""
    error_console.print(
        f"[bold red]{name} failed:[/] {redact(str(error))}", markup=True, highlight=False, soft_wrap=True
    )
    raise SystemExit(1) from None
