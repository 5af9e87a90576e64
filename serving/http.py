"""uvicorn's httptools protocol with a bound on the request head (request line and headers): 431 past it.

httptools buffers a header of any size before the application sees it, so a client sending a few huge headers makes
the process hold hundreds of megabytes. This protocol counts the bytes of each request's head as they arrive and
answers 431 and closes the connection as soon as they pass the bound, before the parser has buffered them.
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_END = b"\r\n\r\n"


def bounded_head_protocol(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.run(http=...)`` that refuses request heads over ``max_head_bytes``."""

    class BoundedHeadProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
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
                if self._head_bytes > max_head_bytes:
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
                        "message": f"the request line and headers exceed {max_head_bytes} bytes",
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

    return BoundedHeadProtocol
