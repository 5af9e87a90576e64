"""The API console as a person sees it offline: Swagger UI and ReDoc in headless Chromium, no request leaves.

Run by ``make test-ui`` (``pytest -m ui``) with Debian's chromium; the pages' scripts and styles come from the
service itself, so a machine without internet shows every operation.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from chromium import Visit
from helpers import running_service
from serving.settings import ServeSettings

pytestmark = pytest.mark.ui


@pytest.fixture
def service(serve_settings: ServeSettings, registry_store: tuple) -> Iterator[str]:
    with running_service(serve_settings, registry_store[0]) as url:
        yield url


def open_page(browser: Browser, url: str, path: str) -> Visit:
    visit = Visit(browser.new_context(viewport={"width": 1400, "height": 1000}).new_page(), url)
    visit.watch()
    visit.page.goto(f"{url}{path}")
    return visit


def test_swagger_ui_shows_every_operation_offline(browser: Browser, service: str) -> None:
    visit = open_page(browser, service, "/docs")
    paths = visit.page.locator(".opblock-summary-path")
    expect(paths.first).to_be_visible(timeout=30_000)
    shown = set(paths.all_inner_texts())
    assert {"/predict", "/invocations", "/feedback", "/v2/models/{name}/infer", "/health/ready"} <= {
        p.replace("\u200b", "") for p in shown
    }
    assert not visit.problems, visit.problems


def test_redoc_shows_the_api_offline(browser: Browser, service: str) -> None:
    # The summary is written from the contract (the target's and the entity's names).
    summary = httpx.get(f"{service}/openapi.json", timeout=10).json()["paths"]["/predict"]["post"]["summary"]
    assert summary.startswith("Predict ")
    visit = open_page(browser, service, "/redoc")
    expect(visit.page.get_by_text(summary).first).to_be_attached(timeout=30_000)
    expect(visit.page.get_by_alt_text("redocly logo")).to_be_visible()  # its logo, served locally
    assert not visit.problems, visit.problems
