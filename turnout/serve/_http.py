"""uvicorn's HTTP protocol with what a public server needs and uvicorn leaves out.

- Its own refusals in OpenAI's error shape: a request uvicorn cannot parse
  (a header over h11's 16 kB, a ``Content-Length`` that is not a number) is
  a JSON 400, and a connection over ``TURNOUT_SERVE_MAX_CONNECTIONS`` a JSON
  503, where uvicorn writes plain text.
- Time limits on reading a request: its headers within
  ``TURNOUT_SERVE_HEADER_TIMEOUT`` of its first byte (of the connection, for
  the first request), its body within ``TURNOUT_SERVE_BODY_TIMEOUT`` of its
  headers. A caller too slow is answered 408 and the connection closed; a
  slow client cannot hold a connection as long as it likes. (Between requests,
  uvicorn's keep-alive timeout closes an idle connection.)
"""

from __future__ import annotations

import asyncio
import http
import json
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http import h11_impl
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # the serve extra's faster parser (uvicorn's own choice too, when installed)
    from uvicorn.protocols.http import httptools_impl
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is in the serve extra
    httptools_impl = None  # type: ignore[assignment]

from ._wire import BACKEND_HEADER, NO_BACKEND

__all__ = ["Protocol", "protocol", "HEADER_TIMEOUT", "BODY_TIMEOUT"]

_MAX_HEAD = 16 * 1024
"""Bytes a request's line and headers may take (h11's own limit; httptools has none)."""

_LINGER = 1.0
"""Seconds a refused caller's remaining bytes are read and dropped before its connection closes."""

HEADER_TIMEOUT = "turnout_header_timeout"
BODY_TIMEOUT = "turnout_body_timeout"
"""Attributes of the ``uvicorn.Config`` the protocol reads its limits from (they travel to ``--workers``)."""


def _error(status: int, message: str, code: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (BACKEND_HEADER.encode(), NO_BACKEND.encode()),
    ], body


async def _busy(scope: Scope, receive: Receive, send: Send) -> None:
    """uvicorn's answer at ``limit_concurrency``, in OpenAI's shape."""
    headers, body = _error(
        503,
        "This server has as many connections open as it accepts (TURNOUT_SERVE_MAX_CONNECTIONS); try again shortly.",
        "server_busy",
    )
    await send({"type": "http.response.start", "status": 503, "headers": [*headers, (b"retry-after", b"1")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


h11_impl.service_unavailable = _busy  # type: ignore[assignment,attr-defined]  # the one app uvicorn answers with over the cap
if httptools_impl is not None:
    httptools_impl.service_unavailable = _busy  # type: ignore[assignment,attr-defined]


class _Guarded:
    """What turnout adds to uvicorn's HTTP protocols: its own errors as JSON, and timing how a request is read.

    A mixin over either of uvicorn's parsers (:func:`protocol` picks), so both behave alike."""

    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    logger: Any

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)  # type: ignore[call-arg]
        self._head: int | None = 0  # bytes of the request head read so far; None once its headers are in
        self._header_timeout: float = getattr(config, HEADER_TIMEOUT, 10.0)
        self._body_timeout: float = getattr(config, BODY_TIMEOUT, 120.0)
        self._timer: asyncio.TimerHandle | None = None
        self._seen: Any = None  # the request cycle whose headers were last timed
        self._draining = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm(self._header_timeout, "headers")

    def data_received(self, data: bytes) -> None:
        if self._draining:  # answered and closing: what still arrives is read and dropped
            return
        if self._head is not None:
            self._head += len(data)
        super().data_received(data)  # type: ignore[misc]
        self._track()
        if self._head is not None and self._head > _MAX_HEAD and not self._draining:  # headers still to come
            self.send_400_response("headers too large")  # bounded as h11 bounds them (httptools does not)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _track(self) -> None:
        """After each read: a request whose headers just came in is timed for its body; a finished body
        stops the clock; the first bytes of a next request start it again."""
        cycle: Any = self.cycle
        if cycle is not None and cycle is not self._seen:
            self._seen = cycle
            self._head = None
            self._disarm()
            if cycle.more_body:
                self._arm(self._body_timeout, "body")
        elif cycle is not None and not cycle.more_body and not cycle.response_complete:
            self._disarm()
        elif (cycle is None or cycle.response_complete) and self._timer is None:
            self._head = 0
            self._arm(self._header_timeout, "headers")

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._too_slow, what, seconds)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self, what: str, seconds: float) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        variable = "TURNOUT_SERVE_HEADER_TIMEOUT" if what == "headers" else "TURNOUT_SERVE_BODY_TIMEOUT"
        self.logger.info("a caller took over %gs to send a request's %s: connection closed", seconds, what)
        if self.cycle is None or not self.cycle.response_started:
            self._answer(
                408, f"The request's {what} did not arrive within {seconds:g}s ({variable}).", "request_timeout"
            )
        else:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        self._answer(
            400,
            "Invalid HTTP request received: it is malformed, or its headers are larger than this server accepts.",
            "invalid_http_request",
        )

    def _answer(self, status: int, message: str, code: str) -> None:
        """An error written straight to the connection (which closes after it), whatever h11's state."""
        headers, body = _error(status, message, code)
        head = f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(head + b"\r\n" + body)
        self._close_gently()

    def _close_gently(self) -> None:
        """Close after an answer the caller has not finished sending its request for. Closed at once, the
        unread bytes would make the kernel reset the connection, and the caller might never read the answer:
        so the sending side is closed, what still arrives is dropped, and the connection closes for good
        when the caller closes its side, or after a second."""
        self._draining = True
        self._disarm()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER, self.transport.close)

    def eof_received(self) -> None:
        if self._draining:
            self.transport.close()
        super().eof_received()  # type: ignore[misc]


class Protocol(_Guarded, H11Protocol):
    """uvicorn's h11 protocol (pure Python), guarded."""


def protocol() -> type:
    """uvicorn's fastest HTTP protocol installed, guarded: httptools' (C, the serve extra's), else h11's."""
    if httptools_impl is None:
        return Protocol
    return _FastProtocol


if httptools_impl is not None:

    class _FastProtocol(_Guarded, HttpToolsProtocol):
        """uvicorn's httptools protocol, guarded."""
