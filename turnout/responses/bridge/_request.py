"""A Responses API request as the Chat Completions request a chat-only backend can serve.

The input is the body the caller's openai SDK already built (wire form). Whatever
a chat backend has no form for (hosted tools, stored prompts and conversations,
files by id, tool calls only OpenAI runs) is refused with ``Unsupported`` before
anything is sent: the router then tries a backend that serves ``/v1/responses``
natively, and names what and why when none can. Dropping such a thing silently
would answer a different question than the one asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import openai

from ..._errors import UNSUPPORTED, status_error

__all__ = ["Unsupported", "messages_of", "to_chat"]


class Unsupported(openai.BadRequestError):
    """A 400 with code ``unsupported_by_backend``: the request needs what only a Responses backend has.

    Raised before sending; the router fails over on that code instead of raising,
    so a backend that can serve the request still gets it."""


def _refuse(what: str, why: str) -> Unsupported:
    return status_error(Unsupported, 400, f"a chat-only backend cannot serve {what}: {why}", code=UNSUPPORTED)


# --- the request's fields ------------------------------------------------------------------------

_REFUSED_FIELDS = {
    "background": "a background response is kept and polled on the server that runs it, "
    "and a chat backend answers within the request",
    "conversation": "conversations are stored by a Responses API server",
    "prompt": "stored prompt templates live on OpenAI's servers",
}
"""Request fields that, when set, only a Responses backend can honour."""

_COPIED = ("model", "temperature", "top_p", "metadata", "user", "safety_identifier", "prompt_cache_key", "service_tier")
"""Fields with the same name and meaning in both APIs. The rest is converted below or left out: ``store``,
``previous_response_id`` and the like are the router's business, and chat has no word for ``include``,
``truncation``, ``context_management``, ``max_tool_calls`` …"""


def to_chat(
    body: Mapping[str, Any],
    *,
    history: Sequence[dict[str, Any]] = (),
    stream: bool = False,
    max_tokens_field: str = "max_tokens",
) -> dict[str, Any]:
    """The Chat Completions body for the Responses ``body``.

    ``history`` (chat messages, e.g. a stored conversation replayed for
    ``previous_response_id``) goes between the instructions and the new input.
    ``max_tokens_field`` is where ``max_output_tokens`` goes (``max_completion_tokens``
    for backends that want it). A stream asks for usage, which ``response.completed`` reports.
    """
    for field, why in _REFUSED_FIELDS.items():
        if body.get(field):
            raise _refuse(f"a request with {field!r} set", why)
    instructions = body.get("instructions")
    messages: list[Message] = [{"role": "system", "content": instructions}] if instructions else []
    messages += history
    messages += messages_of(body.get("input") or ())
    chat: dict[str, Any] = {k: body[k] for k in _COPIED if body.get(k) is not None}
    chat["messages"] = messages
    _add_tools(chat, body)
    text = body.get("text") or {}
    response_format = _response_format(text.get("format"))
    if response_format:
        chat["response_format"] = response_format
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]
    if body.get("max_output_tokens") is not None:
        chat[max_tokens_field] = body["max_output_tokens"]
    effort = (body.get("reasoning") or {}).get("effort")
    if effort is not None:
        chat["reasoning_effort"] = effort
    if body.get("top_logprobs") is not None:
        chat["logprobs"] = True
        chat["top_logprobs"] = body["top_logprobs"]
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _response_format(given: Mapping[str, Any] | None) -> dict[str, Any] | None:
    kind = given.get("type") if given else "text"
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and given:
        schema = {k: given[k] for k in ("name", "schema", "strict", "description") if given.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise _refuse(f"text.format of type {kind!r}", "chat has the formats text, json_object and json_schema")


# --- tools ---------------------------------------------------------------------------------------

_HOSTED = (
    "the Responses API server runs this tool itself, and a chat backend can only ask the caller to run a function tool"
)
_OWN_CALLS = "the model calls it with an item of its own, which a chat answer cannot carry"

_REFUSED_TOOLS: dict[str, str] = {
    **dict.fromkeys(
        (
            "web_search",
            "web_search_2025_08_26",
            "web_search_preview",
            "web_search_preview_2025_03_11",
            "file_search",
            "code_interpreter",
            "image_generation",
            "mcp",
            "tool_search",
            "programmatic_tool_calling",
        ),
        _HOSTED,
    ),
    **dict.fromkeys(
        ("computer", "computer_use", "computer_use_preview", "local_shell", "shell", "apply_patch"), _OWN_CALLS
    ),
    "custom": "a custom tool takes free-form text, and chat tools take JSON arguments",
    "namespace": "chat tools have no namespaces",
    "allowed_tools": "chat backends cannot narrow the tool list for one request",
}
"""Why each tool type (and ``tool_choice`` type) other than ``function`` is refused; unlisted ones are too."""

_NOT_A_FUNCTION = "only function tools have a Chat Completions form"
_CHOICES = frozenset({"auto", "none", "required"})


def _add_tools(chat: dict[str, Any], body: Mapping[str, Any]) -> None:
    """Function tools, and the choice among them; without tools a chat backend may refuse ``tool_choice``."""
    tools = [_tool(tool, i) for i, tool in enumerate(body.get("tools") or ())]
    choice = body.get("tool_choice")
    choice = _tool_choice(choice) if choice is not None else None
    if not tools:
        return
    chat["tools"] = tools
    if choice is not None:
        chat["tool_choice"] = choice
    if body.get("parallel_tool_calls") is not None:
        chat["parallel_tool_calls"] = body["parallel_tool_calls"]


def _tool(tool: Mapping[str, Any], index: int) -> dict[str, Any]:
    kind = tool.get("type")
    if kind != "function":
        raise _refuse(f"tools[{index}] of type {kind!r}", _REFUSED_TOOLS.get(str(kind), _NOT_A_FUNCTION))
    function = {"name": tool.get("name")}
    function.update({k: tool[k] for k in ("description", "parameters", "strict") if tool.get(k) is not None})
    return {"type": "function", "function": function}


def _tool_choice(choice: str | Mapping[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        if choice in _CHOICES:
            return choice
        raise _refuse(f"tool_choice {choice!r}", "chat takes auto, none, required or a function")
    kind = choice.get("type")
    if kind == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise _refuse(f"tool_choice of type {kind!r}", _REFUSED_TOOLS.get(str(kind), _NOT_A_FUNCTION))


# --- input items ---------------------------------------------------------------------------------

Message = dict[str, Any]


def messages_of(input: str | Sequence[Mapping[str, Any]]) -> list[Message]:
    """Chat messages for a Responses ``input``: a string, or items.

    Output items convert too (a message with ``output_text`` parts, ``function_call``s),
    so a stored conversation replays as ``messages_of(input) + messages_of(output)``.
    An assistant's function calls become one assistant message with all its ``tool_calls``,
    as chat backends require before the tool messages that answer them.
    """
    if isinstance(input, str):
        return [{"role": "user", "content": input}]
    messages: list[Message] = []
    for index, item in enumerate(input):
        if not isinstance(item, Mapping):
            raise _refuse(f"input item {index}", "it is not an object")
        kind = item.get("type") or ("message" if "role" in item else "item_reference")
        convert = _ITEMS.get(kind)
        if convert is None:
            raise _refuse(f"input item {index} of type {kind!r}", _REFUSED_ITEMS.get(kind, _NO_ITEM_FORM))
        message = convert(item, f"input item {index}")
        if message is None:
            continue
        last = messages[-1] if messages else None
        if "tool_calls" in message and last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).extend(message["tool_calls"])
        else:
            messages.append(message)
    return messages


def _message(item: Mapping[str, Any], where: str) -> Message:
    role = item.get("role")
    if role not in _ROLES:
        raise _refuse(f"{where} with role {role!r}", "messages have the roles user, assistant, system and developer")
    chat_role, kinds, why = _ROLES[role]
    parts = _parts(item.get("content"), kinds, f"{where} (a {role} message)", why)
    if chat_role == "user":
        texts = [p for p in parts if p["type"] == "text"]
        return {"role": "user", "content": texts[0]["text"] if parts == texts and len(texts) == 1 else parts}
    if chat_role == "system":  # many chat servers take a system message's content only as a string
        return {"role": "system", "content": "\n".join(p["text"] for p in parts)}
    # An assistant's output_text parts are pieces of one answer, joined as the SDK's ``output_text`` joins them.
    message: Message = {"role": "assistant", "content": "".join(p["text"] for p in parts if p["type"] == "text")}
    refusal = "".join(p["refusal"] for p in parts if p["type"] == "refusal")
    if refusal:
        message["refusal"] = refusal
    return message


def _function_call(item: Mapping[str, Any], where: str) -> Message:
    call = {
        "id": _call_id(item, where),
        "type": "function",
        "function": {"name": item.get("name"), "arguments": item.get("arguments")},
    }
    return {"role": "assistant", "content": "", "tool_calls": [call]}


def _function_call_output(item: Mapping[str, Any], where: str) -> Message:
    output = item.get("output")
    if not isinstance(output, str):
        parts = _parts(output, _TEXT, f"{where} (a function_call_output)", "tool messages take text only")
        output = "\n".join(p["text"] for p in parts)
    return {"role": "tool", "tool_call_id": _call_id(item, where), "content": output}


def _dropped(item: Mapping[str, Any], where: str) -> None:
    """Reasoning items: a model's earlier thoughts (often encrypted for OpenAI alone). Chat takes none
    back (some backends even refuse them as content), and the conversation stands without them."""


def _call_id(item: Mapping[str, Any], where: str) -> str:
    call_id = item.get("call_id")
    if not call_id:
        raise _refuse(
            f"{where} of type {item.get('type')!r} without a call_id", "chat ties a tool call to its output by that id"
        )
    return str(call_id)


_ITEMS: dict[str, Callable[[Mapping[str, Any], str], Message | None]] = {
    "message": _message,
    "function_call": _function_call,
    "function_call_output": _function_call_output,
    "reasoning": _dropped,
}
"""The input item types a chat backend can take, and how; every other type is refused."""

_NO_ITEM_FORM = (
    "Chat Completions has forms only for messages, function calls and their outputs (reasoning items are left out)"
)
_REFUSED_ITEMS = {
    "item_reference": "it points at an item stored by a Responses API server, and a chat backend stores none",
    "compaction": "it is context compacted and encrypted by OpenAI, which only OpenAI can read",
}


# --- content parts -------------------------------------------------------------------------------


def _text(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {"type": "text", "text": part.get("text") or ""}


def _refusal(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": part.get("refusal") or ""}


def _image(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    url = part.get("image_url")
    if not url:
        raise _refuse(
            f"{where} (an input_image given by file_id)",
            "the file is in OpenAI's file store, which a chat backend cannot read; "
            "give the image as image_url (a URL or a data: URL)",
        )
    image = {"url": url}
    if part.get("detail") is not None:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


_PARTS: dict[str, Callable[[Mapping[str, Any], str], dict[str, Any]]] = {
    "input_text": _text,
    "output_text": _text,
    "input_image": _image,
    "refusal": _refusal,
}
"""Responses content parts as chat content parts. Which of them a message may hold depends on its role."""

_TEXT = frozenset({"input_text", "output_text"})
_ROLES: dict[str, tuple[str, frozenset[str], str]] = {
    "user": ("user", _TEXT | {"input_image"}, "user messages take text and images"),
    "system": ("system", _TEXT, "system messages take text only"),
    "developer": ("system", _TEXT, "system messages take text only"),
    "assistant": ("assistant", _TEXT | {"refusal"}, "assistant messages take text and refusals"),
}
"""Each role's chat role, the parts it may hold, and why others are refused (files and audio among them)."""


def _parts(content: str | Iterable[Any] | None, kinds: frozenset[str], where: str, why: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind not in kinds:
            raise _refuse(f"{where}, content part {index} of type {kind!r}", f"in Chat Completions, {why}")
        parts.append(_PARTS[kind](part, f"{where}, content part {index}"))
    return parts
