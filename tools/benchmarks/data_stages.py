"""The three data stages on the full data, and their joins against a plain pandas implementation.

Goals: the whole ``dvc repro`` of ingest → validate → features within 30 s wall and 2 GiB peak memory on two cores;
the joins of the features stage faster than the same joins in pandas, measured in the same run.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import polars as pl
from rich.console import Console

from tabloop.datasets.flights import PLANE_COLUMNS, WEATHER_COLUMNS, join_tables
from tools.benchmarks.display import table, yes
from tools.benchmarks.measure import GIB, best_of, run_command
from tools.benchmarks.workspace import copy_repository, environment

WALL_GOAL_S = 30.0
MEMORY_GOAL_BYTES = 2 * GIB
# The joins measured are the flights adapter's.
ADAPTER = "flights"
STAGES = tuple(f"{stage}@{ADAPTER}" for stage in ("ingest", "validate", "features"))


def pandas_joins(flights: pd.DataFrame, weather: pd.DataFrame, planes: pd.DataFrame) -> pd.DataFrame:
    """The anchor: the features stage's two many-to-one left joins, written in plain pandas."""
    weather_part = weather[["origin", "time_hour", *WEATHER_COLUMNS]]
    plane_part = planes[["tailnum", *PLANE_COLUMNS]].rename(columns=PLANE_COLUMNS)
    joined = flights.merge(weather_part, on=["origin", "time_hour"], how="left", validate="m:1")
    return joined.merge(plane_part, on="tailnum", how="left", validate="m:1")


@dataclass(frozen=True)
class Pipeline:
    """The whole ``dvc repro`` of the three stages: best wall time, peak memory, the no-op run and the goals."""

    wall_s: float
    wall_s_runs: tuple[float, ...]
    peak_gib: float
    noop_wall_s: float
    goal_wall_s: float
    goal_peak_gib: float
    met: bool


@dataclass(frozen=True)
class StageRun:
    """One stage run alone: best wall time and peak memory over the repeats."""

    wall_s: float
    peak_gib: float


@dataclass(frozen=True)
class Joins:
    """The adapter's joins in polars against the same joins in pandas, best and median of each."""

    tables: tuple[str, ...]
    anchor: str
    polars_best_s: float
    polars_median_s: float
    pandas_best_s: float
    pandas_median_s: float
    speedup_vs_pandas: float
    met: bool


@dataclass(frozen=True)
class DataStagesResult:
    """The data stages benchmark: the pipeline, each stage alone, and the joins."""

    dataset: str
    rows: int
    pipeline: Pipeline
    stages: dict[str, StageRun]
    joins: Joins

    @property
    def met(self) -> bool:
        """Both goals met: the pipeline's wall time and memory, and the joins ahead of pandas."""
        return self.pipeline.met and self.joins.met

    def show(self, console: Console) -> None:
        """The measurements against their goals, as a table."""
        pipeline, joins = self.pipeline, self.joins
        shown = table(
            f"Data stages of {self.dataset} on the full data ({self.rows:,} rows)",
            ("measurement", "value", "anchor / goal", "ratio", "met"),
        )
        shown.add_row(
            "dvc repro ingest → validate → features (wall, best)",
            f"{pipeline.wall_s:.1f} s",
            f"goal ≤ {pipeline.goal_wall_s:.0f} s",
            f"{pipeline.wall_s / pipeline.goal_wall_s:.2f} of goal",
            yes(pipeline.wall_s <= pipeline.goal_wall_s),
        )
        shown.add_row(
            "  peak memory, whole process tree",
            f"{pipeline.peak_gib:.2f} GiB",
            f"goal ≤ {pipeline.goal_peak_gib:.0f} GiB",
            f"{pipeline.peak_gib / pipeline.goal_peak_gib:.2f} of goal",
            yes(pipeline.peak_gib <= pipeline.goal_peak_gib),
        )
        shown.add_row("dvc repro with nothing changed", f"{pipeline.noop_wall_s:.1f} s", "", "", "")
        for stage, numbers in self.stages.items():
            shown.add_row(f"  stage {stage} alone", f"{numbers.wall_s:.1f} s, {numbers.peak_gib:.2f} GiB", "", "", "")
        shown.add_row(
            f"the adapter's joins ({' ⟕ '.join(joins.tables)}), polars",
            f"{joins.polars_best_s * 1000:.0f} ms",
            f"pandas {joins.pandas_best_s * 1000:.0f} ms",
            f"{joins.speedup_vs_pandas:.1f}x faster",
            yes(joins.met),
        )
        console.print(shown)


def run(repeat: int = 3) -> DataStagesResult:
    """Measure the stages and the joins; return the results with each goal's verdict."""
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        repo = copy_repository(Path(tmp))
        env = environment()
        dvc_bin = str(Path(env["PATH"].split(":")[0]) / "dvc")

        pipeline = [run_command([dvc_bin, "repro", "--force", *STAGES], repo, env) for _ in range(repeat)]
        for attempt in pipeline:
            if attempt.returncode != 0:
                raise RuntimeError(f"dvc repro failed:\n{attempt.output}")
        best = min(pipeline, key=lambda r: r.wall_s)
        noop = run_command([dvc_bin, "repro", *STAGES], repo, env)
        stages = {stage: _stage_alone(dvc_bin, stage, repo, env, repeat) for stage in STAGES}
        assert "didn't change" in noop.output or "up to date" in noop.output, noop.output

        validated = repo / "data" / "flights" / "validated"
        tables = {t: pl.read_parquet(validated / f"{t}.parquet") for t in ("flights", "weather", "planes")}
        frames = {t: f.to_pandas() for t, f in tables.items()}
        polars_best, polars_median = best_of(
            lambda: join_tables(*(tables[t] for t in ("flights", "weather", "planes")))
        )
        pandas_best, pandas_median = best_of(
            lambda: pandas_joins(*(frames[t] for t in ("flights", "weather", "planes")))
        )

    peak = max(r.peak_tree_bytes for r in pipeline)
    return DataStagesResult(
        dataset=ADAPTER,
        rows=tables["flights"].height,
        pipeline=Pipeline(
            wall_s=round(best.wall_s, 2),
            wall_s_runs=tuple(round(r.wall_s, 2) for r in pipeline),
            peak_gib=round(peak / GIB, 3),
            noop_wall_s=round(noop.wall_s, 2),
            goal_wall_s=WALL_GOAL_S,
            goal_peak_gib=MEMORY_GOAL_BYTES / GIB,
            met=best.wall_s <= WALL_GOAL_S and peak <= MEMORY_GOAL_BYTES,
        ),
        stages=stages,
        joins=Joins(
            tables=tuple(tables),
            anchor="pandas merge (same joins, same data, same process)",
            polars_best_s=round(polars_best, 4),
            polars_median_s=round(polars_median, 4),
            pandas_best_s=round(pandas_best, 4),
            pandas_median_s=round(pandas_median, 4),
            speedup_vs_pandas=round(pandas_best / polars_best, 2),
            met=polars_best < pandas_best,
        ),
    )


def _stage_alone(dvc_bin: str, stage: str, repo: Path, env: dict[str, str], repeat: int) -> StageRun:
    single = [run_command([dvc_bin, "repro", "--force", "--single-item", stage], repo, env) for _ in range(repeat)]
    return StageRun(
        wall_s=round(min(r.wall_s for r in single), 2),
        peak_gib=round(max(r.peak_tree_bytes for r in single) / GIB, 3),
    )
