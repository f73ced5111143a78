"""A backend's connection pool for the synchronous ``turnout.OpenAI``: a blocking twin of its async one.

The router is async, and the sync client used to run it on one background
event loop: every call paid a hop to that thread and back, and the async
HTTP stack, which is slower than the sync one (figure 5 in BENCHMARKS.md).
Now a sync call runs the router on the calling thread (``turnout._portal``),
with :data:`INLINE` set; a backend whose HTTP client is an
:class:`InlineClient` then sends with the synchronous SDK client over that
client's synchronous twin (the same settings, its own connection pool, safe
from many threads), blocking the calling thread as a sync SDK call does.
Nothing else in the router changes: one routing code path for both clients.

A blocking send cannot be cut short by the event loop, so it is given the
request's remaining deadline as its timeout (:class:`BlockingClient`).
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any, Callable, Iterator

import httpx2
import openai

from ._base import remaining

__all__ = ["INLINE", "BlockingClient", "InlineClient", "readable_inline"]

INLINE: ContextVar[bool] = ContextVar("turnout_inline", default=False)
"""Set while the synchronous client runs the router on its own thread: send synchronously."""


class BlockingClient(openai.DefaultHttpxClient):
    """The SDK's default synchronous client, each request's timeouts cut to what is left of its deadline."""

    def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        _within_deadline(request)
        return super().send(request, **kwargs)


class InlineClient(openai.DefaultAsyncHttpxClient):
    """The SDK's default async client, with a synchronous twin (made on first use, closed with it)."""

    def __init__(self, twin: Callable[[], httpx2.Client], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._make_twin = twin
        self._twin: httpx2.Client | None = None
        self._lock = threading.Lock()

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


def readable_inline(response: httpx2.Response) -> httpx2.Response:
    """A blocking client's response, its body read by the router's async code (blocking, on this thread)."""
    response.stream = _AsyncBody(response.stream)
    return response


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
    """A synchronous response body read from the async SDK code on the calling thread's loop: an iterator
    object (an async generator would need closing, and a step of its own machinery for each chunk)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._chunks: Iterator[bytes] = iter(())
        self._open = True

    def __aiter__(self) -> _AsyncBody:
        self._chunks = iter(self._stream)
        return self

    async def __anext__(self) -> bytes:
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Once, though the relay closes it twice: as its source's iterator, then as its source."""
        if self._open:
            self._open = False
            self._stream.close()
