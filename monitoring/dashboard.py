"""``make dashboard``: the Evidently UI over this dataset's monitoring workspace, under the project's own title.

Evidently's UI ships one page for every route of its single-page app, titled as its hosted demo ("a demand
forecasting model on a toy dataset"); a browser tab or a bookmark of this dashboard should name the project instead.
:func:`titled` answers the page's routes with that page retitled and passes everything else (the API, the scripts)
to Evidently's own application.
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def page(stock: str, title: str, description: str) -> bytes:
    """Evidently's ``index.html`` with ``title`` and ``description`` in place of the demo's."""
    text = re.sub(r"<title>.*?</title>", f"<title>{html.escape(title)}</title>", stock, count=1, flags=re.S)
    text = re.sub(
        r'(<meta\s+name="description"\s+content=")[^"]*(")',
        lambda m: m.group(1) + html.escape(description) + m.group(2),
        text,
        count=1,
    )
    return text.encode("utf-8")


def titled(app: App, index: bytes) -> App:
    """``app`` with its page routes (``/`` and ``/projects/...``, as Evidently routes them) answered by ``index``."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") and _is_page(path):
            headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(index)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else index})
            return
        await app(scope, receive, send)

    return wrapped


def _is_page(path: str) -> bool:
    return path == "/" or (path.startswith("/projects/") and "." not in path.rsplit("/", 1)[-1])


def serve(workspace: Path, project: str, port: int) -> None:
    """Run the dashboard on 127.0.0.1:``port`` until interrupted."""
    import uvicorn
    from evidently.ui.service.api import static
    from evidently.ui.service.app import create_app, get_config

    stock = (Path(static.BASE_PATH) / "index.html").read_text(encoding="utf-8")
    index = page(stock, f"{project} · dashboard", f"Drift and quality reports of {project}, from its replayed traffic.")
    app = create_app(get_config(host="127.0.0.1", port=port, workspace=str(workspace)))
    uvicorn.run(titled(app, index), host="127.0.0.1", port=port, log_level="warning")
