"""Raw tables checked against the contract (pandera): the rules, the rows that break them, the report's records.

The validate stage (:mod:`tabloop.stages.validate`) runs them table by table and writes the outputs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandera.errors
import pandera.polars as pa
import polars as pl

from tabloop.data.dtypes import polars_dtype
from tabloop.data.schemas import NOT_NULL, table_schema
from tabloop.errors import ConfigError, ContractError, SourceError
from tabloop.runtime.contract import TableSpec

REPORT_FILES = ("summary.json", "summary.md", "rejected.csv")
REJECTED_SCHEMA = pl.Schema({"table": pl.String(), "row": pl.Int64(), "rules": pl.String(), "record": pl.String()})


@dataclass(frozen=True)
class RuleCount:
    """How many rows broke one rule, with a few of them."""

    rule: str
    rows: int
    examples: list[tuple[int, str]]


@dataclass(frozen=True)
class TableReport:
    """The validation result of one table."""

    table: str
    rows: int
    rejected: int
    rules: list[RuleCount] = field(default_factory=list)

    @property
    def share(self) -> float:
        """Share of the table's rows that were rejected."""
        return self.rejected / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class ValidationReport:
    """The validation result of every table, against the configured rejection limit."""

    tables: dict[str, TableReport]
    max_rejected_share: float

    def over_limit(self) -> list[TableReport]:
        """Tables whose rejected share exceeds the limit."""
        return [t for t in self.tables.values() if t.share > self.max_rejected_share]

    def to_metrics(self) -> dict[str, object]:
        """A JSON-ready summary: counts per table and per rule (DVC metrics)."""
        return {
            "max_rejected_share": self.max_rejected_share,
            "tables": {
                name: {
                    "rows": t.rows,
                    "rejected": t.rejected,
                    "rejected_share": round(t.share, 6),
                    "rules": {r.rule: r.rows for r in t.rules},
                }
                for name, t in self.tables.items()
            },
        }

    def to_markdown(self) -> str:
        """A readable summary: one line per table, then each rule with a few example rows."""
        lines = [
            "# Validation summary",
            "",
            f"Rows breaking a rule are excluded. Limit: {self.max_rejected_share:.2%} of a table's rows.",
            "Rows are counted from 0 in source order, header excluded.",
            "",
            "| table | rows | rejected | share | status |",
            "|---|---:|---:|---:|---|",
        ]
        for t in self.tables.values():
            status = "over limit" if t.share > self.max_rejected_share else "ok"
            lines.append(f"| {t.table} | {t.rows:,} | {t.rejected:,} | {t.share:.3%} | {status} |")
        for t in self.tables.values():
            if not t.rules:
                continue
            lines += ["", f"## {t.table}", "", "| rule | rows | examples (row: value) |", "|---|---:|---|"]
            for r in t.rules:
                shown = "; ".join(f"{row}: {_cell(value)}" for row, value in r.examples)
                lines.append(f"| {_cell(r.rule)} | {r.rows:,} | {shown} |")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TableOutcome:
    """Accepted rows, rejected rows (with the rules each broke) and the report of one table."""

    accepted: pl.DataFrame
    rejected: pl.DataFrame
    report: TableReport


def read_raw_table(raw_dir: Path, table: str) -> pl.DataFrame:
    """The ingested table, or a SourceError that says to run ingest."""
    path = raw_dir / f"{table}.parquet"
    if not path.is_file():
        raise SourceError(f"{path}: not found; run the ingest stage first (dvc repro ingest)")
    return pl.read_parquet(path)


def referenced_columns(tables: Mapping[str, TableSpec]) -> set[tuple[str, str]]:
    """Every (table, column) that some column references."""
    return {
        (col.references.table, col.references.column)
        for spec in tables.values()
        for col in spec.columns.values()
        if col.references is not None
    }


def validation_order(tables: Mapping[str, TableSpec]) -> list[str]:
    """Table names ordered so that each table comes after the tables it references."""
    deps = {
        name: {c.references.table for c in spec.columns.values() if c.references is not None}
        for name, spec in tables.items()
    }
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ConfigError(f"tables: references form a cycle through {name!r}")
        visiting.add(name)
        for dep in sorted(deps[name]):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in tables:
        visit(name)
    return order


