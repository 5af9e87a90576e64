"""What every benchmark's table shares: its columns and the marks of the met column."""

from __future__ import annotations

from rich.table import Table


def table(title: str, columns: tuple[str, ...]) -> Table:
    """An empty table titled ``title`` with ``columns``."""
    made = Table(title=title)
    for column in columns:
        made.add_column(column)
    return made


def yes(ok: bool) -> str:
    """The met column's mark for ``ok``."""
    return "[green]yes[/]" if ok else "[red]no[/]"
