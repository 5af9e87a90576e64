"""uvicorn's httptools protocol with a bound on the request head (request line and headers): 431 past it.

httptools buffers a header of any size before the application sees it, so a client sending a few huge headers makes
the process hold hundreds of megabytes. This protocol counts the bytes of each request's head as they arrive and
answers 431 and closes the connection as soon as they pass the bound, before the parser has buffered them.

The bound is uvicorn's own setting for it, ``h11_max_incomplete_event_size`` (which only its h11 protocol enforces),
so the class can be named by an import string (``serving.http:BoundedHeadProtocol``): uvicorn's worker processes
receive their configuration pickled, and a class made inside a function cannot be.
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_END = b"\r\n\r\n"
DEFAULT_HEAD_BYTES = 32_768
PROTOCOL = "serving.http:BoundedHeadProtocol"


class BoundedHeadProtocol(HttpToolsProtocol):
    """Refuses request heads over ``max_head_bytes``: the class's if set, else uvicorn's
    ``h11_max_incomplete_event_size``, else 32 KiB."""

    max_head_bytes: int | None = None

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._max_head_bytes = self.max_head_bytes or config.h11_max_incomplete_event_size or DEFAULT_HEAD_BYTES
        self._in_head = True
        self._head_bytes = 0
        self._tail = b""  # the last bytes seen, for an end of head split across two reads
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            end = (self._tail + data).find(HEAD_END)
            self._head_bytes += len(data) if end < 0 else max(0, end + len(HEAD_END) - len(self._tail))
            if self._head_bytes > self._max_head_bytes:
                self._refuse()
                return
            self._tail = data[-(len(HEAD_END) - 1) :]
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._tail = True, 0, b""

    def _refuse(self) -> None:
        body = orjson.dumps(
            {
                "error": {
                    "code": "headers_too_large",
                    "message": f"the request line and headers exceed {self._max_head_bytes} bytes",
                    "details": [],
                }
            }
        )
        head = (
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self._refused = True
        self.transport.write(head.encode() + body)
        self.transport.close()


def bounded_head_protocol(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` that refuses request heads over ``max_head_bytes``."""
    return type("BoundedHeadProtocol", (BoundedHeadProtocol,), {"max_head_bytes": max_head_bytes})
