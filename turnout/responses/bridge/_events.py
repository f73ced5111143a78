"""A streamed chat completion as the Responses API's stream of events.

A chat backend streams deltas: text, tool calls by index, a finish reason and,
with ``include_usage``, a last chunk of token counts. The Responses API streams
output items instead: each is announced, filled and closed, and the last event
carries the whole Response. ``_Stream`` remembers what is open; the items and
the final Response come from ``_answer``'s helpers, so a streamed answer ends
in the object ``to_response`` makes for the same answer, not streamed.

Nothing is sent before the backend's first chunk arrives, so the router can
still fail over until then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterable, AsyncIterator, Iterator, Mapping

from ._answer import content_part, finish, function_call_item, message_item, new_id, shell, usage_of

__all__ = ["response_events", "sse"]

_KINDS = {"content": "output_text", "refusal": "refusal"}
"""The chat delta fields that carry a message's text, and the content part each becomes."""

_DONE_FIELD = {"output_text": "text", "refusal": "refusal"}
"""The field naming a part's whole text in its ``….done`` event."""


@dataclass
class _Message:
    item_id: str
    output_index: int
    texts: dict[str, str] = field(default_factory=dict)
    """Text so far by part kind, in the order the parts were announced (their content indexes)."""


@dataclass
class _Call:
    call_id: str | None
    name: str = ""
    arguments: str = ""
    item_id: str = ""
    output_index: int | None = None
    """None until the call is announced, which waits for its name."""


async def response_events(
    chunks: AsyncIterable[Mapping[str, Any]], body: Mapping[str, Any], *, response_id: str
) -> AsyncIterator[dict[str, Any]]:
    """The Responses API's events for a chat stream answering the Responses request ``body``."""
    stream = _Stream(body, response_id)
    async for chunk in chunks:
        for event in stream.feed(chunk):
            yield event
    for event in stream.end():
        yield event


