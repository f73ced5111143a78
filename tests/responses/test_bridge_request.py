"""A Responses request as the Chat Completions request a chat-only backend gets, and what it refuses.

Bodies are in wire form, as the caller's openai SDK builds them; item shapes follow
what the SDK's own types, the OpenAI Agents SDK (output items replayed with
``model_dump(exclude_unset=True)``) and pydantic-ai's ``OpenAIResponsesModel`` send.
"""

from __future__ import annotations

import copy
import typing
from typing import Any

import openai
import pytest
from openai.types.responses import Response, ResponseInputItemParam, ToolParam
from openai.types.responses.response_create_params import ToolChoice

from turnout.responses.bridge._request import Unsupported, messages_of, to_chat
from turnout.router._classify import Verdict, classify

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


# --- the request -----------------------------------------------------------------------------------


def test_a_plain_request_becomes_instructions_then_the_users_text() -> None:
    chat = to_chat({"model": "m", "input": "Hi there", "instructions": "Answer in French."})
    assert chat == {
        "model": "m",
        "messages": [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hi there"}],
    }


def test_settings_carry_over_under_their_chat_names_and_server_state_stays_behind() -> None:
    body = {
        "model": "m",
        "input": "Hi",
        "max_output_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "text"}, "verbosity": "low"},
        "metadata": {"run": "7"},
        "user": "u-1",
        "safety_identifier": "s-1",
        "prompt_cache_key": "k-1",
        "service_tier": "flex",
        "top_logprobs": 3,
        # What the router handles, or chat has no word for: none of it may reach a chat backend.
        "store": True,
        "previous_response_id": "resp_1",
        "include": ["message.output_text.logprobs"],
        "truncation": "auto",
        "background": False,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "context_management": [{"type": "compaction"}],
        "max_tool_calls": 2,
        "prompt_cache_retention": "24h",
        "stream_options": {"include_obfuscation": False},
    }
    assert to_chat(body) == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "reasoning_effort": "low",
        "verbosity": "low",
        "metadata": {"run": "7"},
        "user": "u-1",
        "safety_identifier": "s-1",
        "prompt_cache_key": "k-1",
        "service_tier": "flex",
        "logprobs": True,
        "top_logprobs": 3,
    }


def test_max_output_tokens_goes_where_the_backend_wants_it() -> None:
    chat = to_chat({"model": "m", "input": "Hi", "max_output_tokens": 16}, max_tokens_field="max_completion_tokens")
    assert chat["max_completion_tokens"] == 16
    assert "max_tokens" not in chat


def test_a_stream_asks_for_usage_and_a_plain_request_does_not_stream() -> None:
    body = {"model": "m", "input": "Hi", "stream": True}
    assert to_chat(body, stream=True)["stream_options"] == {"include_usage": True}
    assert to_chat(body, stream=True)["stream"] is True
    assert not {"stream", "stream_options"} & set(to_chat(body))


def test_history_goes_between_the_instructions_and_the_new_input() -> None:
    history = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada."}]
    chat = to_chat({"model": "m", "instructions": "Be brief.", "input": "What is my name?"}, history=history)
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        *history,
        {"role": "user", "content": "What is my name?"},
    ]


def test_function_tools_and_the_choice_among_them() -> None:
    tools = [
        {
            "type": "function",
            "name": "weather",
            "description": "Weather in a city",
            "parameters": WEATHER,
            "strict": True,
        },
        {"type": "function", "name": "now", "parameters": None, "strict": None},
    ]
    chat = to_chat(
        {
            "model": "m",
            "input": "Weather?",
            "tools": tools,
            "parallel_tool_calls": False,
            "tool_choice": {"type": "function", "name": "weather"},
        }
    )
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {"name": "weather", "description": "Weather in a city", "parameters": WEATHER, "strict": True},
        },
        {"type": "function", "function": {"name": "now"}},
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert chat["parallel_tool_calls"] is False
    for choice in ("auto", "none", "required"):
        assert to_chat({"model": "m", "input": "Hi", "tools": tools, "tool_choice": choice})["tool_choice"] == choice


def test_without_tools_no_tool_settings_are_sent() -> None:
    """Chat backends refuse ``tool_choice`` or ``parallel_tool_calls`` without tools; agents send them anyway."""
    chat = to_chat({"model": "m", "input": "Hi", "tools": [], "tool_choice": "auto", "parallel_tool_calls": True})
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(chat)


