"""``python -m serving`` (``make serve``): the service on 127.0.0.1:8000, or as TABLOOP_SERVE_* / PORT say.

With ``TABLOOP_SERVE_WORKERS`` above 1 (``make serve WORKERS=n``), uvicorn's own multi-process mode: this process
binds the port and supervises n workers, each of which builds the app from the environment
(``serving.app:create_worker_app``), loads and watches the model on its own, and writes the prediction log's
journal of its own into the one shared log.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal, TypedDict

import uvicorn

from serving.app import create_app, open_log
from serving.http import PROTOCOL
from serving.settings import ServeSettings
from tabloop.commands.boundary import entry_point
from tabloop.settings import from_environment


class UvicornOptions(TypedDict):
    """What ``uvicorn.run`` is given besides the app, the same with one worker or several."""

    host: str
    port: int
    loop: Literal["uvloop"]
    http: str
    h11_max_incomplete_event_size: int
    access_log: bool
    timeout_graceful_shutdown: int
    log_level: str


WORKER_APP = "serving.app:create_worker_app"
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client in each worker when it is imported


def main() -> None:
    """Load the champion and serve it until SIGTERM or Ctrl-C; requests being answered finish, the log is flushed."""
    with entry_point("serve"):
        settings = from_environment(ServeSettings)
        options: UvicornOptions = {
            "host": settings.host,
            "port": settings.port,
            "loop": "uvloop",
            "http": PROTOCOL,
            "h11_max_incomplete_event_size": settings.max_header_bytes,  # the bound of BoundedHeadProtocol
            "access_log": False,
            "timeout_graceful_shutdown": 30,
            "log_level": "info",
        }
        if settings.workers == 1:
            uvicorn.run(create_app(settings), **options)
        else:
            serve_workers(settings, options)


def serve_workers(settings: ServeSettings, options: UvicornOptions) -> None:
    """Serve with ``settings.workers`` processes on one port until SIGTERM or Ctrl-C."""
    # The log's tables are made, and the journals of processes that died are loaded, once, before workers race to.
    asyncio.run(open_log(settings).close())
    metrics_dir = Path(tempfile.mkdtemp(prefix="tabloop-serve-metrics-"))  # fresh: no counts of an earlier run
    os.environ[METRICS_DIR_VARIABLE] = str(metrics_dir)
    try:
        uvicorn.run(WORKER_APP, factory=True, workers=settings.workers, **options)
    finally:
        os.environ.pop(METRICS_DIR_VARIABLE, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
