"""The ``validate`` stage: raw tables checked against the contract; broken rows excluded and reported."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import polars as pl

from tabloop.config import DataConfig
from tabloop.data.validate import (
    REPORT_FILES,
    TableOutcome,
    ValidationReport,
    read_raw_table,
    referenced_columns,
    validate_table,
    validation_order,
)
from tabloop.errors import RejectionLimitError
from tabloop.io import staged, write_json, write_parquet

logger = logging.getLogger(__name__)


def run(config: DataConfig, raw_dir: Path, out_dir: Path, report_dir: Path) -> ValidationReport:
    """Validate every raw table; write accepted rows to ``out_dir`` and the reports to ``report_dir``.

    Raises ContractError on a structural problem and RejectionLimitError when a table loses more rows than
    allowed; in both cases the previous outputs are left as they were.
    """
    frames = {table: read_raw_table(raw_dir, table) for table in config.tables}
    needed = referenced_columns(config.tables)
    referenced: dict[tuple[str, str], set[str]] = {}
    outcomes: dict[str, TableOutcome] = {}
    for table in validation_order(config.tables):
        outcome = validate_table(
            frames[table], table, config.tables[table], referenced, config.validation.examples_per_rule
        )
        outcomes[table] = outcome
        for ref_table, ref_column in needed:
            if ref_table == table:
                values = outcome.accepted[ref_column].drop_nulls().cast(pl.String)
                referenced[(ref_table, ref_column)] = set(values.to_list())
    ordered = {table: outcomes[table] for table in config.tables}
    report = ValidationReport({t: o.report for t, o in ordered.items()}, config.validation.max_rejected_share)
    rejected = pl.concat([o.rejected for o in ordered.values()])

    failed_dir = report_dir / "failed"
    over = report.over_limit()
    if over:
        _write_reports(report, rejected, *(failed_dir / name for name in REPORT_FILES))
        details = "\n".join(
            f"  {t.table}: {t.rejected:,} of {t.rows:,} rows ({t.share:.2%}); "
            + ", ".join(f"{r.rule} ({r.rows:,})" for r in t.rules[:3])
            for t in over
        )
        raise RejectionLimitError(
            f"too many rows break the contract, above validation.max_rejected_share = "
            f"{report.max_rejected_share:.2%}:\n{details}\n"
            f"Rejected rows and the rules they broke: {failed_dir}/. The previous validated data was left in place."
        )

    with staged(out_dir, *(report_dir / name for name in REPORT_FILES)) as (data_dir, *report_paths):
        for table, outcome in ordered.items():
            write_parquet(outcome.accepted, data_dir / f"{table}.parquet")
        _write_reports(report, rejected, *report_paths)
    shutil.rmtree(failed_dir, ignore_errors=True)
    for t in report.tables.values():
        logger.info("validated %-8s %9d rows, %d rejected", t.table, t.rows, t.rejected)
    return report


def _write_reports(
    report: ValidationReport, rejected: pl.DataFrame, metrics_path: Path, summary_path: Path, rejected_path: Path
) -> None:
    write_json(report.to_metrics(), metrics_path)
    summary_path.write_text(report.to_markdown(), encoding="utf-8")
    rejected.write_csv(rejected_path)