def test_structured_output_formats() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "name": "Count", "schema": schema, "strict": True, "description": "a count"}
    assert to_chat({"model": "m", "input": "3", "text": {"format": fmt}})["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Count", "schema": schema, "strict": True, "description": "a count"},
    }
    json_object = to_chat({"model": "m", "input": "3", "text": {"format": {"type": "json_object"}}})
    assert json_object["response_format"] == {"type": "json_object"}


def test_the_callers_body_and_history_are_left_as_they_were() -> None:
    """Agents keep the input list they sent and send it again next turn."""
    body = {
        "model": "m",
        "input": [
            {"role": "assistant", "content": "Checking."},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        ],
    }
    history = [{"role": "assistant", "content": "Earlier."}]
    before = copy.deepcopy((body, history))
    to_chat(body, history=history)
    assert (body, history) == before


# --- input items -----------------------------------------------------------------------------------


def test_messages_of_every_role_and_content_shape() -> None:
    items: list[dict[str, Any]] = [
        {"role": "developer", "content": "Be brief."},
        {
            "type": "message",
            "role": "system",
            "content": [{"type": "input_text", "text": "One."}, {"type": "input_text", "text": "Two."}],
        },
        {"role": "user", "content": [{"type": "input_text", "text": "Only text."}]},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "https://example.test/cat.png", "detail": "low"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
            ],
        },
        {"role": "assistant", "content": "A cat."},
    ]
    assert messages_of(items) == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "One.\nTwo."},
        {"role": "user", "content": "Only text."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.test/cat.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {"role": "assistant", "content": "A cat."},
    ]


def test_an_assistants_output_text_parts_and_refusal() -> None:
    """pydantic-ai replays several text parts in one output message; a refused answer keeps its refusal."""
    items = [
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "Half ", "annotations": []},
                {"type": "output_text", "text": "and half.", "annotations": [], "logprobs": []},
            ],
        },
        {
            "type": "message",
            "id": "msg_2",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "refusal", "refusal": "I can't help with that."}],
        },
    ]
    assert messages_of(items) == [
        {"role": "assistant", "content": "Half and half."},
        {"role": "assistant", "content": "", "refusal": "I can't help with that."},
    ]


