"""The whole pipeline run by DVC on a slice of real flights, in a temporary copy of the repository.

The copy has its own MLflow store (the default SQLite file under its mlruns/), so nothing here touches the
repository's own registry.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from flights.slices import write_table
from helpers import WHERE
from profiles import FLIGHTS_SPLIT
from tabloop.io import read_json
from tools.benchmarks.workspace import copy_repository, dvc, edit_config

pytestmark = pytest.mark.adapter("flights")
D = WHERE.dataset
OUTPUTS = (f"data/{D}/raw", f"data/{D}/validated", f"data/{D}/features", f"models/{D}/bundle", f"reports/{D}")
ALL_STAGES = ["ingest", "validate", "features", "train", "evaluate", "register"]
# What each stage writes; a stage that fails must leave its own outputs and every later stage's untouched.
STAGE_OUTPUTS = {
    "ingest": (f"data/{D}/raw/",),
    "validate": (f"data/{D}/validated/", f"reports/{D}/validation/"),
    "features": (f"data/{D}/features/", f"reports/{D}/features.json"),
    "train": (f"models/{D}/bundle/", f"reports/{D}/train/"),
    "evaluate": (f"reports/{D}/evaluation/",),
    "register": (f"reports/{D}/registry.json",),
}


def ran(result_stdout: str) -> list[str]:
    return re.findall(rf"Running stage '(\w+)@{D}'", result_stdout)


def fingerprint(repo: Path) -> dict[str, str]:
    """Hash of every output file, to prove a failed run changed nothing."""
    files = sorted(p for out in OUTPUTS for p in (repo / out).rglob("*") if p.is_file())
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, slice_dir: Path) -> Path:
    """A repository copy pointed at the slice, after one successful ``dvc repro``."""
    repo = copy_repository(tmp_path_factory.mktemp("repo"))
    edit_config(
        repo, "data", source={"dir": str(slice_dir), "package": None}, split=FLIGHTS_SPLIT.model_dump(mode="json")
    )
    # the full data's quality floor is no bar for a model of 337 flights: these tests are about the pipeline itself
    edit_config(repo, "registry", gate={"min_score": None})
    result = dvc(repo, "repro")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran(result.stdout) == ALL_STAGES
    return repo


@pytest.fixture
def repo(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built repository, outputs and DVC cache included."""
    return Path(shutil.copytree(built, tmp_path / "repo", ignore=shutil.ignore_patterns("tmp")))


def test_first_run_writes_every_output_and_registers_a_champion(built: Path) -> None:
    for split in ("train", "valid", "test"):
        assert pl.read_parquet(built / "data" / D / "features" / f"{split}.parquet").height > 0
    assert (built / "data" / D / "features" / "preprocessing.json").is_file()
    summary = read_json(built / "reports" / D / "validation" / "summary.json")
    assert summary["tables"]["flights"]["rows"] == 337
    assert (built / "models" / D / "bundle" / "weights.safetensors").is_file()
    assert (built / "reports" / D / "evaluation" / "model_card.md").is_file()
    metrics = dvc(built, "metrics", "show")
    for path in (
        f"reports/{D}/features.json",
        f"reports/{D}/validation/summary.json",
        f"reports/{D}/evaluation/metrics.json",
    ):
        assert path in metrics.stdout
    receipt = read_json(built / "reports" / D / "registry.json")
    champion = subprocess.run(
        [str(Path(sys.executable).parent / "tabloop"), "champion"],
        cwd=built,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert receipt["model_name"] in champion
    assert "champion history (oldest first): 1" in champion


def test_second_run_runs_nothing(repo: Path) -> None:
    result = dvc(repo, "repro")
    assert result.returncode == 0
    assert ran(result.stdout) == []
    assert "Data and pipelines are up to date" in result.stdout


def test_parameter_change_reruns_only_dependent_stages(repo: Path) -> None:
    edit_config(repo, "data", validation={"max_rejected_share": 0.02})
    result = dvc(repo, "repro")
    assert result.returncode == 0, result.stderr
    assert ran(result.stdout) == ["validate"]  # its outputs are unchanged, so nothing after it runs

    edit_config(repo, "evaluate", curve_points=50)
    result = dvc(repo, "repro")
    assert ran(result.stdout) == ["evaluate", "register"]
    assert "already version 1" in result.stderr + result.stdout  # same bundle: nothing new in the registry

    edit_config(repo, "data", preprocessing={"min_category_count": 3})
    result = dvc(repo, "repro")
    assert ran(result.stdout) == ["features", "train", "evaluate", "register"]


def test_experiment_lands_in_dvc_and_mlflow(repo: Path) -> None:
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "baseline"],
        cwd=repo,
        check=True,
    )
    result = dvc(repo, "exp", "run", "-S", f"configs/{D}/train.yaml:optimizer.lr=0.003")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran(result.stdout)[:1] == ["train"]
    shown = dvc(repo, "exp", "show", "--json")
    assert "0.003" in shown.stdout
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("flight-delay").experiment_id])
    assert {r.data.params.get("train.optimizer.lr") for r in runs} >= {"0.001", "0.003"}


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
    edit_config(repo, "data", source={"dir": str(source), "package": None})
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
        return {
            k: v for k, v in files.items() if k.startswith(kept) and not k.startswith(f"reports/{D}/validation/failed/")
        }

    assert outputs_kept(fingerprint(repo)) == outputs_kept(before)
    assert outputs_kept(before), "the check must cover some outputs"
