"""``python -m tools.stack up|down|status``: the local production-like stack (PostgreSQL, SeaweedFS, MLflow)."""

from __future__ import annotations

import typer
from rich.table import Table

from tabloop.commands.boundary import console, entry_point
from tabloop.settings import from_environment


def say(line: str) -> None:
    """One line of progress, never wrapped or styled (it may hold paths and brackets)."""
    console.print(line, soft_wrap=True, markup=False, highlight=False)


app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Start, stop and report PostgreSQL, an S3 store (SeaweedFS) and an MLflow server on 127.0.0.1.",
)
NOT_ALL_ANSWER = 3


@app.command()
def up() -> None:
    """Start every part that is not running (data under TABLOOP_STACK_DIR, default .stack/) and write its env file."""
    from tools.stack.control import up as start_stack
    from tools.stack.settings import StackSettings

    with entry_point("stack up"):
        env_file = start_stack(from_environment(StackSettings), say)
        say(f"connection settings: {env_file} (`set -a; . {env_file}; set +a` to use them)")


@app.command()
def down() -> None:
    """Stop the parts this stack started (its PID files say which); data is kept."""
    from tools.stack.control import down as stop_stack
    from tools.stack.settings import StackSettings

    with entry_point("stack down"):
        stop_stack(from_environment(StackSettings), say)


@app.command()
def status() -> None:
    """Show each part's address and whether it answers; exit 0 when every part answers, 3 otherwise."""
    from tools.stack.control import status as stack_status
    from tools.stack.processes import Verdict
    from tools.stack.settings import StackSettings

    with entry_point("stack status"):
        settings = from_environment(StackSettings)
        states = stack_status(settings)
        table = Table(title=f"stack in {settings.paths().root}")
        table.add_column("part", no_wrap=True)
        table.add_column("address", no_wrap=True, min_width=max(len(state.address) for state in states))
        table.add_column("process")
        table.add_column("answers", no_wrap=True)
        for state in states:
            process = f"PID {state.pid}" if state.pid is not None else str(state.state)
            process = "not running" if state.state is Verdict.NONE else process
            table.add_row(state.name, state.address, process, "[green]yes[/]" if state.answers else "[red]no[/]")
        console.print(table)
        if settings.paths().env_file.is_file():
            say(f"connection settings: {settings.paths().env_file}")
    if not all(state.answers for state in states):
        raise typer.Exit(code=NOT_ALL_ANSWER)
