"""The journal's lines: one JSON object a line, either a request's predictions or a list of outcomes.

The keys are spelled out. A journal written before they were (single letters: ``k``, ``r``, ``c``, ``e``, ``m``,
``v``, ``f``, ``p``, ``l``) is still read: a process that starts after an upgrade loads the journal its predecessor
left behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, Final, Literal, Required, TypedDict, cast

import orjson
from pydantic import JsonValue

from tabloop.runtime.task import AnswerLists

PREDICTIONS: Final = "predictions"  # the kinds of line
OUTCOMES: Final = "outcomes"
LEGACY_KEYS = {
    "k": "kind",
    "r": "request_id",
    "c": "created_at",
    "e": "event_time",
    "m": "model_name",
    "v": "model_version",
    "f": "features",
    "p": "probability",
    "l": "label",
}
LEGACY_KINDS = {"p": PREDICTIONS, "f": OUTCOMES}
ANSWER_KEYS = ("probability", "label", "predicted_class", "probabilities", "value")


class FeedbackRecord(TypedDict):
    """One observed outcome of a logged prediction, as the feedback table holds it: the class observed (binary:
    ``actual``; multiclass: ``actual_class``) or the number (regression: ``outcome``), and for a binary target
    the number it was derived from, if any (``outcome``)."""

    prediction_id: str
    actual: bool | None
    actual_class: str | None
    outcome: float | None
    received_at: dt.datetime


class BatchLine(AnswerLists, total=False):
    """A journal line of a request's predictions, as parsed back (times as ISO 8601 text); the answers' keys are
    the task's (:class:`AnswerLists`)."""

    kind: Required[Literal["predictions"]]
    request_id: Required[str]
    ids: Required[list[str]]
    created_at: Required[str]
    event_time: Required[str | None]
    route: Required[str]
    model_name: Required[str]
    model_version: Required[str]
    features: Required[dict[str, list[JsonValue]]]  # feature columns


class OutcomesLine(TypedDict):
    """A journal line of outcomes, as parsed back (``received_at`` as ISO 8601 text)."""

    kind: Literal["outcomes"]
    rows: list[dict[str, Any]]


def parse_line(raw: bytes) -> BatchLine | OutcomesLine:
    """The line's record, whichever keys it was written with; raises ``orjson.JSONDecodeError`` if not JSON."""
    item = orjson.loads(raw)
    if "k" in item:  # written before the keys were spelled out
        item = {LEGACY_KEYS.get(key, key): value for key, value in item.items()}
        item["kind"] = LEGACY_KINDS[item["kind"]]
    return cast("BatchLine | OutcomesLine", item)


def outcomes_line(rows: list[FeedbackRecord]) -> bytes:
    """Outcomes as one journal line."""
    return orjson.dumps({"kind": OUTCOMES, "rows": rows}, option=orjson.OPT_APPEND_NEWLINE)


def features_digest(columns: dict[str, list[Any]]) -> str:
    """A short hash of a request's feature values, to tell a retried request from a different one."""
    return hashlib.blake2b(orjson.dumps(columns), digest_size=16).hexdigest()


@dataclass(frozen=True)
class PredictionBatch:
    """The predictions of one request, as the request produced them (columns)."""

    request_id: str
    ids: list[str]
    created_at: dt.datetime
    event_time: dt.datetime | None  # None: the same as created_at
    route: str
    model_name: str
    model_version: str
    features: dict[str, list[Any]]
    answers: AnswerLists

    def line(self) -> bytes:
        """The batch as one journal line."""
        return orjson.dumps(
            {
                "kind": PREDICTIONS,
                "request_id": self.request_id,
                "ids": self.ids,
                "created_at": self.created_at,
                "event_time": self.event_time,
                "route": self.route,
                "model_name": self.model_name,
                "model_version": self.model_version,
                "features": self.features,
                **self.answers,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )

    @classmethod
    def from_line(cls, item: BatchLine) -> PredictionBatch:
        """The batch of a parsed journal line."""
        return cls(
            request_id=item["request_id"],
            ids=item["ids"],
            created_at=dt.datetime.fromisoformat(item["created_at"]),
            event_time=dt.datetime.fromisoformat(item["event_time"]) if item["event_time"] else None,
            route=item["route"],
            model_name=item["model_name"],
            model_version=item["model_version"],
            features=item["features"],
            answers=cast("AnswerLists", {key: item[key] for key in ANSWER_KEYS if key in item}),  # type: ignore[literal-required]
        )

    def records(self, created_at: Any, event_time: Any) -> list[tuple[Any, ...]]:
        """One tuple per prediction in the column order of ``predictions``, features (and a multiclass answer's
        probabilities) as JSON text."""
        names = list(self.features)
        head = (self.request_id, created_at, event_time, self.route, self.model_name, self.model_version)
        dumps = orjson.dumps
        answers = self.answers
        none: list[Any] = [None] * len(self.ids)
        probabilities = answers.get("probabilities")
        tails = zip(
            answers.get("probability", none),
            answers.get("label", none),
            answers.get("value", none),
            answers.get("predicted_class", none),
            none if probabilities is None else [dumps(p).decode() for p in probabilities],
            strict=True,
        )
        return [
            (self.ids[i], *head, dumps(dict(zip(names, values, strict=True))).decode(), *tail)
            for i, (values, tail) in enumerate(zip(zip(*self.features.values(), strict=True), tails, strict=True))
        ]


@dataclass(frozen=True)
class Logged:
    """A request already in the log: what was answered, and a digest of what was asked."""

    request_id: str
    ids: list[str]
    model_name: str
    model_version: str
    answers: AnswerLists
    digest: str


def now() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.UTC)
