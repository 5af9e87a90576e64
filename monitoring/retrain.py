"""``make retrain``: the same DVC pipeline on a window moved forward to the outcomes that have arrived.

The prediction log says how far the outcomes reach: the newest local day on which (nearly) every prediction has its
outcome. The split moves so that the newest ``evaluation_days`` of labelled days become the held-out set, the
``validation_days`` before them the validation set, and everything earlier joins training (without a time split:
the replayed rows whose outcomes have arrived, the newest held out). The moved split goes to ``retrained.yaml``
beside ``data.yaml`` (which no tool rewrites) and the pipeline runs as a DVC experiment: features, training,
evaluation and the register stage, whose promotion gate compares the challenger with the champion on the new
held-out data. A promoted challenger is announced to the running service, which loads it; a rejected one leaves
``configs/``, ``dvc.lock`` and the outputs at the champion's, the experiment in ``dvc exp show`` and its version in
the registry.

Labels come from the source tables the pipeline ingests; the log only decides how far the window may move, so no
day is trained on before its outcomes were observed in production.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import polars as pl

from monitoring.log_reader import read_log
from monitoring.traffic import SNAPSHOT_NAME
from tabloop.config import (
    Arrived,
    DataConfig,
    GroupSplit,
    Period,
    RandomSplit,
    RegistryConfig,
    TimeSplit,
    load_data_config,
    load_registry_config,
    retrained_yaml,
)
from tabloop.config.monitor import MonitorConfig, RetrainConfig
from tabloop.errors import TabloopError
from tabloop.io import read_json
from tabloop.layout import Layout
from tabloop.records import ID, FeatureMetrics
from tabloop.registry.dvc_repo import check_out, restore, run_experiment, snapshot, unused_name
from tabloop.registry.mlflow import BUNDLE_TAG, CHAMPION, Registry
from tabloop.settings import Settings

logger = logging.getLogger(__name__)

PROMOTED, KEPT, NOTHING_NEW = 0, 3, 4  # exit codes of `make retrain` (1 is an error, 2 a usage error)
PLANNED = 0  # the exit code of a dry run
DAY = dt.timedelta(days=1)


class RetrainError(TabloopError):
    """Retraining cannot start or did not finish."""


@dataclass(frozen=True)
class Plan:
    """The moved split and why it is where it is."""

    horizon: dt.date  # the newest day whose outcomes have arrived (within the source data)
    current: TimeSplit
    moved: TimeSplit
    new_days: int  # how far the end of training moves forward
    name: str  # of the DVC experiment (and the MLflow run)

    def describe(self) -> str:
        lines = [f"outcomes have arrived up to {self.horizon}; the split moves {self.new_days} days forward:"]
        for split in ("train", "valid", "test"):
            before, after = getattr(self.current, split), getattr(self.moved, split)
            lines.append(f"  {split:<5}  {before.start} .. {before.end}  ->  {after.start} .. {after.end}")
        return "\n".join(lines)


@dataclass(frozen=True)
class GateOutcome:
    """What the register stage's gate decided about the retrained model."""

    version: str
    decision: str
    reasons: list[str]
    champion: str | None
    previous_champion: str | None

    @property
    def promoted(self) -> bool:
        return self.champion is not None and self.champion != self.previous_champion

    @property
    def exit_code(self) -> int:
        return PROMOTED if self.promoted else KEPT


@dataclass(frozen=True)
class RetrainResult:
    """What ``make retrain`` planned and what came of it."""

    exit_code: int  # NOTHING_NEW, PLANNED (a dry run), or the outcome's: PROMOTED or KEPT
    planned: Plan | RowPlan | None  # None: nothing new to train on
    outcome: GateOutcome | None = None  # None: the pipeline did not run
    nothing_new: str | None = None  # why there is nothing to train on


