"""What an answer says about itself: id, model, finish reasons and token usage, read off its JSON or its stream.

The wire format is OpenAI's for every backend (the Ollama adapter speaks it too): chat completions,
legacy completions, embeddings, and the Responses API, whose stream ends with ``response.completed``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Optional

import httpx2

__all__ = ["Facts", "facts_of", "StreamWatch"]


@dataclass
class Facts:
    """One answer's facts; tokens are ``None`` where the answer did not say."""

    response_id: Optional[str] = None
    model: Optional[str] = None
    finish_reasons: list[str] = field(default_factory=list)
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    cached_tokens: Optional[int] = None
    reasoning_tokens: Optional[int] = None
    usage: Optional[dict[str, Any]] = None
    """The answer's usage object as sent (priced with genai-prices' own reading of it)."""

    def take(self, body: Any) -> None:
        """Fold in one JSON answer or stream event."""
        if not isinstance(body, dict):
            return
        if isinstance(body.get("response"), dict):  # a Responses stream event: the response so far
            body = body["response"]
        if isinstance(body.get("id"), str):
            self.response_id = body["id"]
        if isinstance(body.get("model"), str):
            self.model = body["model"]
        for choice in body.get("choices") or ():
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if isinstance(reason, str):
                self.finish_reasons.append(reason)
        if body.get("object") == "response" and isinstance(body.get("status"), str) and body["status"] != "in_progress":
            self.finish_reasons = [body["status"]]
        usage = body.get("usage")
        if isinstance(usage, dict):
            self._usage(usage)

    def _usage(self, usage: dict[str, Any]) -> None:
        self.usage = usage
        self.input_tokens = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
        self.output_tokens = _int(usage.get("completion_tokens", usage.get("output_tokens")))
        details_in = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        details_out = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
        self.cached_tokens = _int(details_in.get("cached_tokens")) if isinstance(details_in, dict) else None
        self.reasoning_tokens = _int(details_out.get("reasoning_tokens")) if isinstance(details_out, dict) else None


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def facts_of(response: httpx2.Response) -> Facts:
    """The facts of an answer already read whole (nothing for one that is not JSON)."""
    facts = Facts()
    content = response.content
    first = content[:1]
    if first in b"{ \r\n\t":  # a JSON object, told cheaper than by the content-type header
        try:  # json.loads less its encoding sniffing and whitespace regex, where the object starts at once
            facts.take(_object(content.decode())[0] if first == b"{" else json.loads(content))
        except ValueError:  # UnicodeDecodeError too
            pass
    return facts


_object = json.JSONDecoder().raw_decode


_END_OF_EVENT = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_WORTH_READING = re.compile(rb'"usage": ?\{|"finish_reason": ?"|"response\.(?:completed|incomplete|failed)"')
"""Only events that may hold usage or an ending are parsed; content deltas pass unread."""
_EVENT_ENDS = (b"\r\n\r\n", b"\n\n", b"\r\r")


class StreamWatch(httpx2.AsyncByteStream):
    """A stream's bytes passed on as they come, its events read for their facts on the way; ``on_end`` is told
    when the caller has read it all, or closed it.

    With ``strip_usage`` the usage-only chunk (``"choices": []`` with ``usage``, asked for by turnout
    rather than the caller) is read and not passed on. ``on_usage`` is told as soon as the usage is in,
    before the caller sees anything after it.
    """

    def __init__(
        self,
        source: httpx2.AsyncByteStream,
        facts: Facts,
        *,
        strip_usage: bool,
        on_usage: Callable[[], None],
        on_end: Callable[[], None],
    ) -> None:
        self._source = source
        self._facts = facts
        self._strip = strip_usage
        self._on_usage = on_usage
        self._on_end: Optional[Callable[[], None]] = on_end
        self._pending = b""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._source:
                out = self._read(chunk)
                if out:
                    yield out
            if self._pending:
                yield self._pending
                self._pending = b""
        finally:
            self._ended()

    def _ended(self) -> None:
        """Everything the caller will see has been read (or it stopped reading): told once."""
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()

    def _read(self, chunk: bytes) -> bytes:
        """The part of ``chunk`` to pass on now: whole events (less a stripped one); a partial event waits."""
        buffer = self._pending + chunk if self._pending else chunk
        if _WORTH_READING.search(buffer) is None:  # content deltas, nearly always: passed on whole, unsplit
            cut = max((at + len(mark) for mark in _EVENT_ENDS if (at := buffer.rfind(mark)) >= 0), default=0)
            self._pending = buffer[cut:]
            return buffer[:cut]
        start = 0
        kept: list[bytes] = []
        for end in _END_OF_EVENT.finditer(buffer):
            event = buffer[start : end.end()]
            start = end.end()
            if self._seen(event):
                kept.append(event)
        self._pending = buffer[start:]
        return b"".join(kept)

    def _seen(self, event: bytes) -> bool:
        """Read one event; whether to pass it on."""
        if _WORTH_READING.search(event) is None:
            return True
        data = b"\n".join(line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:"))
        try:
            body = json.loads(data)
        except ValueError:
            return True
        had_usage = self._facts.usage is not None
        self._facts.take(body)
        if self._facts.usage is not None and not had_usage:
            self._on_usage()
        usage_only = isinstance(body, dict) and body.get("choices") == [] and isinstance(body.get("usage"), dict)
        return not (self._strip and usage_only)

    async def aclose(self) -> None:
        try:
            await self._source.aclose()
        finally:
            self._ended()
