"""The configuration is typed on load; mistakes stop the program with a message naming the key."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REPO_ROOT
from profiles import FLIGHTS_SPLIT
from tabloop.config import DataConfig, LoopConfig, load_data_config, parse_config
from tabloop.errors import ConfigError


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The flights' configuration (the richest: four tables, references, clocks, a cyclic feature), with the split
    the tests reason about, whichever dataset is configured."""
    data = yaml.safe_load((REPO_ROOT / "configs" / "flights" / "data.yaml").read_text())
    return {**data, "split": FLIGHTS_SPLIT.model_dump(mode="json")}


def parse(data: dict[str, Any]) -> DataConfig:
    return parse_config(DataConfig, data, "data.yaml")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(splitt=c["split"]), "splitt: unknown key"),
        (lambda c: c["label"].update(treshold=10), "label.treshold: unknown key"),
        (
            lambda c: c["tables"]["flights"]["columns"]["distance"].update(minimum=0),
            "tables.flights.columns.distance.minimum: unknown key",
        ),
        (lambda c: c["contract"]["features"]["temp"].update(knd="numeric"), "contract.features.temp.knd: unknown key"),
    ],
)
def test_unknown_key_is_named(raw: dict[str, Any], mutate: Any, expected: str) -> None:
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        parse(data)


@pytest.mark.parametrize(
    ("mutate", "key", "reason"),
    [
        (lambda c: c["label"].update(positive=["yes"]), "label", "exactly one of positive (values) and threshold"),
        (lambda c: c["label"].update(unlabelled="late"), "label.unlabelled", "'drop', 'positive' or 'negative'"),
        (
            lambda c: c["contract"]["features"].update(value=c["contract"]["features"]["temp"]),
            "contract",
            "features: 'value': the API or the prediction log has a column of that name",
        ),
        (lambda c: c["source"].update(dir="elsewhere"), "source", "exactly one of dir, package and rdataset"),
        (lambda c: c["entity"].update(time_zone="Mars/Olympus"), "entity", "not an IANA time zone"),
        (lambda c: c["entity"].update(time=None, outcome_time=None), "split.kind", "needs an event time"),
        (lambda c: c.update(split={"kind": "random", "fractions": {"train": 0.8}}), "split.fractions", "must be 1"),
        (lambda c: c.update(split={"kind": "monthly"}), "split", "'time', 'random', 'stratified', 'group'"),
        (lambda c: c["validation"].update(max_rejected_share=1.5), "validation.max_rejected_share", "less than"),
        (lambda c: c["split"]["valid"].update(start="2013-08-15"), "split", "after train.end"),
        (lambda c: c["split"]["test"].update(start="2013-12-31", end="2013-12-01"), "split.test", "is after end"),
        (lambda c: c["split"]["train"].update(start="2013-02-30"), "split.train.start", "date"),
        (
            lambda c: c["tables"]["flights"]["columns"]["distance"].update(min=10, max=1),
            "tables.flights.columns.distance",
            "greater than max",
        ),
        (
            lambda c: c["tables"]["flights"]["columns"]["carrier"].update(pattern="[A-Z"),
            "tables.flights.columns.carrier",
            "not a valid regular expression",
        ),
        (
            lambda c: c["tables"]["flights"]["columns"]["distance"].update(dtype="int128"),
            "tables.flights.columns.distance.dtype",
            "Input should be",
        ),
        (lambda c: c["entity"].update(table="trips"), "entity.table", "'trips' is not one of the tables"),
        (
            lambda c: c["tables"]["flights"]["columns"]["dest"]["references"].update(table="airfields"),
            "tables.flights.columns.dest.references",
            "unknown table 'airfields'",
        ),
        (lambda c: c["contract"]["features"]["dep_hour"].pop("period"), "contract.features.dep_hour", "period"),
        (
            lambda c: c["contract"]["features"]["carrier"].update(kind="numeric"),
            "contract.features.carrier",
            "numeric dtype",
        ),
        (lambda c: c["preprocessing"]["transforms"].update(carrier="log1p"), "preprocessing.transforms.carrier", ""),
        (lambda c: c["preprocessing"].update(crosses=[["origin", "temp"]]), "preprocessing.crosses", "'temp'"),
        (lambda c: c["preprocessing"].update(min_category_count=0), "preprocessing.min_category_count", ""),
    ],
)
def test_impossible_value_is_named(raw: dict[str, Any], mutate: Any, key: str, reason: str) -> None:
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(ConfigError) as excinfo:
        parse(data)
    message = str(excinfo.value)
    assert key in message
    assert reason in message


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_data_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("split: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_data_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_data_config(scalar)


def test_stage_reports_config_error_without_traceback(raw: dict[str, Any], tmp_path: Path) -> None:
    data = copy.deepcopy(raw)
    data["validation"]["max_rejected_share"] = -1
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.ingest", "--config", str(path), "--out", str(tmp_path / "raw")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "validation.max_rejected_share" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "raw").exists()


def test_categories_survive_dvc_rewriting_the_params_file(tmp_path: Path) -> None:
    """``dvc exp run -S`` writes the params file back without quotes; ``Yes``/``No`` must stay strings."""
    params = tmp_path / "params.yaml"
    params.write_text('seed: 1\ncategories: ["Yes", "No", "on", "off"]\n')
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  read:\n"
        f'    cmd: {sys.executable} -c "from pathlib import Path; from tabloop.config import load_yaml; '
        "Path('out.txt').write_text(repr(load_yaml(Path('params.yaml'))['categories']))\"\n"
        "    params: [seed]\n    outs: [out.txt]\n"
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for command in (["git", "init", "-q"], [*git, "add", "-A"], [*git, "commit", "-qm", "params"]):
        subprocess.run(command, cwd=tmp_path, check=True)
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([str(dvc), "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qam", "dvc"], cwd=tmp_path, check=True)
    subprocess.run(
        [str(dvc), "exp", "run", "-q", "-S", "seed=2"],
        cwd=tmp_path,
        check=True,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )
    rewritten = params.read_text()
    assert "seed: 2" in rewritten
    assert '"Yes"' not in rewritten  # DVC dropped the quotes
    assert yaml.safe_load(rewritten)["categories"][:2] == [True, False]  # what YAML 1.1 would have read
    assert (tmp_path / "out.txt").read_text() == "['Yes', 'No', 'on', 'off']"


def test_the_service_comes_from_the_environment_and_an_option_replaces_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from monitoring.__main__ import service_client

    monkeypatch.setenv("SERVICE_URL", "http://127.0.0.1:8123")
    monkeypatch.setenv("SERVICE_API_KEY", "from-the-environment")
    service = service_client(None, None)
    assert (service.url, service.key()) == ("http://127.0.0.1:8123", "from-the-environment")
    service = service_client("http://127.0.0.1:9000", "from-the-option")
    assert (service.url, service.key()) == ("http://127.0.0.1:9000", "from-the-option")
    monkeypatch.setenv("SERVICE_URL", "")
    with pytest.raises(ConfigError, match="SERVICE_URL: String should have at least 1 character"):
        service_client(None, None)


@pytest.mark.parametrize(
    ("rows", "batch"), [(100, 32), (241, 32), (3_000, 64), (10_748, 128), (53_740, 1024), (217_727, 1024)]
)
def test_an_auto_batch_size_gives_a_small_table_dozens_of_steps_and_a_large_one_big_batches(
    rows: int, batch: int
) -> None:
    assert LoopConfig(batch_size="auto").batch_for(rows) == batch
    assert LoopConfig(batch_size=256).batch_for(rows) == 256  # a number is taken as it is
