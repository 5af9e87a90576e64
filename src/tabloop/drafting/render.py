"""Rendering a draft's ``data.yaml`` from the profile (the other files: ``tabloop.drafting.templated``)."""

from __future__ import annotations

import datetime as dt
import json
import keyword
import re
from dataclasses import dataclass
from typing import Any

import polars as pl

from tabloop.config import (
    PreprocessingConfig,
    ValidationConfig,
)
from tabloop.drafting.profile import NULL_VALUES, Column, DraftedTimeSplit
from tabloop.drafting.request import DraftRequest
from tabloop.drafting.target import TargetDraft
from tabloop.drafting.yaml_text import q, yaml_value
from tabloop.runtime.contract import entity_words


def data_yaml(
    request: DraftRequest,
    *,
    source: dict[str, Any],
    table: str,
    frame: pl.DataFrame,
    columns: list[Column],
    target: TargetDraft,
    split: DraftedTimeSplit | None,
) -> str:
    """The drafted ``data.yaml``, with a comment on everything that was inferred."""
    draft = _Draft(request, source, table, frame, columns, target, split)
    sections = (_header, _source_and_entity, _label_split_validation, _table, _contract, _preprocessing_and_card)
    return "\n".join(line for section in sections for line in section(draft))


@dataclass(frozen=True)
class _Draft:
    """What the sections of a drafted ``data.yaml`` are written from."""

    request: DraftRequest
    source: dict[str, Any]
    table: str
    frame: pl.DataFrame
    columns: list[Column]
    target: TargetDraft
    split: DraftedTimeSplit | None  # None: a shuffle (stratified for classes)

    @property
    def positive(self) -> Any:
        return self.target.positive

    def predicts(self, *, probability: bool = False) -> str:
        """What the model predicts, in a sentence's words."""
        column = self.request.target
        if self.target.task == "binary":
            return f"that {column} is {self.positive}" if probability else f"whether {column} is {self.positive}"
        if self.target.task == "multiclass":
            return f"which {column} a row has, of {len(self.target.classes or [])} classes"
        return column


def _header(d: _Draft) -> list[str]:
    return [
        f"# Drafted by `make init` from {d.request.data} ({d.frame.height:,} rows, {len(d.frame.columns)} columns) on "
        f"{dt.date.today()}.",
        "# Everything below was inferred from the data: review it before you train. Rules hold what is possible, not",
        "# what was seen: numbers never below zero get min: 0 (a share within 0 to 1, max: 1 too); add the bounds you",
        "# know. Categories are open: a value never seen is predicted as a rare one and counted by monitoring; list",
        "# values: [...] to refuse the others. The comments give the observed ranges and values.",
        "# Typed on load: an unknown key or an impossible value stops the run and names the key.",
        "",
        "# One table needs no code. For joins or derived features, write src/tabloop/datasets/<name>.py, name it here.",
        "adapter: null",
        "",
    ]


def _markers(d: _Draft) -> str:
    """A comment on the markers of a missing value the draft found, and where."""
    markers = d.source.get("markers") or {}
    shown = "; ".join(f"{', '.join(found)} in {name}" for name, found in markers.items())
    return f"     # missing values, as written in columns of numbers: {shown}" if shown else ""