def test_a_response_and_its_tool_results_become_one_assistant_turn_then_tool_messages() -> None:
    """The round trip: a Response's output (reasoning, text, two calls), replayed with the results.

    Chat backends need every call of a turn in ONE assistant message, right before the results."""
    response = Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1.0,
            "model": "m",
            "status": "completed",
            "tool_choice": "auto",
            "tools": [],
            "parallel_tool_calls": True,
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Two cities."}]},
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "Checking both.", "annotations": []}],
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_a",
                    "name": "weather",
                    "arguments": '{"city": "Paris"}',
                    "status": "completed",
                },
                {
                    "type": "function_call",
                    "id": "fc_2",
                    "call_id": "call_b",
                    "name": "weather",
                    "arguments": '{"city": "Rome"}',
                    "status": "completed",
                },
            ],
        }
    )
    results: list[dict[str, Any]] = [
        {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
        {
            "type": "function_call_output",
            "call_id": "call_b",
            "output": [{"type": "input_text", "text": "25C"}, {"type": "input_text", "text": "sunny"}],
        },
    ]
    expected = [
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
                {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "25C\nsunny"},
    ]
    replayed = [item.model_dump(exclude_unset=True) for item in response.output]  # as the Agents SDK does
    assert messages_of([*replayed, *results]) == expected
    stored = [item.model_dump(mode="json") for item in response.output]  # every field, nulls included
    assert messages_of([*stored, *results]) == expected


def test_calls_without_text_and_a_second_round_of_calls() -> None:
    """pydantic-ai sends calls with ``status: None`` (for vLLM) and no id; each round is its own turn."""
    items: list[dict[str, Any]] = [
        {"role": "user", "content": "Plan a trip."},
        {"type": "function_call", "call_id": "c1", "name": "flights", "arguments": "{}", "status": None},
        {"type": "function_call", "call_id": "c2", "name": "hotels", "arguments": "{}", "status": None},
        {"type": "function_call_output", "call_id": "c1", "output": "none"},
        {"type": "function_call_output", "call_id": "c2", "output": "one"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": None},
        {"type": "function_call", "call_id": "c3", "name": "trains", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c3", "output": "many"},
    ]
    messages = messages_of(items)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant", "tool"]
    assert [call["id"] for call in messages[1]["tool_calls"]] == ["c1", "c2"]
    assert messages[1]["content"] == ""
    assert [call["id"] for call in messages[4]["tool_calls"]] == ["c3"]


# --- what is refused -------------------------------------------------------------------------------


def _kinds(union: Any) -> set[str]:
    """Every ``type`` value the SDK's types in ``union`` can send."""
    kinds: set[str] = set()
    for member in typing.get_args(union):
        if typing.get_origin(member) is typing.Literal:  # e.g. tool_choice "auto" | "none" | "required"
            continue
        hint = typing.get_type_hints(member).get("type")
        kinds.update(arg for arg in _literals(hint) if isinstance(arg, str))
    return kinds


def _literals(hint: Any) -> list[Any]:
    if typing.get_origin(hint) is typing.Literal:
        return list(typing.get_args(hint))
    return [value for arg in typing.get_args(hint) for value in _literals(arg)]


def _refusal(body: dict[str, Any]) -> Unsupported:
    with pytest.raises(Unsupported) as caught:
        to_chat({"model": "m", **body})
    err = caught.value
    assert isinstance(err, openai.BadRequestError)
    assert (err.status_code, err.code) == (400, "unsupported_by_backend")
    assert classify(err) is Verdict.FAILOVER  # so a backend with /v1/responses gets the request
    return err


TOOL_KINDS = sorted(_kinds(ToolParam) - {"function"})
ITEM_KINDS = sorted(_kinds(ResponseInputItemParam) - {"message", "function_call", "function_call_output", "reasoning"})
CHOICE_KINDS = sorted(_kinds(ToolChoice) - {"function"})


def test_the_sdk_still_has_the_kinds_this_file_knows() -> None:
    """Guards the tables below against an SDK whose types no longer read as expected."""
    assert {"web_search", "file_search", "computer_use_preview", "code_interpreter", "mcp", "custom"} <= set(TOOL_KINDS)
    assert {"item_reference", "web_search_call", "computer_call_output", "custom_tool_call"} <= set(ITEM_KINDS)
    assert {"allowed_tools", "mcp", "custom", "file_search"} <= set(CHOICE_KINDS)


@pytest.mark.parametrize("kind", TOOL_KINDS)
def test_every_tool_but_a_function_is_refused_by_name(kind: str) -> None:
    function = {"type": "function", "name": "f", "parameters": WEATHER, "strict": True}
    err = _refusal({"input": "Hi", "tools": [function, {"type": kind}]})
    assert f"tools[1] of type {kind!r}" in err.message


@pytest.mark.parametrize("kind", CHOICE_KINDS)
def test_a_tool_choice_naming_anything_but_a_function_is_refused(kind: str) -> None:
    function = {"type": "function", "name": "f", "parameters": WEATHER, "strict": True}
    err = _refusal(
        {"input": "Hi", "tools": [function], "tool_choice": {"type": kind, "name": "x", "server_label": "x"}}
    )
    assert f"tool_choice of type {kind!r}" in err.message


@pytest.mark.parametrize("kind", ITEM_KINDS)
def test_every_item_a_chat_api_has_no_form_for_is_refused_by_name(kind: str) -> None:
    err = _refusal({"input": [{"role": "user", "content": "Hi"}, {"type": kind, "id": "x", "call_id": "c"}]})
    assert f"input item 1 of type {kind!r}" in err.message


def test_an_item_reference_without_a_type_is_refused() -> None:
    err = _refusal({"input": [{"id": "msg_123"}]})
    assert "'item_reference'" in err.message


@pytest.mark.parametrize(
    ("field", "value"), [("background", True), ("conversation", "conv_1"), ("prompt", {"id": "pmpt_1", "version": "2"})]
)
def test_what_only_a_responses_server_keeps_is_refused(field: str, value: object) -> None:
    err = _refusal({"input": "Hi", field: value})
    assert repr(field) in err.message


@pytest.mark.parametrize(
    ("item", "named"),
    [
        ({"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}, "'input_file'"),
        (
            {
                "role": "user",
                "content": [
                    {"type": "input_file", "file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf"}
                ],
            },
            "'input_file'",
        ),
        (
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}]},
            "'input_audio'",
        ),
        (
            {"role": "user", "content": [{"type": "input_image", "file_id": "file-1", "detail": "auto"}]},
            "input_image given by file_id",
        ),
        (
            {"role": "system", "content": [{"type": "input_image", "image_url": "https://example.test/a.png"}]},
            "'input_image'",
        ),
        (
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [{"type": "input_image", "image_url": "https://example.test/a.png"}],
            },
            "'input_image'",
        ),
        ({"type": "function_call_output", "output": "18C"}, "without a call_id"),
        ({"role": "tool", "content": "18C"}, "role 'tool'"),
    ],
)
def test_content_a_chat_message_cannot_hold_is_refused_by_name(item: dict[str, Any], named: str) -> None:
    err = _refusal({"input": [item]})
    assert named in err.message
