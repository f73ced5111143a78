"""Streams: open them inside the retried call, commit them at their first real token, and never pass
a stream that stopped short for a whole one.

The router reads a stream's events up to the first one the caller can use
(:func:`usable`: content, a tool call, a refusal, reasoning, audio, a finish,
or a Responses output event). Until then the stream may still be retried and
failed over: one that ends, breaks, stalls past the first-token limit, or
opens with an error event, is a failure like any other. Then the caller's SDK
gets the same HTTP response, the held-back bytes first, so it sees the events
a direct stream gives. From there on the stream is the caller's: what breaks
is raised as :class:`~turnout.BrokenStreamError` (the events delivered stay
delivered, and no other backend's answer is glued to them), and so is a body
that ends cleanly without saying it is whole (a finish reason, ``[DONE]``,
the Responses API's terminal event, or a transcription's ``transcript.text.done``).
"""

from __future__ import annotations

import json
import re
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Optional, cast

import httpx2
import openai

from .._errors import BrokenStreamError

__all__ = ["open_stream", "usable", "when_closed"]

_OPENING_EVENTS = frozenset({"response.created", "response.in_progress", "response.queued"})
"""Responses events that say a response exists, but nothing of it yet."""


def usable(data: bytes | str) -> bool:
    """Does one SSE event's data carry something the caller can use: the stream's first real token?

    A chat or completions chunk does when a choice has a finish reason or a delta field other than the
    role with a value (content, tool calls, refusal, reasoning, audio ...), or legacy ``text``; a
    role-only, empty or usage-only chunk does not. A Responses event does unless it only announces the
    response (``response.created``, ``.in_progress``, ``.queued``). Data that is not a JSON object is
    left for the caller's SDK to judge.
    """
    if _CONTENT.search(data if isinstance(data, bytes) else data.encode()):  # a chat chunk with text, as most are
        return True
    try:
        event = json.loads(data)
    except ValueError:
        return True
    if not isinstance(event, dict):
        return True
    kind = event.get("type")
    if isinstance(kind, str):
        return kind not in _OPENING_EVENTS
    return any(_carries(choice) for choice in event.get("choices") or () if isinstance(choice, dict))


_CONTENT = re.compile(rb'"delta"\s*:\s*\{[^{}]*"content"\s*:\s*"[^"]')
"""A delta whose own ``content`` is a string that is not empty (no ``{`` between: the key is the delta's)."""


def _carries(choice: dict[str, Any]) -> bool:
    if choice.get("finish_reason") or choice.get("text"):
        return True
    delta = choice.get("delta")
    return isinstance(delta, dict) and any(value for key, value in delta.items() if key != "role")


OnEnd = Callable[[str, Optional[BaseException]], Awaitable[None]]
"""Told how a committed stream ended: ``whole``, ``broken`` (with the error) or ``closed`` by the caller first."""


async def open_stream(
    response: httpx2.Response, backend: str, on_break: Callable[[], None], on_end: OnEnd | None = None
) -> httpx2.Response:
    """``response`` read up to its first real token and checked; its body now relays everything."""
    chunks = response.stream.__aiter__()  # type: ignore[union-attr]
    read: list[bytes] = []
    try:
        first = await _until_usable(
            chunks,
            read,
            plain=response.headers.get("content-encoding") in (None, "identity"),
            backend=backend,
            request=response.request,
        )
    except BaseException:
        await response.aclose()
        raise
    source = cast(httpx2.AsyncByteStream, response.stream)
    response.stream = _Relay(read, chunks, source, backend, response.request, on_break, first, on_end)
    return response


async def _until_usable(
    chunks: AsyncIterator[bytes], read: list[bytes], *, plain: bool, backend: str, request: httpx2.Request
) -> bytes | None:
    """Read until an event the caller can use, and return the first event's data; a compressed body is
    taken as started at its first bytes."""
    pending = b""
    first: bytes | None = None
    while True:
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            raise BrokenStreamError(
                f"backend {backend!r} ended the stream before its first token", request=request
            ) from None
        except httpx2.TransportError as err:
            raise BrokenStreamError(
                f"backend {backend!r} broke the stream before its first token: {type(err).__name__}: {err}",
                request=request,
            ) from err
        read.append(chunk)
        if not plain:
            return None
        pending = pending + chunk if pending else chunk
        done = 0
        for data, done in _events(pending):  # noqa: B007  (its last value is used below)
            _check(data, backend, request)
            first = data if first is None else first
            if usable(data):
                return first
        pending = pending[done:]


_END_OF_EVENT = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def _events(buffer: bytes) -> Iterator[tuple[bytes, int]]:
    """The data of each complete event in ``buffer`` that has any (comments are skipped), with where the
    event ends; lazily, so the rest of a buffer (often the whole stream, from a fast server) is not read."""
    start = 0
    for end in _END_OF_EVENT.finditer(buffer):
        event = buffer[start : end.start()].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        start = end.end()
        lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
        if lines:
            yield b"\n".join(lines), start


