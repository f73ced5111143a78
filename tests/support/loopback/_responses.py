"""The loopback OpenAI server's Responses API, in OpenAI's wire shapes: stored items, Response objects, stream events.

Pure functions; the server's handler does the HTTP and keeps the state. Answers come from the same logic as
chat completions (echo, tool calls, JSON fitting a schema): :func:`chat_view` shows a Responses request to it
as the chat request it amounts to, so the two APIs never disagree about what a prompt gets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NewId = Callable[[str], str]
"""Makes a process-wide unique id with the given prefix (``resp_``, ``msg_``, ``fc_``, ``call_``)."""

_ITEM_PREFIXES = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_"}


@dataclass
class StoredResponse:
    """What a server keeps of a response made with ``store`` (OpenAI's default)."""

    response: dict[str, Any]
    """The Response object as it was last answered."""
    items: list[dict[str, Any]]
    """The input items it was made from, each with an id: earlier turns of a ``previous_response_id`` chain
    (their inputs and outputs) first, then its own input. ``instructions`` are not items: OpenAI does not carry
    them over to a follow-up."""
    finished: dict[str, Any] | None = None
    """A background response's answer while it still reads ``queued``: it is done by the first poll."""

    def conversation(self) -> list[dict[str, Any]]:
        """What a follow-up with ``previous_response_id`` continues from."""
        return [*self.items, *self.response["output"]]


def input_items(given: str | Sequence[Any], new_id: NewId) -> list[dict[str, Any]]:
    """A request's ``input`` as OpenAI stores it: a string becomes a user message; every item gets an id and a
    status, and message text the part type its role uses (``input_text``, or ``output_text`` for the assistant)."""
    if isinstance(given, str):
        given = [{"role": "user", "content": given}]
    return [_item(dict(item), new_id) for item in given if isinstance(item, Mapping)]


def _item(item: dict[str, Any], new_id: NewId) -> dict[str, Any]:
    kind = item.setdefault("type", "message")
    if kind == "message":
        assistant = item.get("role") == "assistant"
        content = item.get("content")
        if isinstance(content, str):
            content = [{"type": "output_text" if assistant else "input_text", "text": content}]
        item["content"] = [
            {"annotations": [], **part} if part.get("type") == "output_text" else part
            for part in content or []
            if isinstance(part, Mapping)
        ]
    if kind != "item_reference":
        item.setdefault("status", "completed")
    if not item.get("id"):
        item["id"] = new_id(_ITEM_PREFIXES.get(kind, "item_"))
    return item


def chat_view(body: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The chat request a Responses request amounts to, as far as the server's answers read one: messages
    (instructions first; a function call as an assistant tool call, its output as a tool message), function
    tools and ``tool_choice`` in chat's shape, ``text.format`` as ``response_format``."""
    instructions = body.get("instructions")
    messages: list[dict[str, Any]] = (
        [{"role": "system", "content": instructions}] if isinstance(instructions, str) else []
    )
    for item in items:
        kind = item.get("type")
        if kind == "message":
            messages.append({"role": item.get("role"), "content": _text(item.get("content"))})
        elif kind == "function_call":
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"type": "function", "function": {"name": item.get("name")}}],
                }
            )
        elif kind == "function_call_output":
            messages.append({"role": "tool", "content": _text(item.get("output"))})
    tools = [
        {"type": "function", "function": tool}
        for tool in body.get("tools") or []
        if isinstance(tool, Mapping) and tool.get("type") == "function"
    ]
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):  # only a named function has a chat form; allowed_tools and the like: the default
        choice = (
            {"type": "function", "function": {"name": choice.get("name")}} if choice.get("type") == "function" else None
        )
    fmt = (body.get("text") or {}).get("format") or {}
    response_format = {"type": "json_schema", "json_schema": fmt} if fmt.get("type") == "json_schema" else fmt
    return {"messages": messages, "tools": tools, "tool_choice": choice, "response_format": response_format}


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") in ("input_text", "output_text", "text")
        )
    return str(content or "")


def shell(body: Mapping[str, Any], *, response_id: str, created_at: int) -> dict[str, Any]:
    """The Response object before any output: what the request asked for, OpenAI's defaults for the rest."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "completed_at": None,
        "background": bool(body.get("background")),
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": body.get("model"),
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def finished(
    start: Mapping[str, Any],
    *,
    text: str | None,
    tool: Mapping[str, str] | None,
    chat_usage: Mapping[str, int],
    cut_short: bool,
    new_id: NewId,
) -> dict[str, Any]:
    """The answered Response: a message with the text and/or a function call; ``incomplete`` (reason
    ``max_output_tokens``) when the text was cut to the limit; usage counted as the chat answer's."""
    output: list[dict[str, Any]] = []
    if text is not None:
        output.append(
            {
                "type": "message",
                "id": new_id("msg_"),
                "role": "assistant",
                "status": "incomplete" if cut_short else "completed",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            }
        )
    if tool is not None:
        output.append(
            {
                "type": "function_call",
                "id": new_id("fc_"),
                "call_id": new_id("call_"),
                "name": tool["name"],
                "arguments": tool["arguments"],
                "status": "completed",
            }
        )
    usage = {
        "input_tokens": chat_usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": chat_usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": chat_usage["total_tokens"],
    }
    return {
        **start,
        "status": "incomplete" if cut_short else "completed",
        "completed_at": None if cut_short else start["created_at"],
        "incomplete_details": {"reason": "max_output_tokens"} if cut_short else None,
        "output": output,
        "usage": usage,
    }


def stream_events(response: Mapping[str, Any], cut: Callable[[str], list[str]]) -> list[dict[str, Any]]:
    """The events OpenAI streams for ``response``, numbered: created, in_progress, each output item (a message's
    text or a call's arguments in the pieces ``cut`` makes), then completed (or incomplete)."""
    start = {
        **response,
        "status": "in_progress",
        "completed_at": None,
        "incomplete_details": None,
        "output": [],
        "usage": None,
    }
    events = [{"type": "response.created", "response": start}, {"type": "response.in_progress", "response": start}]
    for index, item in enumerate(response["output"]):
        events.extend(_item_events(index, item, cut))
    final = "response.completed" if response["status"] == "completed" else f"response.{response['status']}"
    events.append({"type": final, "response": response})
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


def _item_events(index: int, item: Mapping[str, Any], cut: Callable[[str], list[str]]) -> list[dict[str, Any]]:
    where = {"item_id": item["id"], "output_index": index}
    if item["type"] == "function_call":
        arguments = item["arguments"]
        return [
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "arguments": "", "status": "in_progress"},
            },
            *({"type": "response.function_call_arguments.delta", **where, "delta": piece} for piece in cut(arguments)),
            {"type": "response.function_call_arguments.done", **where, "name": item["name"], "arguments": arguments},
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]
    part = item["content"][0]
    where = {**where, "content_index": 0}
    return [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        *(
            {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
            for piece in cut(part["text"])
        ),
        {"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": index, "item": item},
    ]


def sse(event: Mapping[str, Any]) -> bytes:
    """One event as OpenAI frames it: its type on an ``event:`` line, the JSON on a ``data:`` line."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
