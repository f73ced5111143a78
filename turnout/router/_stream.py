"""Streams: open them inside the retried call, and never replay one once it has started.

The router reads a stream's bytes up to its first event (the part that may
still be retried and failed over: a stream that ends or breaks before it,
or opens with an error event, is a failure like any other), then hands the
caller's SDK the same HTTP response, those bytes first. What breaks after
that is raised as :class:`~turnout.BrokenStreamError`: the events delivered
stay delivered, and no other backend's answer is glued to them.
"""

from __future__ import annotations

import json
import re
from typing import AsyncIterator, Callable, cast

import httpx2
import openai

from .._errors import BrokenStreamError

__all__ = ["open_stream", "first_event", "when_closed", "first_token"]


async def open_stream(response: httpx2.Response, backend: str, on_break: Callable[[], None]) -> httpx2.Response:
    """``response`` with its first SSE event read and checked; its body now relays the rest."""
    chunks = response.stream.__aiter__()  # type: ignore[union-attr]
    read: list[bytes] = []
    try:
        first = await _first_event(chunks, read, plain=response.headers.get("content-encoding") in (None, "identity"),
                                   backend=backend, request=response.request)
    except BaseException:
        await response.aclose()
        raise
    source = cast(httpx2.AsyncByteStream, response.stream)
    response.stream = _Relay(read, chunks, source, backend, response.request, on_break, first)
    return response


def first_event(response: httpx2.Response) -> bytes | None:
    """The data of the first event of a stream :func:`open_stream` opened (``None`` if compressed)."""
    stream = response.stream
    return stream.first if isinstance(stream, _Relay) else None


async def _first_event(chunks: AsyncIterator[bytes], read: list[bytes], *, plain: bool, backend: str,
                       request: httpx2.Request) -> bytes | None:
    """Read until the first event with data, and return that; a compressed body is taken as started
    at its first bytes."""
    pending = b""
    while True:
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            raise BrokenStreamError(f"backend {backend!r} ended the stream before its first event",
                                    request=request) from None
        except httpx2.TransportError as err:
            raise BrokenStreamError(f"backend {backend!r} broke the stream before its first event: "
                                    f"{type(err).__name__}: {err}", request=request) from err
        read.append(chunk)
        if not plain:
            return None
        pending = pending + chunk if pending else chunk
        data = _first_data(pending)
        if data is not None:
            _check_first(data, backend, request)
            return data


_END_OF_EVENT = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def _first_data(buffer: bytes) -> bytes | None:
    """The data of the first complete event that has any (comments before it are skipped); the rest of
    ``buffer``, often the whole stream from a fast server, is not even looked at."""
    start = 0
    for end in _END_OF_EVENT.finditer(buffer):
        event = buffer[start:end.start()].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
        if lines:
            return b"\n".join(lines)
        start = end.end()
    return None


def _check_first(data: bytes, backend: str, request: httpx2.Request) -> None:
    """``[DONE]`` first is an empty answer (llama.cpp does that on context overflow); an error event, a failure."""
    if data.strip() == b"[DONE]":
        raise BrokenStreamError(f"backend {backend!r} ended the stream before its first event", request=request)
    if b'"error"' not in data[:200]:  # a chunk, as nearly always: no need to parse it
        return
    try:
        body = json.loads(data)
    except ValueError:
        return
    if isinstance(body, dict) and body.get("error"):
        error = body["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise openai.APIError(f"backend {backend!r} opened the stream with an error: {message}", request, body=error)


def when_closed(response: httpx2.Response, callback: Callable[[], None]) -> None:
    """Call ``callback`` once when the response's stream is closed (read to its end by the SDK, or closed
    early by the caller): a stream is in flight, and its attempt lasts, until then."""
    stream = response.stream
    previous = stream.aclose  # type: ignore[union-attr]
    called = False

    async def aclose() -> None:
        nonlocal called
        if not called:
            called = True
            callback()
        await previous()

    stream.aclose = aclose  # type: ignore[union-attr,method-assign]


async def first_token(response: httpx2.Response) -> httpx2.Response:
    """``response`` (opened by :func:`open_stream`) with events read on until one carries output, for a
    hedge's race: a role-only first chunk is not yet an answer.

    A minimal local check (content, a tool call, a refusal, text, or anything that is not a chat
    chunk counts); issue 23's commit check in this module replaces it when it lands."""
    stream = response.stream
    if not isinstance(stream, _Relay) or stream.first is None:
        return response
    data: bytes | None = stream.first
    while data is not None and not _carries_output(data):
        data = await stream.next_event()
    return response


_NOT_YET = (b'"response.created"', b'"response.in_progress"', b'"response.output_item.added"',
            b'"response.content_part.added"')
"""Responses stream events that come before any output."""


def _carries_output(data: bytes) -> bool:
    if b'"response.' in data[:80]:
        return not any(event in data[:80] for event in _NOT_YET)
    if b'"delta"' not in data:
        return True
    try:
        body = json.loads(data)
    except ValueError:
        return True
    for choice in body.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("refusal") or delta.get("function_call"):
            return True
        if choice.get("finish_reason"):
            return True
    return not body.get("choices")


class _Relay(httpx2.AsyncByteStream):
    """The bytes already read, then the rest; a break after them is a :class:`BrokenStreamError`."""

    def __init__(self, read: list[bytes], chunks: AsyncIterator[bytes], source: httpx2.AsyncByteStream,
                 backend: str, request: httpx2.Request, on_break: Callable[[], None], first: bytes | None) -> None:
        self.first = first
        self._read = read
        self._chunks = chunks
        self._source = source
        self._backend = backend
        self._request = request
        self._on_break = on_break

    async def next_event(self) -> bytes | None:
        """Read on to the next event with data (kept for the caller, checked as a first event is) and return it."""
        return await _first_event(self._chunks, self._read, plain=True, backend=self._backend, request=self._request)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        read, self._read = self._read, []
        for chunk in read:
            yield chunk
        delivered = len(read)
        while True:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                return
            except BrokenStreamError:
                self._on_break()
                raise
            except (httpx2.TransportError, openai.APIError) as err:
                self._on_break()
                raise BrokenStreamError(
                    f"stream from backend {self._backend!r} broke after {delivered} chunk(s): "
                    f"{getattr(err, 'message', None) or f'{type(err).__name__}: {err}'}; not replayed on another backend",
                    request=self._request, chunks=delivered) from err
            delivered += 1
            yield chunk

    async def aclose(self) -> None:
        await self._source.aclose()