def sse(event: Mapping[str, Any]) -> bytes:
    """One event as a server-sent event, named by its type as OpenAI names them."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


class _Stream:
    """One answer in flight: the items open, the items done, and the next sequence number."""

    def __init__(self, body: Mapping[str, Any], response_id: str) -> None:
        self._body = body
        self._response_id = response_id
        self._sequence = 0
        self._shell: dict[str, Any] | None = None
        self._output: list[dict[str, Any] | None] = []  # done items at their output index; None while open
        self._message: _Message | None = None
        self._calls: list[_Call] = []
        self._by_index: dict[Any, _Call] = {}
        self._last_call: _Call | None = None
        self._usage: Mapping[str, Any] | None = None
        self._finish_reason: str | None = None

    def feed(self, chunk: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """The events one chunk makes: the response's start with the first, then only what adds to the answer."""
        if self._shell is None:
            yield from self._start(chunk)
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choice = next((c for c in chunk.get("choices") or () if (c.get("index") or 0) == 0), None)
        if choice is None:
            return
        self._finish_reason = choice.get("finish_reason") or self._finish_reason
        delta = choice.get("delta") or {}
        for name, kind in _KINDS.items():
            text = delta.get(name)
            if isinstance(text, str) and text:
                yield from self._text(kind, text)
        for call_delta in delta.get("tool_calls") or ():
            yield from self._tool_call(call_delta)

    def end(self) -> Iterator[dict[str, Any]]:
        """Close what is still open, in output order, then the whole Response as the last event."""
        if self._shell is None:
            yield from self._start({})
        for call in self._calls:
            if call.output_index is None:
                yield from self._announce_call(call)
        still_open: list[_Message | _Call] = [*self._calls, *([self._message] if self._message else [])]
        for item in sorted(still_open, key=lambda item: item.output_index or 0):
            yield from self._close_message() if isinstance(item, _Message) else self._close_call(item)
        assert self._shell is not None
        response = finish(
            {**self._shell, "output": list(self._output), "usage": usage_of(self._usage)}, self._finish_reason
        )
        yield self._event(f"response.{response['status']}", response=response)

    def _event(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _start(self, chunk: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        self._shell = shell(
            self._body,
            response_id=self._response_id,
            created_at=chunk.get("created"),
            model=str(chunk.get("model") or self._body.get("model") or ""),
        )
        yield self._event("response.created", response=self._shell)
        yield self._event("response.in_progress", response=self._shell)

    def _add(self, item: dict[str, Any]) -> dict[str, Any]:
        self._output.append(None)
        return self._event("response.output_item.added", output_index=len(self._output) - 1, item=item)

    def _done(self, output_index: int, item: dict[str, Any]) -> dict[str, Any]:
        self._output[output_index] = item
        return self._event("response.output_item.done", output_index=output_index, item=item)

    def _text(self, kind: str, text: str) -> Iterator[dict[str, Any]]:
        message = self._message
        # message_item puts the text before the refusal: text after a refusal starts a new message.
        if message is None or (kind == "output_text" and "refusal" in message.texts):
            yield from self._close_message()
            item_id = new_id("msg")
            message = self._message = _Message(item_id, len(self._output))
            yield self._add(message_item(None, item_id=item_id, status="in_progress"))
        where = {"item_id": message.item_id, "output_index": message.output_index}
        if kind not in message.texts:
            message.texts[kind] = ""
            yield self._event(
                "response.content_part.added",
                **where,
                content_index=len(message.texts) - 1,
                part=content_part(kind, ""),
            )
        message.texts[kind] += text
        yield self._event(
            f"response.{kind}.delta",
            **where,
            content_index=list(message.texts).index(kind),
            delta=text,
            **_logprobs(kind),
        )

    def _close_message(self) -> Iterator[dict[str, Any]]:
        message, self._message = self._message, None
        if message is None:
            return
        item = message_item(message.texts.get("output_text"), message.texts.get("refusal"), item_id=message.item_id)
        where = {"item_id": message.item_id, "output_index": message.output_index}
        for content_index, (kind, text) in enumerate(message.texts.items()):
            yield self._event(
                f"response.{kind}.done",
                **where,
                content_index=content_index,
                **{_DONE_FIELD[kind]: text},
                **_logprobs(kind),
            )
            yield self._event(
                "response.content_part.done", **where, content_index=content_index, part=item["content"][content_index]
            )
        yield self._done(message.output_index, item)

    def _tool_call(self, delta: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        call = self._call_for(delta)
        function = delta.get("function") or {}
        call.name = call.name or function.get("name") or ""
        arguments = function.get("arguments") or ""
        if call.output_index is None:
            call.arguments += arguments
            if call.name:
                yield from self._announce_call(call)
        elif arguments:
            call.arguments += arguments
            yield self._arguments_delta(call, arguments)

    def _call_for(self, delta: Mapping[str, Any]) -> _Call:
        """The call a delta continues, or a new one: a new index, or a new id at an index seen before
        (some servers number every call 0), starts one; a delta without an index continues the last."""
        index = delta.get("index")
        call = self._last_call if index is None else self._by_index.get(index)
        call_id = delta.get("id") or None
        if call is None or (call_id and call.call_id and call_id != call.call_id):
            call = _Call(call_id)
            self._calls.append(call)
        call.call_id = call.call_id or call_id
        self._by_index[index] = self._last_call = call
        return call

    def _announce_call(self, call: _Call) -> Iterator[dict[str, Any]]:
        """Open the call's item (closing the message before it); arguments that came before its name follow."""
        yield from self._close_message()
        call.call_id = call.call_id or new_id("call")
        call.item_id = new_id("fc")
        call.output_index = len(self._output)
        yield self._add(function_call_item(call.call_id, call.name, "", item_id=call.item_id, status="in_progress"))
        if call.arguments:
            yield self._arguments_delta(call, call.arguments)

    def _arguments_delta(self, call: _Call, delta: str) -> dict[str, Any]:
        return self._event(
            "response.function_call_arguments.delta", item_id=call.item_id, output_index=call.output_index, delta=delta
        )

    def _close_call(self, call: _Call) -> Iterator[dict[str, Any]]:
        assert call.output_index is not None
        yield self._event(
            "response.function_call_arguments.done",
            item_id=call.item_id,
            output_index=call.output_index,
            arguments=call.arguments,
            name=call.name,
        )
        yield self._done(
            call.output_index, function_call_item(call.call_id, call.name, call.arguments, item_id=call.item_id)
        )


def _logprobs(kind: str) -> dict[str, Any]:
    """Text events carry logprobs (none: the bridge does not convert chat's); refusal events have no such field."""
    return {"logprobs": []} if kind == "output_text" else {}
