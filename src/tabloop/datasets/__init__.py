"""Dataset adapters: how a dataset's validated tables become one row per example.

An adapter is a module with a ``build`` function (see :class:`Adapter`), named by ``adapter:`` in the dataset's
``data.yaml``: a module of this package (``churn`` is ``tabloop.datasets.churn``) or any importable dotted path.
It joins tables and derives features; everything else (the label, the split, the contract check, preprocessing)
stays in the core. A single-table dataset needs none: without ``adapter:``, the entity table is used as it is.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, cast

import polars as pl
from pydantic import JsonValue

from tabloop.config import DataConfig
from tabloop.errors import ConfigError

PACKAGE = __name__


@dataclass(frozen=True)
class Built:
    """An adapter's result: one row per example, and what it wants reported in the features stage's metrics."""

    frame: pl.DataFrame
    metrics: dict[str, JsonValue] = field(default_factory=dict)  # free-form: the adapter's own numbers


class Adapter(Protocol):
    """The one function an adapter module defines."""

    def build(self, tables: Mapping[str, pl.DataFrame], config: DataConfig) -> Built:
        """One row per example with the columns the configuration names: ``entity.id``, ``entity.time`` and
        ``entity.outcome_time`` (those set), ``label.column``, the split's group column (for a group split) and
        every feature of the contract; no other column."""
        ...


class SingleTable:
    """The adapter of a single-table dataset: the entity table as it is."""

    def build(self, tables: Mapping[str, pl.DataFrame], config: DataConfig) -> Built:
        return Built(tables[config.entity.table])


def load_adapter(name: str | None) -> Adapter:
    """The adapter module ``name`` (None: :class:`SingleTable`); a ConfigError if it cannot be imported."""
    if name is None:
        return SingleTable()
    module_name = name if "." in name else f"{PACKAGE}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and module_name.startswith(e.name):
            raise ConfigError(
                f"adapter: no module {module_name} (write src/tabloop/datasets/{name}.py, or remove adapter: "
                "for a single table)"
            ) from e
        raise
    if not callable(getattr(module, "build", None)):
        raise ConfigError(f"adapter: {module_name} has no build(tables, config) function")
    return cast(Adapter, module)