def retrain(
    settings: Settings,
    where: Layout,
    config: MonitorConfig,
    *,
    features_metrics: Path | None = None,
    url: str = "http://127.0.0.1:8000",
    api_key: str | None = None,
    dry_run: bool = False,
    report: Callable[[str], object] = print,
) -> RetrainResult:
    """What retraining the dataset of ``where`` on the outcomes in the prediction log came to: the split moved to
    them, the pipeline run on it as a DVC experiment (not in a ``dry_run``), the gate's decision, and the service at
    ``url`` told about a new champion. Each step's findings go to ``report``, line by line."""
    data = load_data_config(where.data_config)
    registry = load_registry_config(where.registry_config)
    log = read_log(config.reports.log_url, features=False, task=data.contract.target.task)  # ids, times, outcomes
    try:
        planned = plan_retraining(config, data, log, features_metrics or where.features_metrics)
    except NothingNewError as e:
        report(f"nothing to retrain: {e}")
        return RetrainResult(NOTHING_NEW, None, nothing_new=str(e))
    text = retrained_yaml(moved_split(planned.moved if isinstance(planned, Plan) else planned.arrived))
    report(planned.describe())
    if dry_run:
        return RetrainResult(PLANNED, planned)
    previous = current_champion(settings, registry)
    root = Path.cwd()
    name = unused_name(root, planned.name)  # retrain-rows-668-2 where an earlier run took retrain-rows-668
    kept = run_pipeline(root, name, f"register@{where.dataset}", (where.retrained_config, text))
    outcome = gate_outcome(settings, registry, where.receipt, previous)
    if not outcome.promoted:  # the workspace back at the champion's: make train has nothing to do
        restore(kept, root / "configs")
        check_out(root, f"register@{where.dataset}")
    report_outcome(outcome, url, api_key, report)
    if not outcome.promoted:
        report(
            f"configs/ and the pipeline's outputs are back at the champion's; the rejected run stays in `dvc exp show` "
            f"({name}) and in the registry as version {outcome.version}"
        )
    return RetrainResult(outcome.exit_code, planned, outcome)


def plan_retraining(
    config: MonitorConfig, data: DataConfig, log: pl.DataFrame, features_metrics: Path
) -> Plan | RowPlan:
    """The split moved to the outcomes in ``log``: a time split to the newest labelled day (within the data the
    features stage saw, as ``features_metrics`` records it), any other to the replayed rows that have their outcome;
    a NothingNewError when that moves it too little."""
    if isinstance(data.split, TimeSplit):
        horizon = labelled_horizon(log, config.retrain.min_label_share, data.entity.time_zone)
        return plan(config.retrain, data, horizon, source_end(features_metrics))
    replayed = config.replay.state.with_name(SNAPSHOT_NAME)
    arrived = arrived_rows(log, production_ids(replayed), config.retrain.min_label_share)
    return plan_rows(config.retrain, data.split, arrived)


def report_outcome(outcome: GateOutcome, url: str, api_key: str | None, report: Callable[[str], object]) -> None:
    """Report the gate's decision and its reasons; a new champion is announced to the service at ``url``."""
    report(f"version {outcome.version}: gate {outcome.decision}")
    for reason in outcome.reasons:
        report(f"  {reason}")
    if outcome.promoted:
        report(f"version {outcome.version} is the new champion (was {outcome.previous_champion or 'none'})")
        report(announce(url, api_key))
    else:
        report(f"the champion stays version {outcome.champion or '-'}")


def labelled_horizon(log: pl.DataFrame, min_share: float, time_zone: str) -> dt.date | None:
    """The newest day (local to ``time_zone``) on which at least ``min_share`` of the predictions have their
    outcome."""
    if log.is_empty():
        return None
    days = (
        log.group_by(day=pl.col("event_time").dt.convert_time_zone(time_zone).dt.date())
        .agg(rows=pl.len(), labelled=pl.col("actual").is_not_null().sum())
        .filter(pl.col("labelled") >= min_share * pl.col("rows"))
    )
    newest = days["day"].max()
    return newest if isinstance(newest, dt.date) else None


def source_end(features_metrics: Path) -> dt.date:
    """The last day of the event time among the labelled examples, as the features stage recorded it."""
    if not features_metrics.is_file():
        raise RetrainError(f"{features_metrics}: not found; run `make train` first")
    end = FeatureMetrics.read(features_metrics).examples.end
    if end is None:
        raise RetrainError(f"{features_metrics}: the examples have no event time; retraining moves a time split")
    return dt.date.fromisoformat(end)


