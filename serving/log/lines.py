"""The journal's lines: one JSON object a line, either a request's predictions or a list of outcomes.

The keys are spelled out. A journal written before they were (single letters: ``k``, ``r``, ``c``, ``e``, ``m``,
``v``, ``f``, ``p``, ``l``) is still read: a process that starts after an upgrade loads the journal its predecessor
left behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, Final, Literal, TypedDict, cast

import orjson
from pydantic import JsonValue

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


class FeedbackRecord(TypedDict):
    """One observed outcome of a logged prediction, as the feedback table holds it."""

    prediction_id: str
    actual: bool
    outcome: float | None
    received_at: dt.datetime


class BatchLine(TypedDict):
    """A journal line of a request's predictions, as parsed back (times as ISO 8601 text)."""

    kind: Literal["predictions"]
    request_id: str
    ids: list[str]
    created_at: str
    event_time: str | None
    route: str
    model_name: str
    model_version: str
    features: dict[str, list[JsonValue]]  # feature columns
    probability: list[float]
    label: list[bool]


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
    probability: list[float]
    label: list[bool]

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
                "probability": self.probability,
                "label": self.label,
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
            probability=item["probability"],
            label=item["label"],
        )

    def records(self, created_at: Any, event_time: Any) -> list[tuple[Any, ...]]:
        """One tuple per prediction in the column order of ``predictions``, features as JSON text."""
        names = list(self.features)
        head = (self.request_id, created_at, event_time, self.route, self.model_name, self.model_version)
        dumps = orjson.dumps
        return [
            (self.ids[i], *head, dumps(dict(zip(names, values, strict=True))).decode(), self.probability[i], label)
            for i, (values, label) in enumerate(zip(zip(*self.features.values(), strict=True), self.label, strict=True))
        ]


@dataclass(frozen=True)
class Logged:
    """A request already in the log: what was answered, and a digest of what was asked."""

    request_id: str
    ids: list[str]
    model_name: str
    model_version: str
    probability: list[float]
    label: list[bool]
    digest: str


def now() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.UTC)
