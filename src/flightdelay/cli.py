"""What every command-line entry point shares: logging, process defaults, and errors without tracebacks."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.logging import RichHandler

from flightdelay.errors import FlightDelayError
from flightdelay.settings import Settings, apply_process_defaults

QUIET_LOGGERS = ("httpx", "httpcore")
console = Console()
error_console = Console(stderr=True)


@contextmanager
def entry_point(name: str) -> Iterator[Settings]:
    """Set up the process for command ``name``; turn project errors into a message and exit code 1."""
    settings = Settings()
    apply_process_defaults(settings)
    logging.basicConfig(
        level=settings.log_level,
        format="%(message)s",
        handlers=[RichHandler(console=error_console, show_path=False, show_time=False)],
        force=True,
    )
    for chatty in QUIET_LOGGERS:  # a line per HTTP request would bury what the command says
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        yield settings
    except FlightDelayError as e:
        error_console.print(f"[bold red]{name} failed:[/] {e}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        error_console.print(f"[yellow]{name} interrupted[/]")
        sys.exit(130)
