"""A Chat Completions answer as the Response object the Responses API would have sent.

The stream side (``_events``) builds the same object event by event, from the
same helpers here, so a bridged answer reads the same streamed or not.
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

__all__ = [
    "new_id",
    "shell",
    "to_response",
    "message_item",
    "content_part",
    "function_call_item",
    "usage_of",
    "finish",
    "input_items",
]

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
"""Chat ``finish_reason``s that leave a response incomplete, and the reason the Responses API names."""

_ECHOED = (
    "instructions",
    "max_output_tokens",
    "previous_response_id",
    "reasoning",
    "temperature",
    "top_p",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "service_tier",
    "top_logprobs",
)
"""Request fields a Response repeats as they were asked (absent ones read ``None``)."""


def new_id(prefix: str) -> str:
    """An id shaped like OpenAI's (``resp_``, ``msg_``, ``fc_`` and 48 hex digits)."""
    return f"{prefix}_{os.urandom(24).hex()}"


def shell(
    body: Mapping[str, Any],
    *,
    response_id: str,
    model: str,
    created_at: float | None = None,
    status: str = "in_progress",
) -> dict[str, Any]:
    """The Response object without its output: what ``response.created`` carries, and what the answer fills in."""
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at if created_at is not None else time.time(),
        "status": status,
        "model": model,
        "output": [],
        "tools": list(body.get("tools") or []),
        "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "metadata": dict(body.get("metadata") or {}),
        "text": body.get("text") or {"format": {"type": "text"}},
        "store": body.get("store", True),
        "background": False,
        "error": None,
        "incomplete_details": None,
        "usage": None,
    }
    for name in _ECHOED:
        response[name] = body.get(name)
    return response


def message_item(
    text: str | None, refusal: str | None = None, *, item_id: str | None = None, status: str = "completed"
) -> dict[str, Any]:
    """The assistant's message as an output item: its text, or its refusal."""
    content = [content_part(kind, part) for kind, part in (("output_text", text), ("refusal", refusal)) if part]
    return {
        "type": "message",
        "id": item_id or new_id("msg"),
        "role": "assistant",
        "status": status,
        "content": content,
    }


def content_part(kind: str, text: str) -> dict[str, Any]:
    """One part of the assistant's message: its text (``output_text``) or its refusal (``refusal``)."""
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(
    call_id: str | None, name: str, arguments: str, *, item_id: str | None = None, status: str = "completed"
) -> dict[str, Any]:
    """A tool call as an output item; ``call_id`` is what the caller's ``function_call_output`` will name."""
    return {
        "type": "function_call",
        "id": item_id or new_id("fc"),
        "call_id": call_id or new_id("call"),
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def usage_of(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Chat's token counts under the Responses API's names."""
    if not usage:
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(cached), "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(reasoning)},
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def finish(response: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    """Mark ``response`` done: ``completed``, or ``incomplete`` with the reason when the answer was cut short."""
    reason = _INCOMPLETE.get(finish_reason or "")
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None
    response["completed_at"] = time.time()
    return response


def to_response(chat: Mapping[str, Any], body: Mapping[str, Any], *, response_id: str) -> dict[str, Any]:
    """The Response for a non-streamed chat completion answering the request ``body``."""
    choices = chat.get("choices") or [{}]
    choice = choices[0] or {}
    message = choice.get("message") or {}
    response = shell(
        body,
        response_id=response_id,
        model=str(chat.get("model") or body.get("model") or ""),
        created_at=chat.get("created"),
    )
    text = message.get("content")
    refusal = message.get("refusal")
    if text or refusal:
        response["output"].append(message_item(text if isinstance(text, str) else None, refusal))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        response["output"].append(
            function_call_item(call.get("id"), function.get("name") or "", function.get("arguments") or "")
        )
    response["usage"] = usage_of(chat.get("usage"))
    return finish(response, choice.get("finish_reason"))


def input_items(given: Any, response_id: str) -> list[dict[str, Any]]:
    """A request's ``input`` as ``responses.input_items.list`` shows it: each item with a type, and an id
    (made from the response's, so every listing shows the same ones)."""
    if isinstance(given, str):
        given = [{"role": "user", "content": [{"type": "input_text", "text": given}]}]
    items: list[dict[str, Any]] = []
    stem = response_id.partition("_")[2][:40]
    for index, item in enumerate(given or ()):
        item = dict(item)
        kind = item.setdefault("type", "message")
        if kind == "message" and isinstance(item.get("content"), str):
            part = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": part, "text": item["content"]}]
        item.setdefault("id", f"{_ID_PREFIX.get(kind, 'item')}_{stem}{index:08x}")
        items.append(item)
    return items


_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}
