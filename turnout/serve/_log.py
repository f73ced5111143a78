"""One access line per request on the ``turnout.serve`` logger, and where the server's logs go.

    POST /v1/chat/completions 200 good 41.7ms $0.000213
    POST /v1/chat/completions 200 good 1804.2ms $0.000951 stream
    POST /v1/chat/completions 200 good 1804.2ms stream, client left
    POST /v1/chat/completions 499 - 912.0ms client left

The path is logged without its query string, headers never: neither can
then carry a key into the log. Every line, tracebacks included, passes
through the :class:`~turnout.serve._scrub.Scrubber` before it is written.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..telemetry import COST_HEADER
from ._wire import BACKEND_HEADER, NO_BACKEND

__all__ = ["AccessLog", "HttpMiddleware", "log", "setup", "narrate", "NOTE"]

log = logging.getLogger("turnout.serve")

NOTE = "turnout.note"
"""A scope key a handler sets to add a word to the access line (``stream, client left``)."""

COST = "turnout.cost"
"""A scope key a stream's relay sets to its cost (the ``x-turnout-cost`` value) once known: after its headers."""

_HEADER = BACKEND_HEADER.encode()
_COST = COST_HEADER.encode()

_LEFT = 499
"""The status logged when nothing was sent: the caller left first (nginx's word for it)."""


class HttpMiddleware:
    """ASGI middleware that acts on HTTP requests (``http``); anything else (the lifespan) passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class AccessLog(HttpMiddleware):
    """ASGI middleware: method, path, status, backend and latency once the answer is complete."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 0
        backend = NO_BACKEND
        cost = ""

        async def sending(message: Message) -> None:
            nonlocal status, backend, cost
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers", ()))
                backend = headers[_HEADER].decode("latin-1") if _HEADER in headers else NO_BACKEND
                cost = _cost_text(headers.get(_COST, b"").decode("latin-1"))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            note = scope.get(NOTE)
            cost = cost or _cost_text(scope.get(COST) or "")
            log.info(
                "%s %s %d %s %.1fms%s%s",
                scope["method"],
                scope["path"],
                status or _LEFT,
                backend,
                (time.perf_counter() - start) * 1000,
                cost,
                f" {note}" if note else "",
            )


class _Scrubbing(logging.Formatter):
    def __init__(self, scrub: Callable[[str], str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        return self._scrub(super().format(record))


_QUIET = ("turnout", "uvicorn.error")
"""Warnings and errors only, unless :func:`narrate`: the router's info lines are one per retry and failover."""


def _cost_text(text: str) -> str:
    """`` $0.000213``, `` cost unknown`` (no price), or nothing (no usage, or a stream's not in yet)."""
    if not text:
        return ""
    return " cost unknown" if text == "unknown" else f" ${text}"


def setup(scrub: Callable[[str], str]) -> None:
    """The server's log on stderr, scrubbed: access lines, turnout's and uvicorn's warnings and errors.

    Once per process (a ``--workers`` process sets up its own): the first scrubber stays."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Scrubbing(scrub))
    for name in ("turnout.serve", *_QUIET):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO if name == "turnout.serve" else logging.WARNING)
        logger.propagate = False


def narrate() -> None:
    """``turnout serve -v``: also the router's retries and failovers, and uvicorn's own notes."""
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.INFO)
