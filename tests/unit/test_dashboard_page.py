"""The dashboard's page is retitled for the project; everything else reaches Evidently's application unchanged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from evidently.ui.service.api import static

from monitoring.dashboard import Receive, Scope, Send, page, titled

STOCK = (Path(static.BASE_PATH) / "index.html").read_text(encoding="utf-8")


async def evidently_stand_in(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers every request with its own path, as plain text."""
    body = f"app saw {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def get(path: str, index: bytes) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=titled(evidently_stand_in, index))
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
            return await client.get(path)

    return asyncio.run(call())


def test_the_page_names_the_project_not_evidentlys_demo() -> None:
    assert "toy dataset" in STOCK  # what Evidently ships, and what this replaces
    index = page(STOCK, "loans <monitoring> · dashboard", "Drift of loans")
    text = index.decode()
    assert "<title>loans &lt;monitoring&gt; · dashboard</title>" in text
    assert 'content="Drift of loans"' in text
    assert "toy dataset" not in text
    assert "Demo" not in text.split("<body", 1)[0]
    assert text.count("<script") == STOCK.count("<script")  # the app's scripts are all still there


def test_page_routes_get_the_page_and_the_rest_reaches_the_app() -> None:
    index = page(STOCK, "loans · dashboard", "Drift of loans")
    for path in ("/", "/projects/0193", "/projects/0193/reports"):
        answer = get(path, index)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html"), path
        assert answer.content == index
    for path in ("/api/projects", "/static/js/index.js", "/projects/0193/logo.png", "/favicon.ico"):
        assert get(path, index).text == f"app saw {path}"
