"""The ``ingest`` stage: source tables → ``data/raw/<table>.parquet`` with the contract's explicit dtypes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tabloop.config import DataConfig
from tabloop.data.casting import cast_to_contract
from tabloop.data.sources import describe_source, file_digest, locate_tables
from tabloop.errors import ContractError
from tabloop.io import staged, write_json, write_parquet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What the ingest stage wrote: rows per table."""

    rows: dict[str, int]


def run(config: DataConfig, out_dir: Path) -> IngestResult:
    """Read every declared table, type it by the contract and write it as Parquet with a manifest."""
    files = locate_tables(config.source, list(config.tables))
    frames: dict[str, pl.DataFrame] = {}
    problems: list[str] = []
    for table, located in files.items():
        raw = located.read()
        try:
            frames[table] = cast_to_contract(raw, config.tables[table], located.path.name)
        except ContractError as e:
            problems.append(str(e))
    if problems:
        raise ContractError("\n".join(problems))

    manifest = {
        "source": describe_source(config.source),
        "tables": {
            table: {
                "file": files[table].path.name,
                "sha256": file_digest(files[table].path),
                "rows": frame.height,
                "columns": {name: spec.dtype for name, spec in config.tables[table].columns.items()},
            }
            for table, frame in frames.items()
        },
    }
    with staged(out_dir) as (staging,):
        for table, frame in frames.items():
            write_parquet(frame, staging / f"{table}.parquet")
        write_json(manifest, staging / "manifest.json")
    for table, frame in frames.items():
        logger.info("ingested %-8s %9d rows from %s", table, frame.height, files[table].path.name)
    return IngestResult(rows={table: frame.height for table, frame in frames.items()})
