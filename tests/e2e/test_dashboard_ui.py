"""The monitoring dashboard as a person sees it: the Evidently UI in headless Chromium, every panel plotting data.

Run by ``make test-ui`` (``pytest -m ui``), which installs Debian's chromium first where it is missing; the
browser is never downloaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from chromium import Visit
from helpers import REPO_ROOT, free_port, monitor_config
from monitoring.log_reader import read_log
from monitoring.monitor import run_monitor
from monitoring.workspace import MonitoringWorkspace
from tabloop.config import load_registry_config
from tabloop.config.monitor import MonitorConfig
from tabloop.settings import Settings

pytestmark = pytest.mark.ui

EMPTY_PROJECT = "nothing reported yet"
# What the UI's charts draw for data: a point of a line, a bar.
DATA_MARKS = ".MuiMarkElement-root, .MuiBarElement-root"
PLOTTED = """(marks) => Object.fromEntries([...document.querySelectorAll('.MuiCard-root')].map((card) => [
    card.querySelector('h5')?.textContent ?? '',
    [...card.querySelectorAll(marks)].filter((m) => {
        const box = m.getBoundingClientRect();
        return box.width > 0 && box.height > 0;
    }).length,
]))"""


@pytest.fixture(scope="module")
def reported(
    replayed_log: tuple[Path, Path], registry_store: tuple[Settings, Path], tmp_path_factory: pytest.TempPathFactory
) -> MonitorConfig:
    """The replayed log reported into a workspace, which also holds a project with the same dashboard and no
    snapshots."""
    config = monitor_config(replayed_log[0], tmp_path_factory.mktemp("dashboard"), replayed_log[1])
    run_monitor(config, registry_store[0], load_registry_config(registry_store[1]))
    versions = sorted(read_log(config.reports.log_url)["model_version"].unique().to_list())
    empty = MonitoringWorkspace(config.reports.workspace, EMPTY_PROJECT)
    empty.save_dashboard(versions, config.reports.dashboard_features)
    return config


@pytest.fixture(scope="module")
def dashboard(reported: MonitorConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m monitoring dashboard`` on a free port of 127.0.0.1, serving the workspace; always stopped."""
    directory = tmp_path_factory.mktemp("dashboard-server")
    config = directory / "monitor.yaml"
    reports = {"workspace": str(reported.reports.workspace), "project": reported.reports.project}
    config.write_text(yaml.safe_dump({"reports": reports}))
    port = free_port()
    output = (directory / "dashboard.log").open("wb")  # a file, not a pipe: a full pipe would stall the server
    process = subprocess.Popen(
        [sys.executable, "-m", "monitoring", "dashboard", "--config", str(config), "--port", str(port)],
        cwd=REPO_ROOT,
        env={**os.environ, "DO_NOT_TRACK": "true"},
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/api/projects", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (directory / "dashboard.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "the dashboard did not answer in time"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()


@pytest.fixture
def visit(browser: Browser, dashboard: str) -> Iterator[Visit]:
    """A new page of its own, watched for errors."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    watched = Visit(context.new_page(), dashboard)
    watched.watch()
    yield watched
    context.close()


def project_url(base_url: str, name: str) -> str:
    """The dashboard page of project ``name``, found the way the UI finds it."""
    projects = httpx.get(f"{base_url}/api/projects", timeout=10).json()
    found = [p["id"] for p in projects if p["name"] == name]
    assert len(found) == 1, projects
    return f"{base_url}/projects/{found[0]}"


def panel_titles(config: MonitorConfig, project: str) -> list[str]:
    """The titles of the panels ``make monitor`` saved on the project's dashboard."""
    workspace = MonitoringWorkspace(config.reports.workspace, project)
    panels = workspace.workspace.get_project(workspace.project_id).dashboard.model().panels
    return [str(panel.title) for panel in panels]


def plotted(page: Page) -> dict[str, int]:
    """Each panel on the page by title, and how many points and bars it draws."""
    counts: dict[str, int] = page.evaluate(PLOTTED, DATA_MARKS)
    return counts


def open_dashboard(page: Page, url: str, titles: list[str], settle_s: float = 30) -> dict[str, int]:
    """Open a dashboard, wait until every panel's title shows and the charts stop changing; what they plot."""
    page.goto(url, wait_until="networkidle")
    for title in titles:
        expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=60_000)
    deadline = time.monotonic() + settle_s
    readings = [plotted(page)]
    while len(readings) < 3 or readings[-1] != readings[-2] or readings[-2] != readings[-3]:
        assert time.monotonic() < deadline, f"the charts kept changing: {readings[-3:]}"
        time.sleep(0.5)
        readings.append(plotted(page))
    return readings[-1]


def shows_data(panels: dict[str, int]) -> bool:
    """Whether there are panels and every one of them plots something."""
    return bool(panels) and all(count > 0 for count in panels.values())


def test_every_panel_of_the_dashboard_plots_data(
    reported: MonitorConfig, dashboard: str, visit: Visit, tmp_path: Path
) -> None:
    titles = panel_titles(reported, reported.reports.project)
    assert len(titles) == 6
    panels = open_dashboard(visit.page, project_url(dashboard, reported.reports.project), titles)
    visit.page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    expect(visit.page).to_have_title(f"{reported.reports.project} · dashboard")  # not Evidently's demo
    assert sorted(panels) == sorted(titles)
    assert shows_data(panels), panels
    for version in read_log(reported.reports.log_url)["model_version"].unique().to_list():
        expect(visit.page.get_by_text(f"version {version}", exact=True)).to_be_visible()  # the one that served
    assert visit.problems == []


def test_a_project_without_snapshots_shows_empty_panels(reported: MonitorConfig, dashboard: str, visit: Visit) -> None:
    titles = panel_titles(reported, EMPTY_PROJECT)
    panels = open_dashboard(visit.page, project_url(dashboard, EMPTY_PROJECT), titles)
    assert sorted(panels) == sorted(titles)
    assert not shows_data(panels)
    assert set(panels.values()) == {0}
    assert visit.problems == []
