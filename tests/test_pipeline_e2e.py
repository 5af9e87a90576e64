"""The three data stages run by DVC on a slice of real flights, in a temporary copy of the repository."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from benchmarks.workspace import copy_repository, dvc, edit_config
from flightdelay.io import read_json
from slices import write_table

pytestmark = pytest.mark.e2e
OUTPUTS = ("data/raw", "data/validated", "data/features", "reports")
# What each stage writes; a stage that fails must leave its own outputs and every later stage's untouched.
STAGE_OUTPUTS = {
    "ingest": ("data/raw/",),
    "validate": ("data/validated/", "reports/validation/"),
    "features": ("data/features/", "reports/features.json"),
}


def ran(result_stdout: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", result_stdout)


def fingerprint(repo: Path) -> dict[str, str]:
    """Hash of every output file, to prove a failed run changed nothing."""
    files = sorted(p for out in OUTPUTS for p in (repo / out).rglob("*") if p.is_file())
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, slice_dir: Path) -> Path:
    """A repository copy pointed at the slice, after one successful ``dvc repro``."""
    repo = copy_repository(tmp_path_factory.mktemp("repo"))
    edit_config(repo, "data", source={"dir": str(slice_dir)})
    result = dvc(repo, "repro")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran(result.stdout) == ["ingest", "validate", "features"]
    return repo


@pytest.fixture
def repo(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built repository, outputs and DVC cache included."""
    return Path(shutil.copytree(built, tmp_path / "repo", ignore=shutil.ignore_patterns("tmp")))


def test_first_run_writes_every_output(built: Path) -> None:
    for split in ("train", "valid", "test"):
        assert pl.read_parquet(built / "data" / "features" / f"{split}.parquet").height > 0
    assert (built / "data" / "features" / "preprocessing.json").is_file()
    summary = read_json(built / "reports" / "validation" / "summary.json")
    assert summary["tables"]["flights"]["rows"] == 337
    metrics = dvc(built, "metrics", "show")
    assert "reports/features.json" in metrics.stdout
    assert "reports/validation/summary.json" in metrics.stdout


def test_second_run_runs_nothing(repo: Path) -> None:
    result = dvc(repo, "repro")
    assert result.returncode == 0
    assert ran(result.stdout) == []
    assert "Data and pipelines are up to date" in result.stdout


def test_parameter_change_reruns_only_dependent_stages(repo: Path) -> None:
    edit_config(repo, "data", preprocessing={"min_category_count": 3})
    result = dvc(repo, "repro")
    assert result.returncode == 0, result.stderr
    assert ran(result.stdout) == ["features"]

    # A looser rejection limit re-runs validate; its outputs are unchanged, so features is skipped.
    edit_config(repo, "data", validation={"max_rejected_share": 0.02})
    result = dvc(repo, "repro")
    assert ran(result.stdout) == ["validate"]


def test_outputs_are_identical_across_runs(repo: Path) -> None:
    lock = (repo / "dvc.lock").read_text()
    before = fingerprint(repo)
    result = dvc(repo, "repro", "--force")
    assert result.returncode == 0, result.stderr
    assert (repo / "dvc.lock").read_text() == lock
    assert fingerprint(repo) == before


def drop_table(source: Path) -> None:
    (source / "weather.csv").unlink()


def edit_flights(change: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[Path], None]:
    def apply(source: Path) -> None:
        flights = pl.read_csv(source / "flights.csv", infer_schema=False, null_values=["NA"])
        write_table(change(flights.with_row_index("i")).drop("i"), source, "flights")

    return apply


def first_rows(column: str, value: str, n: int = 12) -> Callable[[pl.DataFrame], pl.DataFrame]:
    new = pl.when(pl.col("i") < n).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    return lambda f: f.with_columns(new)


def downstream_of(stage: str) -> tuple[str, ...]:
    stages = list(STAGE_OUTPUTS)
    return tuple(prefix for later in stages[stages.index(stage) :] for prefix in STAGE_OUTPUTS[later])


@pytest.mark.parametrize(
    ("corrupt", "messages"),
    [
        pytest.param(drop_table, ["ingest failed", "table 'weather' not found"], id="missing-table"),
        pytest.param(
            edit_flights(lambda f: f.drop("distance")),
            ["ingest failed", "flights.csv: missing column(s) 'distance'"],
            id="missing-column",
        ),
        pytest.param(
            edit_flights(first_rows("distance", "far", 2)),
            ["ingest failed", "flights.csv: column 'distance' must hold int16 values; 2 row(s) do not"],
            id="wrong-type",
        ),
        pytest.param(
            edit_flights(first_rows("distance", "-50")),
            ["validate failed", "flights: 12 of 337 rows", "distance: range [1, 6000] (12)"],
            id="negative-distances",
        ),
        pytest.param(
            edit_flights(first_rows("dest", "XQX")),
            ["validate failed", "dest: exists in airports.faa or [BQN, PSE, SJU, STT] (12)"],
            id="unknown-airports",
        ),
        pytest.param(
            edit_flights(lambda f: pl.concat([f, f.head(12)])),
            ["validate failed", "unique key (year, month, day, carrier, flight, origin) (12)"],
            id="duplicated-keys",
        ),
    ],
)
def test_bad_source_fails_clearly_and_keeps_outputs(
    repo: Path, slice_dir: Path, tmp_path: Path, corrupt: Callable[[Path], None], messages: list[str]
) -> None:
    source = Path(shutil.copytree(slice_dir, tmp_path / "bad-source"))
    corrupt(source)
    edit_config(repo, "data", source={"dir": str(source)})
    before = fingerprint(repo)

    result = dvc(repo, "repro")

    output = result.stdout + result.stderr
    assert result.returncode != 0
    for message in messages:
        assert message in output, output
    assert "Traceback" not in output
    failed_stage = messages[0].removesuffix(" failed")
    kept = downstream_of(failed_stage)

    def outputs_kept(files: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in files.items() if k.startswith(kept) and not k.startswith("reports/validation/failed/")}

    assert outputs_kept(fingerprint(repo)) == outputs_kept(before)
    assert outputs_kept(before), "the check must cover some outputs"