def plan(config: RetrainConfig, data: DataConfig, horizon: dt.date | None, data_end: dt.date) -> Plan:
    """The split moved to ``horizon``; a RetrainError when it would not move far enough."""
    current = data.split
    if not isinstance(current, TimeSplit):
        raise RetrainError(f"split.kind: retraining moves a time split; this dataset's is {current.kind}")
    if horizon is None:
        raise NothingNewError(
            "no day in the prediction log has its outcomes yet (the replay sends them after landing, "
            "POST /feedback otherwise); nothing to retrain on"
        )
    end = min(horizon, data_end)
    test = Period(start=end - (config.evaluation_days - 1) * DAY, end=end)
    valid = Period(start=test.start - config.validation_days * DAY, end=test.start - DAY)
    if valid.start <= current.train.start:
        raise RetrainError(
            f"the moved window would leave no training days: the {config.validation_days} validation and "
            f"{config.evaluation_days} evaluation days before {end} start before training does ({current.train.start})"
        )
    moved = TimeSplit(
        kind="time", train=Period(start=current.train.start, end=valid.start - DAY), valid=valid, test=test
    )
    new_days = (moved.train.end - current.train.end).days
    if new_days < config.min_new_days:
        raise NothingNewError(
            f"outcomes have arrived up to {end}, which moves the end of training from {current.train.end} to "
            f"{moved.train.end}: {new_days} day(s), fewer than min_new_days ({config.min_new_days}); "
            "wait for more outcomes"
        )
    return Plan(horizon=end, current=current, moved=moved, new_days=new_days, name=f"retrain-{end:%Y%m%d}")


class NothingNewError(RetrainError):
    """Not enough newly labelled days (or rows) to move the window."""


@dataclass(frozen=True)
class RowPlan:
    """Without a time split: how many production rows have their outcome, and the split they make."""

    arrived: Arrived
    previous: int  # rows arrived at the last retraining (0: none yet)
    name: str

    def describe(self) -> str:
        a = self.arrived
        return (
            f"outcomes have arrived for the first {a.rows:,} rows of the test split ({a.rows - self.previous:,} new): "
            f"the newest {a.test:,} become the test split, the {a.valid:,} before them the validation split, and "
            f"the {a.rows - a.valid - a.test:,} older ones join training"
        )


REPLAY_ID = re.compile(r"^r[0-9a-f]+-")  # the replay's request ids: r<run>-<the example's id>


def arrived_rows(log: pl.DataFrame, production: list[str], min_share: float) -> int:
    """How many leading rows of ``production`` (the replayed ids, in order) have their outcome: the longest prefix
    ending in a labelled row in which at least ``min_share`` are labelled."""
    labelled = set(log.filter(pl.col("actual").is_not_null())["id"].str.replace(REPLAY_ID.pattern, "").to_list())
    flags = np.array([key in labelled for key in production], dtype=bool)
    if not flags.any():
        return 0
    counts = np.cumsum(flags)
    lengths = np.arange(1, len(flags) + 1)
    good = flags & (counts >= min_share * lengths)
    return int(lengths[good].max()) if good.any() else 0


def production_ids(snapshot: Path) -> list[str]:
    """The ids of the replayed test split, in the order the replay sent them."""
    if not snapshot.is_file():
        raise NothingNewError(
            f"{snapshot}: no replay yet; without a time split, retraining follows the replayed test split (make replay)"
        )
    return [str(v) for v in pl.read_parquet(snapshot, columns=[ID])[ID].to_list()]


def plan_rows(config: RetrainConfig, split: RandomSplit | GroupSplit, arrived: int) -> RowPlan:
    """The split once ``arrived`` production rows have their outcome; a NothingNewError if that is too few."""
    previous = split.arrived.rows if split.arrived else 0
    held_out = config.evaluation_rows + config.validation_rows
    if arrived <= held_out:
        raise NothingNewError(
            f"outcomes have arrived for {arrived:,} production rows; more than {held_out:,} (evaluation_rows + "
            "validation_rows) are needed to hold some out; wait for more outcomes"
        )
    if arrived - previous < config.min_new_rows:
        raise NothingNewError(
            f"outcomes have arrived for {arrived:,} production rows, {arrived - previous:,} since the last "
            f"retraining: fewer than min_new_rows ({config.min_new_rows}); wait for more outcomes"
        )
    moved = Arrived(rows=arrived, valid=config.validation_rows, test=config.evaluation_rows)
    return RowPlan(arrived=moved, previous=previous, name=f"retrain-rows-{arrived}")


