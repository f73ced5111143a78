"""A routed stream: behaves like the SDK's ``AsyncStream[ChatCompletionChunk]``.

The router opened it and read its first chunk inside one retried call, so
everything that can fail over already has. What fails after that is raised
as :class:`~turnout.BrokenStreamError`: the chunks delivered stay delivered
and nothing is replayed on another backend, where the caller would see a
second, different answer glued to the first.
"""

from __future__ import annotations

from types import TracebackType
from typing import AsyncIterator, Callable, Optional

import openai
from openai.types.chat import ChatCompletionChunk

from .._errors import BrokenStreamError, synthetic_request

__all__ = ["RoutedStream"]


class RoutedStream:
    """Async-iterate it, ``async with`` it, ``close()`` it; ``backend`` names who serves it."""

    def __init__(
        self,
        chunks: AsyncIterator[ChatCompletionChunk],
        first: ChatCompletionChunk,
        backend: str,
        on_break: Callable[[BaseException], None] = lambda err: None,
    ) -> None:
        self.backend = self._turnout_backend = backend
        self._chunks = chunks
        self._first: Optional[ChatCompletionChunk] = first
        self._delivered = 0
        self._done = False
        self._on_break = on_break

    def __aiter__(self) -> RoutedStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._first is not None:
            chunk, self._first = self._first, None
        elif self._done:
            raise StopAsyncIteration
        else:
            chunk = await self._next()
        self._delivered += 1
        return chunk

    async def _next(self) -> ChatCompletionChunk:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            self._done = True
            raise
        except openai.APIError as err:
            self._done = True
            self._on_break(err)
            raise self._broken(err) from err

    def _broken(self, err: openai.APIError) -> BrokenStreamError:
        message = (f"stream from backend {self.backend!r} broke after {self._delivered} chunk(s): "
                   f"{getattr(err, 'message', err)}; not replayed on another backend")
        request = getattr(err, "request", None) or synthetic_request()
        return BrokenStreamError(message, request=request, chunks=self._delivered)

    async def close(self) -> None:
        """Stop reading and release the connection."""
        self._done = True
        self._first = None
        await self._chunks.aclose()  # type: ignore[attr-defined]

    aclose = close

    async def __aenter__(self) -> RoutedStream:
        return self

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"RoutedStream(backend={self.backend!r}, delivered={self._delivered})"