def _source_and_entity(d: _Draft) -> list[str]:
    request = d.request
    lines = [
        "source:",
        *(f"  {key}: {q(value)}" for key, value in d.source.items() if key in ("dir", "rdataset")),
        f"  null_values: {json.dumps(d.source.get('null_values', NULL_VALUES), ensure_ascii=False)}{_markers(d)}",
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
    validation = ValidationConfig()
    return [
        "label:",
        f"  column: {q(d.request.target)}",
        f"  task: {d.target.task}{' ' * (24 - len(d.target.task))}# {d.target.reason}; TASK= chooses another",
        *_task_lines(d),
        "  unlabelled: drop",
        "",
        "split:",
        *split_lines(d.split, d.target.task),
        "",
        "validation:",
        f"  max_rejected_share: {yaml_value(validation.max_rejected_share)}     # above it the validate stage fails "
        "and keeps its previous outputs",
        f"  examples_per_rule: {yaml_value(validation.examples_per_rule)}",
        "",
    ]


def _unique_columns(d: _Draft) -> str:
    """What to say of the key when ID= was not given: the columns unique in every row, if any."""
    unique = [
        name
        for name in d.frame.columns
        if d.frame[name].null_count() == 0 and d.frame[name].n_unique() == d.frame.height
    ]
    if not unique:
        return "no column is unique per row"
    return f"unique in every row: {', '.join(unique[:3])}; [{q(unique[0])}] makes the validate stage refuse repeats"


def _task_lines(d: _Draft) -> list[str]:
    """What the task needs: the positive class, the classes in order, or the regression's transform."""
    column = d.frame[d.request.target]
    if d.target.task == "multiclass":
        counts = dict(column.value_counts().rows())
        shares = ", ".join(f"{c} {counts[c] / d.frame.height:.1%}" for c in d.target.classes or [])
        classes = ", ".join(q(c) if isinstance(c, str) else str(c) for c in d.target.classes or [])
        return [f"  classes: [{classes}]     # in this order (output i is class i); shares: {shares}"]
    if d.target.task == "regression":
        return [f"  transform: {d.target.transform}{' ' * (17 - len(d.target.transform))}# {d.target.transform_reason}"]
    share = column.value_counts().filter(pl.col(d.request.target) == d.positive)["count"].sum() / d.frame.height
    chosen = "as given (POSITIVE)" if d.request.positive is not None else "the minority class"
    return [f"  positive: [{q(d.positive)}]     # {chosen}: {share:.1%} of the rows; the others are negative"]


def _table(d: _Draft) -> list[str]:
    lines = [
        "tables:",
        f"  {d.table}:",
        f"    key: [{q(d.request.id)}]" if d.request.id else f"    key: []                     # {_unique_columns(d)}",
        "    columns:",
    ]
    for column in d.columns:
        if column.role in ("empty",):
            lines.append(f"      # {column.name}: left out, empty in every row")
            continue
        lines.append(f"      {q(column.name)}: {{{table_rules(column)}}}{comment(column)}")
    return [*lines, ""]


def _contract(d: _Draft) -> list[str]:
    request, binary = d.request, d.target.task == "binary"
    described = f"{request.target} is {d.positive}." if binary else f"{request.target}."
    entity = entity_name(request.name)
    lines = [
        "# The model's inputs. A feature must be a column of the table (or one the adapter derives).",
        "contract:",
        f"  entity: {entity:<24} # one row in the API's words: one {entity_words(entity)}, a list of "
        f"{entity_words(entity, many=True)}",
        f"  title: {q(request.name.replace('_', ' ').capitalize() + ' predictions')}",
        f"  description: {q(f'Predicts {d.predicts()}.')}",
        "  target:",
        f"    name: {target_name(request.target, d.positive if binary else None)}",
        f"    description: {q(described)}",
        "  features:",
    ]
    for column in d.columns:
        if column.role == "feature":
            lines.append(f"    {q(column.name)}: {{{feature_rules(column)}}}")
        elif column.role in LEFT_OUT:
            lines.append(f"    # {column.name}: left out, {LEFT_OUT[column.role]}")
    return [*lines, ""]


LEFT_OUT = {  # why a column of the table is not a feature
    "identifier": "identifies rows",
    "constant": "one value in every row",
    "datetime": "a date or time (derive features in an adapter)",
    "reserved": "its name is one the API or the prediction log uses",
}


def _preprocessing_and_card(d: _Draft) -> list[str]:
    encoding = PreprocessingConfig()
    request, binary = d.request, d.target.task == "binary"
    kind = {"binary": "classifier", "multiclass": "classifier", "regression": "regression"}[d.target.task]
    summary = (
        f"Predicts the probability that {request.target} is {d.positive}." if binary else f"Predicts {d.predicts()}."
    )
    return [
        "preprocessing:",
        f"  min_category_count: {yaml_value(encoding.min_category_count)}       # rarer categories share the "
        "out-of-vocabulary bucket",
        "  transforms: {}               # e.g. {income: log1p} for a skewed positive number",
        "  crosses: []",
        f"  clip: {yaml_value(encoding.clip)}",
        "",
        "card:",
        f"  title: {q(request.name.replace('_', ' ').capitalize() + ' ' + kind)}",
        f"  summary: {q(summary)}",
        "  examples: rows",
        *([f"  positive: {q(str(d.positive))}"] if binary else []),
        '  intended_use: ""             # who uses the predictions, for what, and who makes the final call',
        "  limitations: []",
        "",
    ]


def split_lines(split: DraftedTimeSplit | None, task: str = "binary") -> list[str]:
    if split is None and task == "regression":
        return [
            "  kind: random                 # no time column: a seeded shuffle",
            "  fractions: {train: 0.7, valid: 0.15, test: 0.15}",
            "  seed: 0",
        ]
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
        rules += possible_range(column)
    if column.role == "target" and column.values is not None and column.dtype == "string":
        rules.append(f"values: [{', '.join(q(v) for v in column.values)}]")
    return ", ".join(rules)


def feature_rules(column: Column) -> str:
    """A feature's rules in the contract: what is possible, never merely what was observed. Numbers keep the
    bounds their observed range implies is a rule (none below zero; a share within 0 to 1) and categories stay open:
    the service predicts a request outside the training data and monitoring counts it."""
    dtype = "float32" if column.kind == "numeric" and column.dtype == "float64" else column.dtype
    rules = [f"kind: {column.kind}", f"dtype: {dtype}"]
    if column.nullable:
        rules.append("nullable: true")
    if column.kind == "numeric":
        rules += possible_range(column)
    return ", ".join(rules)


def possible_range(column: Column) -> list[str]:
    """``min: 0`` for a number never negative, and ``max: 1`` too for a fraction that stays within 0 to 1."""
    if column.low is None or column.high is None or column.low < 0:
        return []
    if column.dtype == "float64" and column.high <= 1:
        return ["min: 0", "max: 1"]
    return ["min: 0"]


def comment(column: Column) -> str:
    notes = [*column.notes]
    if column.role in ("target", "id", "time"):
        notes.insert(0, f"the {column.role}")
    if column.role == "identifier":
        notes.insert(0, "unique in almost every row: not a feature")
    if column.role == "reserved":
        notes.insert(0, "a name the API or the prediction log uses: not a feature")
    return f"  # {'; '.join(notes)}" if notes else ""


def entity_name(name: str) -> str:
    """The API's word for one row, from the dataset's name: ``loans`` as ``Loan``, ``credit_cards`` as
    ``CreditCard`` (a dataset is usually named for its rows, in the plural)."""
    parts = [part for part in name.split("_") if part]
    if parts:
        parts[-1] = singular(parts[-1])
    return "".join(part.capitalize() for part in parts) or "Row"


def singular(word: str) -> str:
    """English's regular singular of ``word``: companies -> company, boxes -> box, loans -> loan; a word that does
    not look plural (status, analysis, credit) as it is."""
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if re.search(r"(ch|sh|ss|x|z)es$", word):
        return word[:-2]
    if len(word) > 2 and word.endswith("s") and not re.search(r"(ss|us|is)$", word):
        return word[:-1]
    return word


SIGN_WORDS = {"<=": "le", ">=": "ge", "<": "lt", ">": "gt", "+": "plus", "%": "pct"}  # in this order


def target_name(column: str, positive: Any) -> str:
    """A name for the target that the API can use (a Python identifier, not a keyword, not id, probability, label or
    outcome):
    the column and the positive class (binary), or the column alone."""
    named = column if positive is None else f"{column}_{positive}"
    for sign, word in SIGN_WORDS.items():  # ">50K" and "<=50K" stay apart: gt_50k, le_50k
        named = named.replace(sign, f"_{word}_")
    words = re.sub(r"_+", "_", "".join(c if c.isalnum() else "_" for c in named.lower())).strip("_")
    name = words if words and not words[0].isdigit() else f"is_{words}"
    taken = name in ("id", "probability", "outcome", "label") or keyword.iskeyword(name)  # the API's, or Python's
    return f"{name}_label" if taken else name