def moved_split(moved: TimeSplit | Arrived) -> dict[str, dict[str, object]]:
    """What ``retrained.yaml`` holds for ``moved``: a time split's three periods, or the rows that arrived."""
    if isinstance(moved, Arrived):
        return {"arrived": {"rows": moved.rows, "valid": moved.valid, "test": moved.test}}
    return {
        name: {"start": period.start.isoformat(), "end": period.end.isoformat()}
        for name, period in (("train", moved.train), ("valid", moved.valid), ("test", moved.test))
    }


def run_pipeline(root: Path, name: str, target: str, retrained: tuple[Path, str]) -> dict[Path, bytes]:
    """``dvc exp run target`` in ``root`` with ``retrained`` (its path and text) written first, output shown as it
    comes; what ``configs/`` and ``dvc.lock`` held before, to put back if the run is not kept. A RetrainError if it
    fails (``configs/`` and ``dvc.lock`` put back already)."""
    git = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=root, capture_output=True, check=False)
    if git.returncode != 0:
        raise RetrainError(
            "retraining is recorded as a DVC experiment, which starts from a git commit, and this repository has "
            "none: commit your work first (git add -A && git commit -m ...)"
        )
    path, text = retrained
    if not path.is_file():  # a dataset drafted before the file existed: the pipeline's parameter from now on
        path.write_text(retrained_yaml(), encoding="utf-8")
    kept = snapshot(root / "configs", root / "dvc.lock")
    try:
        path.write_text(text, encoding="utf-8")
        returncode = run_experiment(root, name, target, [])
    except BaseException:  # an interrupt too: the configuration goes back to what it was; re-raised
        restore(kept, root / "configs")
        raise
    if returncode != 0:
        restore(kept, root / "configs")
        raise RetrainError(
            f"the pipeline failed (dvc exp run exited {returncode}; its message is above); the previous "
            "outputs, the configuration, the registry and the served model are unchanged"
        )
    return kept


def gate_outcome(settings: Settings, config: RegistryConfig, receipt: Path, previous: str | None) -> GateOutcome:
    """The version holding the bundle the pipeline just registered, and the gate's decision on it."""
    registry = Registry(settings, config)
    registry.connect()
    digest = read_json(receipt)[BUNDLE_TAG]
    version = registry.by_bundle(digest)
    if version is None:
        raise RetrainError(f"the registry holds no version of the bundle named in {receipt}")
    champion = registry.by_alias(CHAMPION)
    tags = version.tags or {}
    reasons = [r for r in str(tags.get("gate.reasons", "")).splitlines() if r]
    return GateOutcome(
        version=Registry.number(version),
        decision=str(tags.get("gate.decision", "unknown")),
        reasons=reasons,
        champion=Registry.number(champion) if champion is not None else None,
        previous_champion=previous,
    )


def current_champion(settings: Settings, config: RegistryConfig) -> str | None:
    registry = Registry(settings, config)
    registry.connect()
    champion = registry.by_alias(CHAMPION)
    return Registry.number(champion) if champion is not None else None


def announce(url: str, api_key: str | None, timeout: float = 60.0) -> str:
    """Ask the service at ``url`` to load the champion now; what it answered, in words."""
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        response = httpx.post(f"{url.rstrip('/')}/admin/reload", headers=headers, timeout=timeout)
    except httpx.TransportError:
        return f"no service answers at {url}: it loads the new champion when it starts (make serve)"
    if response.status_code != 200:
        return f"the service at {url} refused to reload ({response.status_code}: {response.text[:200]})"
    served = response.json().get("version")
    return f"the service at {url} now serves version {served}"