def check_structure(frame: pl.DataFrame, table: str, spec: TableSpec) -> None:
    """Raise a ContractError listing every missing column and every column of the wrong type."""
    problems = []
    for column, rules in spec.columns.items():
        if column not in frame.columns:
            problems.append(f"{table}: missing column {column!r}")
        elif frame.schema[column] != polars_dtype(rules.dtype):
            problems.append(
                f"{table}: column {column!r} has type {frame.schema[column]}, the contract says {rules.dtype}"
            )
    if problems:
        raise ContractError("\n".join(problems))


def validate_table(
    frame: pl.DataFrame,
    table: str,
    spec: TableSpec,
    referenced: Mapping[tuple[str, str], Collection[str]],
    examples_per_rule: int = 5,
) -> TableOutcome:
    """Split ``frame`` into rows that satisfy the contract and rows that do not, with the rules they broke."""
    check_structure(frame, table, spec)
    failures = _failures(frame, table, table_schema(table, spec, referenced))
    per_row = failures.group_by("row").agg(pl.col("rule").unique().sort().str.join("; ").alias("rules")).sort("row")
    bad_rows = per_row["row"]
    indexed = frame.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    accepted = indexed.filter(~pl.col("row").is_in(bad_rows.implode())).drop("row")
    records = indexed.filter(pl.col("row").is_in(bad_rows.implode())).select(
        "row", pl.struct(frame.columns).struct.json_encode().alias("record")
    )
    rejected = per_row.join(records, on="row", how="left").select(
        pl.lit(table).alias("table"), "row", "rules", "record"
    )
    rules = _rule_counts(failures, examples_per_rule)
    report = TableReport(table=table, rows=frame.height, rejected=rejected.height, rules=rules)
    return TableOutcome(accepted=accepted, rejected=rejected.cast(REJECTED_SCHEMA), report=report)


def _failures(frame: pl.DataFrame, table: str, schema: pa.DataFrameSchema) -> pl.DataFrame:
    """One row per (row, rule broken, value) that pandera found; a ContractError for failures of the table as a
    whole (those have no row)."""
    try:
        schema.validate(frame, lazy=True)
        columns = ("schema_context", "column", "check", "failure_case")
        failures = pl.DataFrame(schema={**dict.fromkeys(columns, pl.String()), "index": pl.Int64()})
    except pandera.errors.SchemaErrors as e:
        failures = e.failure_cases
    structural = failures.filter(pl.col("index").is_null())
    if structural.height:
        lines = [
            f"{table}: {row['column'] or ''} {row['check']}: {row['failure_case']}"
            for row in structural.rows(named=True)
        ]
        raise ContractError("\n".join(lines))
    return failures.select(
        pl.col("index").cast(pl.Int64).alias("row"),
        pl.when(pl.col("schema_context") == "DataFrameSchema")
        .then(pl.col("check"))
        .otherwise(pl.col("column") + ": " + pl.col("check").replace("not_nullable", NOT_NULL))
        .alias("rule"),
        pl.col("failure_case").cast(pl.String).fill_null("null").alias("value"),
    ).unique(maintain_order=True)


def _rule_counts(failures: pl.DataFrame, examples_per_rule: int) -> list[RuleCount]:
    """How many rows broke each rule, with the first examples, the most broken rule first."""
    return [
        RuleCount(
            rule=row["rule"],
            rows=row["rows"],
            examples=list(zip(row["example_rows"], row["example_values"], strict=True)),
        )
        for row in failures.sort("row")
        .group_by("rule", maintain_order=True)
        .agg(
            pl.len().alias("rows"),
            pl.col("row").head(examples_per_rule).alias("example_rows"),
            pl.col("value").head(examples_per_rule).alias("example_values"),
        )
        .sort(["rows", "rule"], descending=[True, False])
        .rows(named=True)
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