def _check(data: bytes, backend: str, request: httpx2.Request) -> None:
    """``[DONE]`` before a token is an empty answer (llama.cpp does that on context overflow); an error
    event, a failure."""
    if data.strip() == b"[DONE]":
        raise BrokenStreamError(f"backend {backend!r} ended the stream before its first token", request=request)
    if b'"error"' not in data[:200]:  # a chunk, as nearly always: no need to parse it
        return
    try:
        body = json.loads(data)
    except ValueError:
        return
    if isinstance(body, dict) and (body.get("error") or body.get("type") == "error"):
        error = body.get("error") or body
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


_FINISHED = re.compile(rb'"finish_reason"\s*:\s*"')  # a literal first: re scans for it fast
_DONE = re.compile(rb"[\r\n]data:\s?\[DONE\]")
_TERMINAL = re.compile(
    rb'"type"\s*:\s*"(?:response\.(?:completed|incomplete|failed)|transcript\.text\.done'
    rb'|image_generation\.completed)"'
)


def _says_whole(window: bytes) -> bool:
    """Does ``window`` say the stream is whole: a finish reason (a string, not ``null``) last, ``[DONE]``, or a
    terminal event (the Responses API's, a streamed transcription's or image's)? None of these can occur inside a JSON string (its quotes and line breaks are
    escaped), so a model's text cannot fake one. This runs on every chunk: the rarer markers are looked
    for only where a plain ``in`` finds them."""
    at = window.rfind(b'"finish_reason"')  # the last one: each chunk before it says null, in a long window
    return (
        (at >= 0 and _FINISHED.match(window, at) is not None)
        or (b"[DONE]" in window and _DONE.search(window) is not None)
        or (b'"type"' in window and _TERMINAL.search(window) is not None)
    )


_OVERLAP = 64
"""Bytes of the previous chunk searched again, for a marker cut between two chunks."""


class _Relay(httpx2.AsyncByteStream):
    """The bytes already read, then the rest; a break after them, or an end that does not say the stream is
    whole, is a :class:`BrokenStreamError`.

    ``first`` is the data of the first event (``None`` if compressed), for whoever reads what a stream
    made before its caller does (``turnout.responses`` remembers the id of a response it opens with)."""

    def __init__(
        self,
        read: list[bytes],
        chunks: AsyncIterator[bytes],
        source: httpx2.AsyncByteStream,
        backend: str,
        request: httpx2.Request,
        on_break: Callable[[], None],
        first: bytes | None,
        on_end: OnEnd | None = None,
    ) -> None:
        self.first = first
        self._on_end = on_end
        self._read = read
        self._chunks = chunks
        self._source = source
        self._backend = backend
        self._request = request
        self._on_break = on_break
        self._whole = first is None  # a compressed body cannot be looked into: trusted as before
        self._tail = b"\n"
        self._delivered = len(read)
        self._unlooked: bytes | None = None

    def __aiter__(self) -> _Relay:
        """Each chunk is looked into after the caller has it, so nothing waits for that: when the caller asks
        for the next, or iterates again (the SDK stops at ``[DONE]``, then drains the body anew: it goes on
        where the first iteration stopped). An iterator object, not an async generator: nothing is left for
        the garbage collector to close on the loop (the loop's finalizer would make a task of each)."""
        self._catch_up()
        return self

    async def __anext__(self) -> bytes:
        self._catch_up()
        if self._read:
            chunk = self._unlooked = self._read.pop(0)
            return chunk
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            if self._whole:
                await self._ended("whole", None)
                raise
            self._on_break()
            ended = BrokenStreamError(
                f"stream from backend {self._backend!r} ended after {self._delivered} chunk(s) without saying it was "
                "complete (no finish reason, [DONE] or final event); not replayed on another backend",
                request=self._request,
                chunks=self._delivered,
            )
            await self._ended("broken", ended)
            raise ended from None
        except BrokenStreamError as err:
            self._on_break()
            await self._ended("broken", err)
            raise
        except (httpx2.TransportError, openai.APIError) as err:
            self._on_break()
            broken = BrokenStreamError(
                f"stream from backend {self._backend!r} broke after {self._delivered} chunk(s): "
                f"{getattr(err, 'message', None) or f'{type(err).__name__}: {err}'}; not replayed on another backend",
                request=self._request,
                chunks=self._delivered,
            )
            await self._ended("broken", broken)
            raise broken from err
        self._delivered += 1
        self._unlooked = chunk
        return chunk

    def _catch_up(self) -> None:
        chunk, self._unlooked = self._unlooked, None
        if chunk is not None:
            self._look(chunk)

    def _look(self, chunk: bytes) -> None:
        """Note whether the stream has said it is whole (once it has, nothing more is searched)."""
        if self._whole:
            return
        window = self._tail + chunk
        if _says_whole(window):
            self._whole = True
        else:
            self._tail = window[-_OVERLAP:]

    async def _ended(self, reason: str, error: BaseException | None) -> None:
        on_end, self._on_end = self._on_end, None  # told once
        if on_end is not None:
            await on_end(reason, error)

    async def aclose(self) -> None:
        await self._ended("closed", None)
        close = getattr(self._chunks, "aclose", None)  # the source's own iterator, closed now, not collected
        if close is not None:
            try:
                await close()
            except RuntimeError:  # being read by another task right now: closing the source ends it
                pass
        await self._source.aclose()
