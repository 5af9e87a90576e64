"""The whole loop on a slice of real flights, each step the command a user runs, in a copy of the repository:
train, serve, replay the drifted months, drift detected, retrain on the moved window, the new champion served,
the dashboard showing the change."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flights.slices import write_slice
from helpers import free_port
from monitoring.gate import ALARM
from monitoring.retrain import NOTHING_NEW, PROMOTED
from monitoring.workspace import MonitoringWorkspace
from profiles import FLIGHTS_SPLIT
from tabloop.config import load_data_config
from tabloop.layout import Layout
from tools.benchmarks.workspace import copy_repository, dvc, edit_config, environment

pytestmark = pytest.mark.adapter("flights")
FIRST_MONTH_END = "2013-11-30"


def run(repo: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**environment(), **({"SERVICE_URL": url} if url else {})}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=repo, env=env, capture_output=True, text=True, check=False, timeout=900
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository copy on a slice of every 20th flight, trained once (version 1 is the champion)."""
    root = tmp_path_factory.mktemp("loop")
    write_slice(root / "source", every=20)
    repo = copy_repository(root / "repo")
    edit_config(
        repo, "data", source={"dir": str(root / "source"), "package": None}, split=FLIGHTS_SPLIT.model_dump(mode="json")
    )
    edit_config(repo, "train", threads=1, training={"max_epochs": 8, "patience": 3})
    edit_config(
        repo,
        "monitor",
        replay={"speedup": 14 * 86_400.0, "rate": 2000.0, "max_seconds": 600.0},
        reports={"min_rows": 100, "min_labels": 100},
    )
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "slice"], cwd=repo, check=True
    )
    result = dvc(repo, "repro")
    assert result.returncode == 0, result.stdout + result.stderr
    return repo


@pytest.fixture
def service(repo: Path) -> Iterator[str]:
    """``make serve`` in the copy, on a free port; it loads a new champion only when told (no polling)."""
    port = free_port()
    env = {**environment(), "TABLOOP_SERVE_PORT": str(port), "TABLOOP_SERVE_POLL_INTERVAL_S": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "serving"], cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, "the service exited"
            assert time.monotonic() < deadline, "the service did not become ready"
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def served_version(url: str) -> str:
    return str(httpx.get(f"{url}/model", timeout=10).json()["version"])


def split_of(repo: Path) -> dict[str, dict[str, str]]:
    """The split every stage reads: data.yaml's, with what make retrain wrote to retrained.yaml laid over it."""
    split = load_data_config(Layout.of(None, repo).data_config).split.model_dump(mode="json")
    return {name: {k: str(v) for k, v in period.items()} for name, period in split.items() if name != "kind"}


def test_drift_is_detected_retraining_promotes_and_the_new_champion_is_served(repo: Path, service: str) -> None:
    assert served_version(service) == "1"

    # November arrives: the predictions and, after landing, their outcomes.
    replayed = run(repo, "monitoring", "replay", "--until", FIRST_MONTH_END, "--no-progress", url=service)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert f"stopped by until ({FIRST_MONTH_END})" in replayed.stdout

    # The drift gate sees autumn against the September-October reference.
    monitored = run(repo, "monitoring", "monitor")
    assert monitored.returncode == ALARM, monitored.stdout + monitored.stderr
    verdict = json.loads((Layout.of(None, repo).monitoring / "verdict.json").read_text())
    assert verdict["status"] == "alarm"
    assert "/v1/" in verdict["window"]
    assert verdict["reasons"]

    # Retraining moves the window to the November outcomes and the gate promotes the challenger.
    before, data_yaml = split_of(repo), Layout.of(None, repo).data_config.read_bytes()
    retrained = run(repo, "monitoring", "retrain", url=service)
    assert retrained.returncode == PROMOTED, retrained.stdout + retrained.stderr
    after = split_of(repo)
    assert Layout.of(None, repo).data_config.read_bytes() == data_yaml  # the user's file: no tool rewrites it
    horizon = dt.date.fromisoformat(after["test"]["end"])
    assert dt.date(2013, 11, 25) <= horizon <= dt.date(2013, 11, 30)
    assert after["train"]["start"] == before["train"]["start"]
    assert after["train"]["end"] > before["train"]["end"]  # newly labelled months joined training
    assert "version 2 is the new champion (was 1)" in retrained.stdout
    assert "now serves version 2" in retrained.stdout
    assert served_version(service) == "2"
    experiments = dvc(repo, "exp", "list", "--name-only")
    assert f"retrain-{horizon:%Y%m%d}" in experiments.stdout.split()

    # Nothing new since: a second retrain refuses to run the pipeline for nothing.
    again = run(repo, "monitoring", "retrain", url=service)
    assert again.returncode == NOTHING_NEW, again.stdout + again.stderr
    assert "nothing to retrain" in again.stdout

    # December is served by the new champion, and the monitoring keeps the two versions apart.
    resumed = run(repo, "monitoring", "replay", "--no-progress", url=service)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    monitored = run(repo, "monitoring", "monitor")
    assert monitored.returncode in (0, ALARM), monitored.stdout + monitored.stderr
    verdict = json.loads((Layout.of(None, repo).monitoring / "verdict.json").read_text())
    assert "/v2/" in verdict["window"]
    reported = {w["window"].split("/")[1] for w in verdict["windows"]}
    assert reported == {"v1", "v2"}

    workspace = MonitoringWorkspace(Layout.of(None, repo).monitoring / "workspace", "flights monitoring")
    assert {key.split("/")[1] for (key, _) in workspace.existing} == {"v1", "v2"}
    dashboard = workspace.workspace.get_project(workspace.project_id).dashboard.model()
    legends = {m.legend for panel in dashboard.panels for m in panel.values}
    assert {"version 1", "version 2"} <= legends
