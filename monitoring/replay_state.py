"""Where a replay stands: the state it saves after each step (so that it resumes), the outcomes it owes, its summary."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, TypedDict

from monitoring.traffic import ReplayError, Traffic

MAX_REJECTED_KEPT = 50


class Rejection(TypedDict):
    """A row the service refused, as the replay state keeps the first few."""

    id: str  # the example's
    status: int
    error: str


class PendingOutcome(NamedTuple):
    """An answered row's observed outcome, to send once it is due (ordered by when: the replayer keeps a heap)."""

    due: float  # a UNIX time
    prediction_id: str
    actual: bool | str | float  # the observed class (a multiclass target's name) or number
    value: float | None  # the number a binary target was derived from, where the dataset has one


@dataclass
class ReplayState:
    """Where a replay is: saved as JSON after every step, so that it can resume."""

    run: str
    source: str
    rows: int
    next: int = 0  # rows[:next] have been answered (or rejected)
    virtual_time: str | None = None
    answered: int = 0
    rejected: int = 0
    feedback_sent: int = 0
    pending: list[PendingOutcome] = field(default_factory=list)  # outcomes of answered rows not yet sent
    rejected_examples: list[Rejection] = field(default_factory=list)

    @classmethod
    def start(cls, traffic: Traffic) -> ReplayState:
        return cls(run=uuid.uuid4().hex[:8], source=traffic.source, rows=len(traffic))

    @classmethod
    def load(cls, path: Path, traffic: Traffic) -> ReplayState:
        """The saved state at ``path``, or a fresh one if there is none."""
        if not path.is_file():
            return cls.start(traffic)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            state = cls(**data)
        except (json.JSONDecodeError, TypeError) as e:
            raise ReplayError(f"{path}: not a replay state ({e}); delete it or pass --restart") from e
        state.pending = [PendingOutcome(*p) for p in state.pending]
        if (state.source, state.rows) != (traffic.source, len(traffic)):
            raise ReplayError(
                f"{path} belongs to a replay of {state.rows:,} rows from {state.source}, not of "
                f"{len(traffic):,} from {traffic.source}; pass --restart to start over"
            )
        return state

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves the previous state, never half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self)), encoding="utf-8")
        temporary.replace(path)

    @property
    def done(self) -> bool:
        return self.next >= self.rows and not self.pending


@dataclass(frozen=True)
class ReplaySummary:
    """What one invocation of the replay did."""

    sent: int
    answered: int
    rejected: int
    feedback: int
    seconds: float
    finished: bool
    stopped_by: str
    state: ReplayState

    def describe(self, state_path: Path) -> list[str]:
        """What the replay did and where it is, line by line; how to resume it (from ``state_path``) if it
        stopped early."""
        state = self.state
        lines = [
            f"replay {state.run}: {self.sent:,} rows sent in {self.seconds:.1f} s "
            f"({self.sent / max(self.seconds, 1e-9):,.0f} req/s), {self.rejected:,} rejected, "
            f"{self.feedback:,} outcomes sent; in all {state.next:,} of {state.rows:,} rows, "
            f"{state.feedback_sent:,} outcomes; virtual time {state.virtual_time}"
        ]
        if state.rejected_examples and self.rejected:
            lines.append(f"rejected, e.g.: {state.rejected_examples[-1]}")
        if not self.finished:
            lines.append(f"stopped by {self.stopped_by}; run it again to resume ({state_path})")
        return lines
