"""``python -m serving`` (``make serve``): the service on 127.0.0.1:8000, or as TABLOOP_SERVE_* / PORT say."""

from __future__ import annotations

import uvicorn

from serving.app import create_app
from serving.http import bounded_head_protocol
from serving.settings import ServeSettings
from tabloop.cli import entry_point
from tabloop.settings import from_environment


def main() -> None:
    """Load the champion and serve it until SIGTERM or Ctrl-C; requests being answered finish, the log is flushed."""
    with entry_point("serve"):
        settings = from_environment(ServeSettings)
        app = create_app(settings)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http=bounded_head_protocol(settings.max_header_bytes),
            access_log=False,
            timeout_graceful_shutdown=30,
            log_level="info",
        )


if __name__ == "__main__":
    main()
