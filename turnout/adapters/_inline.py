"""A backend's HTTP client that can also send synchronously, for the synchronous ``turnout.OpenAI``.

The router is async, and the sync client used to run it on one background
event loop: every call paid a hop to that thread and back, and the async
HTTP stack, which is slower than the sync one (figure 5 in BENCHMARKS.md).
Now a sync call runs the router on a loop of the calling thread's own
(``turnout._portal``), with :data:`INLINE` set; a backend whose client is an
:class:`InlineClient` then sends on a synchronous twin of that client (the
same settings, its own connection pool, safe from many threads), blocking
that thread's private loop as a sync SDK call blocks its thread. Nothing
else in the router changes: one routing code path for both clients.

A blocking send cannot be cut short by the event loop, so it is given the
request's remaining deadline as its timeout.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any, AsyncIterator, Callable

import httpx2
import openai

from ._base import remaining

__all__ = ["INLINE", "InlineClient"]

INLINE: ContextVar[bool] = ContextVar("turnout_inline", default=False)
"""Set while the synchronous client runs the router on its own thread's loop: send synchronously."""


class InlineClient(openai.DefaultAsyncHttpxClient):
    """The SDK's default async client, sending on a synchronous twin (made on first use) when :data:`INLINE`."""

    def __init__(self, twin: Callable[[], httpx2.Client], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._make_twin = twin
        self._twin: httpx2.Client | None = None
        self._lock = threading.Lock()

    async def send(self, request: httpx2.Request, *, stream: bool = False, **kwargs: Any) -> httpx2.Response:
        if not INLINE.get():
            return await super().send(request, stream=stream, **kwargs)
        if not isinstance(request.stream, httpx2.SyncByteStream):  # an async body (an upload's iterator)
            await request.aread()
            request.stream = httpx2.ByteStream(request.content)
        _within_deadline(request)
        response = self.twin().send(request, stream=stream, **kwargs)
        response.stream = _AsyncBody(response.stream)
        return response

    def twin(self) -> httpx2.Client:
        twin = self._twin
        if twin is None:
            with self._lock:
                if self._twin is None:
                    self._twin = self._make_twin()
                twin = self._twin
        return twin

    async def aclose(self) -> None:
        if self._twin is not None:
            self._twin.close()
        await super().aclose()


def _within_deadline(request: httpx2.Request) -> None:
    """Each of the request's timeouts cut to what is left of its deadline (the loop cannot cut a blocking send)."""
    left = remaining()
    if left is None:
        return
    left = max(left, 0.001)
    timeouts = request.extensions.get("timeout") or {}
    request.extensions["timeout"] = {
        kind: left if seconds is None else min(seconds, left)
        for kind, seconds in {**dict.fromkeys(("connect", "read", "write", "pool")), **timeouts}.items()
    }


class _AsyncBody(httpx2.AsyncByteStream):
    """A synchronous response body read from the async SDK code on the calling thread's loop."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        self._stream.close()
