"""OllamaAdapter through the real ollama.AsyncClient against the loopback Ollama server: conversions both ways,
and Ollama's answers reaching a caller's openai SDK (turnout's client) as OpenAI wire JSON and SSE."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import warnings
from typing import Any

import openai
import pytest
from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

import turnout
from tests.support.loopback import OllamaServer
from tests.support.loopback.ollama_server import image_bytes
from turnout import ConfigError
from turnout.adapters import Adapter, OllamaAdapter
from turnout.adapters.ollama import UNSUPPORTED

MESSAGES = [{"role": "user", "content": "hello there"}]
NESTED_TOOL = {
    "type": "function",
    "function": {
        "name": "book",
        "description": "Book a trip.",
        "parameters": {
            "type": "object",
            "required": ["trip"],
            "properties": {
                "trip": {
                    "type": "object",
                    "properties": {
                        "to": {"type": "string", "format": "uri", "default": "https://example.org"},
                        "when": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
                        "legs": {
                            "type": "array",
                            "items": {"type": "object", "properties": {"km": {"type": "number", "minimum": 0}}},
                        },
                    },
                    "additionalProperties": False,
                },
            },
        },
    },
}


@pytest.fixture
async def adapter(ollama_server: OllamaServer):
    a = OllamaAdapter("local", host=ollama_server.host, timeout=5)
    yield a
    await a.aclose()


def sent(server: OllamaServer) -> dict[str, Any]:
    body = server.chat_requests()[-1].json
    assert body is not None
    return body


async def test_it_keeps_the_adapter_protocol(adapter: OllamaAdapter) -> None:
    assert isinstance(adapter, Adapter)
    assert adapter.name == "local" and adapter.capabilities.tools and adapter.capabilities.embeddings


# -- chat: answers ------------------------------------------------------------


async def test_chat_returns_the_sdk_type_with_usage(adapter: OllamaAdapter) -> None:
    reply = await adapter.chat(model="test-model", messages=MESSAGES)
    assert isinstance(reply, ChatCompletion)
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion" and reply.model == "test-model"
    assert reply.created > 1_600_000_000
    choice = reply.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant",
        "echo: hello there",
        "stop",
    )
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (2, 3, 5)


async def test_openai_sampling_parameters_become_ollama_options(
    adapter: OllamaAdapter, ollama_server: OllamaServer
) -> None:
    await adapter.chat(
        model="test-model",
        messages=MESSAGES,
        temperature=0.25,
        top_p=0.9,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.25,
        max_tokens=40,
        stop="\n",
    )
    body = sent(ollama_server)
    assert body["options"] == {
        "temperature": 0.25,
        "top_p": 0.9,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "num_predict": 40,
        "stop": ["\n"],
    }
    assert body["stream"] is False


async def test_unset_sampling_parameters_stay_unset(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    """Ollama's own /v1 layer forces temperature and top_p to 1.0; natively the model's defaults apply."""
    await adapter.chat(model="test-model", messages=MESSAGES, temperature=openai.NOT_GIVEN, user="u-1", store=False)
    assert "options" not in sent(ollama_server)


async def test_max_completion_tokens_wins_and_length_is_reported(
    adapter: OllamaAdapter, ollama_server: OllamaServer
) -> None:
    reply = await adapter.chat(
        model="test-model", messages=[{"role": "user", "content": "a b c d e"}], max_tokens=100, max_completion_tokens=2
    )
    assert sent(ollama_server)["options"]["num_predict"] == 2
    assert reply.choices[0].message.content == "echo: a" and reply.choices[0].finish_reason == "length"


async def test_ollama_only_options_are_reachable_through_extra_body(
    adapter: OllamaAdapter, ollama_server: OllamaServer
) -> None:
    await adapter.chat(
        model="test-model",
        messages=MESSAGES,
        temperature=0.1,
        extra_body={
            "num_ctx": 8192,
            "top_k": 20,
            "keep_alive": "10m",
            "think": False,
            "options": {"repeat_last_n": 64},
        },
    )
    body = sent(ollama_server)
    assert body["options"] == {"temperature": 0.1, "num_ctx": 8192, "top_k": 20, "repeat_last_n": 64}
    assert body["keep_alive"] == "10m" and body["think"] is False


async def test_an_unknown_extra_body_key_is_refused_not_dropped(
    adapter: OllamaAdapter, ollama_server: OllamaServer
) -> None:
    with pytest.raises(openai.BadRequestError, match="repetition_penalty"):
        await adapter.chat(model="test-model", messages=MESSAGES, extra_body={"repetition_penalty": 1.1})
    assert ollama_server.chat_requests() == []


async def test_extra_headers_reach_the_server(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    await adapter.chat(model="test-model", messages=MESSAGES, extra_headers={"X-Trace": "abc"})
    assert ollama_server.chat_requests()[-1].header("X-Trace") == "abc"


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"n": 2}, "n=2"),
        ({"tool_choice": "required", "tools": [NESTED_TOOL]}, "cannot force a tool call"),
        ({"tool_choice": {"type": "function", "function": {"name": "book"}}, "tools": [NESTED_TOOL]}, "cannot force"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"response_format": {"type": "grammar"}}, "grammar"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "custom"),
    ],
)
async def test_what_ollama_cannot_honour_is_refused_before_sending(
    adapter: OllamaAdapter, ollama_server: OllamaServer, params: dict[str, Any], words: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=words) as caught:
        await adapter.chat(**{"model": "test-model", "messages": MESSAGES, **params})
    assert caught.value.status_code == 400 and "local" in caught.value.message
    assert caught.value.code == UNSUPPORTED, "a valid request this backend cannot honour: another backend may"
    assert ollama_server.chat_requests() == []


@pytest.mark.parametrize(
    "messages",
    [
        [],
        ["just a string"],
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@not-base64@@"}}],
            }
        ],
    ],
)
async def test_a_malformed_request_is_an_invalid_request(
    adapter: OllamaAdapter, ollama_server: OllamaServer, messages: list[Any]
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await adapter.chat(model="test-model", messages=messages)
    assert caught.value.code == "invalid_request"
    assert ollama_server.chat_requests() == []


# -- chat: structured output -------------------------------------------------


async def test_json_object_becomes_format_json(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    reply = await adapter.chat(model="test-model", messages=MESSAGES, response_format={"type": "json_object"})
    assert sent(ollama_server)["format"] == "json"
    assert json.loads(reply.choices[0].message.content or "") == {"echo": "hello there"}


async def test_json_schema_is_sent_whole_as_the_format(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    schema = {
        "type": "object",
        "properties": {"echo": {"type": "string", "minLength": 1}},
        "required": ["echo"],
        "additionalProperties": False,
    }
    reply = await adapter.chat(
        model="test-model",
        messages=MESSAGES,
        response_format={"type": "json_schema", "json_schema": {"name": "e", "strict": True, "schema": schema}},
    )
    assert sent(ollama_server)["format"] == schema
    assert json.loads(reply.choices[0].message.content or "")["echo"] == "hello there"


# -- chat: tools -------------------------------------------------------------


async def test_a_nested_tool_schema_reaches_the_server_intact(
    adapter: OllamaAdapter, ollama_server: OllamaServer
) -> None:
    """ollama-python's own chat() strips nested properties, anyOf, default, format (issues #667, #429, #724)."""
    await adapter.chat(model="test-model", messages=MESSAGES, tools=[NESTED_TOOL])
    assert sent(ollama_server)["tools"] == [NESTED_TOOL]


async def test_tool_calls_come_back_with_the_server_ids(adapter: OllamaAdapter) -> None:
    reply = await adapter.chat(model="test-model", messages=MESSAGES, tools=[NESTED_TOOL])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", "Ollama says done_reason=stop; OpenAI callers expect tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.id == "call_srv0" and call.type == "function" and call.function.name == "book"
    assert json.loads(call.function.arguments) == {"text": "hello there"}


async def test_tool_calls_from_an_older_server_get_generated_ids(make_ollama_server) -> None:
    server = make_ollama_server(send_tool_call_ids=False, tool_calls_per_reply=2)
    adapter = OllamaAdapter(host=server.host)
    reply = await adapter.chat(model="test-model", messages=MESSAGES, tools=[NESTED_TOOL])
    ids = [c.id for c in reply.choices[0].message.tool_calls or []]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)
    await adapter.aclose()


async def test_parallel_tool_calls_false_keeps_one_call(make_ollama_server) -> None:
    server = make_ollama_server(tool_calls_per_reply=3)
    adapter = OllamaAdapter(host=server.host)
    reply = await adapter.chat(model="test-model", messages=MESSAGES, tools=[NESTED_TOOL], parallel_tool_calls=False)
    assert [c.id for c in reply.choices[0].message.tool_calls or []] == ["call_srv0"]
    await adapter.aclose()


async def test_tool_choice_none_offers_no_tools(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    reply = await adapter.chat(model="test-model", messages=MESSAGES, tools=[NESTED_TOOL], tool_choice="none")
    assert "tools" not in sent(ollama_server)
    assert reply.choices[0].message.content == "echo: hello there"


async def test_a_multi_turn_tool_conversation_round_trips(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    first = await adapter.chat(model="test-model", messages=MESSAGES, tools=[NESTED_TOOL])
    assistant = first.choices[0].message  # appended as the SDK object, as OpenAI code often does
    call = (assistant.tool_calls or [])[0]
    history = [*MESSAGES, assistant, {"role": "tool", "tool_call_id": call.id, "content": "booked"}]
    second = await adapter.chat(model="test-model", messages=history, tools=[NESTED_TOOL])
    body = sent(ollama_server)
    assert body["messages"][1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_srv0", "function": {"index": 0, "name": "book", "arguments": {"text": "hello there"}}}
        ],
    }
    assert body["messages"][2] == {
        "role": "tool",
        "content": "booked",
        "tool_call_id": "call_srv0",
        "tool_name": "book",
    }
    assert second.choices[0].message.content == "tool book said: booked"
    assert second.choices[0].finish_reason == "stop"


async def test_tool_call_arguments_that_are_not_json_are_refused(adapter: OllamaAdapter) -> None:
    bad = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "book", "arguments": "{not json"}}],
    }
    with pytest.raises(openai.BadRequestError, match="not JSON"):
        await adapter.chat(model="test-model", messages=[*MESSAGES, bad])


# -- chat: messages and images ----------------------------------------------


async def test_roles_and_text_parts_are_converted(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    await adapter.chat(
        model="test-model",
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "system", "content": [{"type": "text", "text": "and kind"}]},
            {"role": "user", "content": [{"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}]},
        ],
    )
    assert sent(ollama_server)["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "and kind"},
        {"role": "user", "content": "line one\nline two"},
    ]


async def test_a_data_uri_image_becomes_a_base64_image(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    b64 = base64.b64encode(image_bytes()).decode()
    await adapter.chat(
        model="test-model",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}", "detail": "low"}},
                ],
            }
        ],
    )
    assert sent(ollama_server)["messages"] == [{"role": "user", "content": "what is this?", "images": [b64]}]


async def test_an_image_url_is_refused_unless_fetching_is_allowed(
    adapter: OllamaAdapter, ollama_server: OllamaServer
) -> None:
    ollama_server.files["dot.png"] = image_bytes()
    part = {"type": "image_url", "image_url": {"url": f"{ollama_server.host}/files/dot.png"}}
    with pytest.raises(openai.BadRequestError, match="fetch_image_urls=True") as caught:
        await adapter.chat(model="test-model", messages=[{"role": "user", "content": [part]}])
    assert caught.value.code == UNSUPPORTED and ollama_server.requests == []


async def test_an_image_url_is_fetched_when_allowed_without_the_ollama_key(ollama_server: OllamaServer) -> None:
    ollama_server.files["dot.png"] = image_bytes()
    adapter = OllamaAdapter(host=ollama_server.host, api_key="secret-key", fetch_image_urls=True)
    part = {"type": "image_url", "image_url": {"url": f"{ollama_server.host}/files/dot.png?sig=abc"}}
    await adapter.chat(model="test-model", messages=[{"role": "user", "content": [part]}])
    fetch, chat = ollama_server.requests
    assert fetch.path == "/files/dot.png" and fetch.header("Authorization") is None
    assert chat.json["messages"][0]["images"] == [base64.b64encode(image_bytes()).decode()]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="could not fetch image") as caught:
        await adapter.chat(
            model="test-model",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": f"{ollama_server.host}/files/missing.png?sig=secret"},
                        }
                    ],
                }
            ],
        )
    assert "sig=secret" not in caught.value.message
    await adapter.aclose()


async def test_a_data_uri_that_is_not_base64_is_refused(adapter: OllamaAdapter) -> None:
    with pytest.raises(openai.BadRequestError, match="base64"):
        await adapter.chat(
            model="test-model",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@not-base64@@"}}],
                }
            ],
        )


# -- thinking ----------------------------------------------------------------


async def test_thinking_text_is_kept_as_reasoning_content(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    reply = await adapter.chat(model="test-model", messages=MESSAGES, reasoning_effort="high")
    assert sent(ollama_server)["think"] == "high"
    assert reply.choices[0].message.reasoning_content == "thinking about: hello there"  # type: ignore[attr-defined]
    assert reply.choices[0].message.content == "echo: hello there"


async def test_reasoning_effort_none_turns_thinking_off(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    await adapter.chat(model="test-model", messages=MESSAGES, reasoning_effort="none")
    assert sent(ollama_server)["think"] is False


@pytest.mark.parametrize("reason", ["load", "unload"])
async def test_load_and_unload_done_reasons_become_stop(make_ollama_server, reason: str) -> None:
    server = make_ollama_server(done_reason=reason)
    adapter = OllamaAdapter(host=server.host)
    reply = await adapter.chat(model="test-model", messages=MESSAGES)
    chunks = [c async for c in adapter.stream_chat(model="test-model", messages=MESSAGES)]
    assert reply.choices[0].finish_reason == "stop" and chunks[-1].choices[0].finish_reason == "stop"
    await adapter.aclose()


# -- streaming ---------------------------------------------------------------


async def test_stream_yields_sdk_chunks_with_one_id_role_first_and_usage_last(adapter: OllamaAdapter) -> None:
    chunks = [
        c
        async for c in adapter.stream_chat(
            model="test-model", messages=MESSAGES, stream_options={"include_usage": True}
        )
    ]
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (2, 3)


async def test_stream_without_include_usage_has_no_usage_chunk(adapter: OllamaAdapter) -> None:
    chunks = [c async for c in adapter.stream_chat(model="test-model", messages=MESSAGES)]
    assert all(c.usage is None and c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_a_streamed_answer_reassembles_to_the_non_streamed_one(adapter: OllamaAdapter) -> None:
    question = [{"role": "user", "content": "the quick brown fox jumps"}]
    whole = await adapter.chat(model="test-model", messages=question, reasoning_effort="low")
    chunks = [
        c
        async for c in adapter.stream_chat(
            model="test-model", messages=question, reasoning_effort="low", stream_options={"include_usage": True}
        )
    ]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == whole.choices[0].message.content
    assert (
        "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
        == whole.choices[0].message.reasoning_content
    )  # type: ignore[attr-defined]
    assert chunks[-1].usage == whole.usage


async def test_streamed_tool_calls_keep_ids_and_get_ordered_indexes(make_ollama_server) -> None:
    server = make_ollama_server(tool_calls_per_reply=2)
    adapter = OllamaAdapter(host=server.host)
    chunks = [c async for c in adapter.stream_chat(model="test-model", messages=MESSAGES, tools=[NESTED_TOOL])]
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.id, tc.function.name) for tc in calls] == [(0, "call_srv0", "book"), (1, "call_srv1", "book")]  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"text": "hello there"}  # type: ignore[union-attr,arg-type]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    await adapter.aclose()


async def test_stream_sends_nothing_until_iterated(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    stream = adapter.stream_chat(model="test-model", messages=MESSAGES)
    await asyncio.sleep(0.05)
    assert ollama_server.chat_requests() == []
    await stream.__anext__()
    assert len(ollama_server.chat_requests()) == 1 and sent(ollama_server)["stream"] is True
    await stream.aclose()


async def test_a_stream_closed_early_releases_its_connection(make_ollama_server) -> None:
    server = make_ollama_server(stream_chunks=500, stream_delay=0.01)
    adapter = OllamaAdapter(host=server.host)
    stream = adapter.stream_chat(model="test-model", messages=MESSAGES)
    await stream.__anext__()
    assert server.open_connections == 1
    await stream.aclose()
    assert await server.released()
    await adapter.aclose()


# -- embeddings, models, health ---------------------------------------------


async def test_embeddings_for_a_list_with_dimensions_and_usage(
    adapter: OllamaAdapter, ollama_server: OllamaServer
) -> None:
    reply = await adapter.embeddings(model="test-model", input=["a", "b c"], dimensions=4, extra_body={"keep_alive": 0})
    assert isinstance(reply, CreateEmbeddingResponse)
    assert [(d.index, len(d.embedding)) for d in reply.data] == [(0, 4), (1, 4)]
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == 3 and reply.model == "test-model"
    assert ollama_server.requests[-1].json == {
        "model": "test-model",
        "input": ["a", "b c"],
        "dimensions": 4,
        "keep_alive": 0,
    }


async def test_embeddings_for_a_string_and_as_base64(adapter: OllamaAdapter) -> None:
    floats = await adapter.embeddings(model="test-model", input="b c")
    packed = await adapter.embeddings(model="test-model", input="b c", encoding_format="base64")
    raw = base64.b64decode(packed.data[0].embedding)  # type: ignore[arg-type]
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(floats.data[0].embedding)


async def test_embeddings_refuse_token_arrays(adapter: OllamaAdapter) -> None:
    with pytest.raises(openai.BadRequestError, match="token arrays"):
        await adapter.embeddings(model="test-model", input=[[1, 2, 3]])


async def test_models_are_owned_by_the_backend_with_their_dates(
    adapter: OllamaAdapter, ollama_server: OllamaServer
) -> None:
    ollama_server.models = ["llama3.2:1b", "qwen3:4b"]
    models = await adapter.list_models()
    assert all(isinstance(m, Model) for m in models)
    assert [(m.id, m.owned_by, m.created) for m in models] == [
        ("llama3.2:1b", "local", 1714582800),
        ("qwen3:4b", "local", 1714582800),
    ]


async def test_health_up_with_model_count_and_latency(adapter: OllamaAdapter) -> None:
    health = await adapter.health()
    assert health.up and health.models == 1 and health.latency > 0 and health.error is None


async def test_health_down_on_a_closed_port(free_port: int) -> None:
    adapter = OllamaAdapter("gone", host=f"127.0.0.1:{free_port}")
    health = await adapter.health()
    assert not health.up and "APIConnectionError" in (health.error or "") and "gone" in (health.error or "")
    await adapter.aclose()


# -- host, key, headers --------------------------------------------------------


async def test_host_comes_from_ollama_host_when_not_given(ollama_server: OllamaServer, monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama_server.port}")
    adapter = OllamaAdapter()
    assert adapter.name == "ollama" and adapter.host == ollama_server.host
    assert (await adapter.chat(model="test-model", messages=MESSAGES)).choices[0].message.content == "echo: hello there"
    await adapter.aclose()


def test_host_defaults_to_the_local_ollama() -> None:
    assert OllamaAdapter().host == "http://localhost:11434"


def test_a_host_with_a_foreign_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ftp://box"):
        OllamaAdapter("box", host="ftp://box:11434")


async def test_key_and_headers_are_sent_and_the_key_stays_out_of_repr(ollama_server: OllamaServer) -> None:
    adapter = OllamaAdapter("proxied", host=ollama_server.host, api_key="sk-ollama-secret", headers={"X-Team": "a"})
    await adapter.chat(model="test-model", messages=MESSAGES)
    request = ollama_server.chat_requests()[-1]
    assert request.header("Authorization") == "Bearer sk-ollama-secret" and request.header("X-Team") == "a"
    assert "sk-ollama-secret" not in repr(adapter)
    await adapter.aclose()


async def test_no_key_is_sent_by_default(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    await adapter.chat(model="test-model", messages=MESSAGES)
    assert ollama_server.chat_requests()[-1].header("Authorization") is None


async def test_logprobs_come_back_in_openai_shape(adapter: OllamaAdapter, ollama_server: OllamaServer) -> None:
    reply = await adapter.chat(model="test-model", messages=MESSAGES, logprobs=True, top_logprobs=1)
    assert (sent(ollama_server)["logprobs"], sent(ollama_server)["top_logprobs"]) == (True, 1)
    tokens = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert [t.token for t in tokens or []] == ["echo:", " hello", " there"]
    assert tokens and tokens[0].logprob == -0.5 and tokens[0].top_logprobs[0].token == "echo:"
    chunks = [c async for c in adapter.stream_chat(model="test-model", messages=MESSAGES, logprobs=True)]
    streamed = [
        t.token for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []
    ]
    assert streamed == ["echo:", " hello", " there"]


async def test_an_explicit_key_wins_over_ollama_api_key(ollama_server: OllamaServer, monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "ambient-key")
    ambient = OllamaAdapter(host=ollama_server.host)
    explicit = OllamaAdapter(host=ollama_server.host, api_key="mine")
    for adapter in (ambient, explicit):
        await adapter.chat(model="test-model", messages=MESSAGES)
        await adapter.aclose()
    assert [r.header("Authorization") for r in ollama_server.chat_requests()] == ["Bearer ambient-key", "Bearer mine"]


# -- through turnout's client: Ollama's answers on the OpenAI wire -----------------


class Trip(BaseModel):
    city: str
    days: int


@pytest.fixture
def client(ollama_server: OllamaServer, client_over) -> turnout.AsyncOpenAI:
    return client_over(OllamaAdapter("local", host=ollama_server.host, timeout=5))


async def test_parse_fills_a_pydantic_model_from_ollamas_constrained_json(
    client: turnout.AsyncOpenAI, ollama_server: OllamaServer
) -> None:
    reply = await client.chat.completions.parse(model="test-model", messages=MESSAGES, response_format=Trip)
    assert reply.choices[0].message.parsed == Trip(city="hello there", days=0)
    schema = sent(ollama_server)["format"]
    assert set(schema["properties"]) == {"city", "days"} and schema["additionalProperties"] is False
    assert turnout.served_by(reply) == "local"


async def test_a_raw_response_has_ollamas_status_and_a_request_id(client: turnout.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="test-model", messages=MESSAGES)
    again = await client.chat.completions.with_raw_response.create(model="test-model", messages=MESSAGES)
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("application/json")
    assert raw.request_id and raw.request_id.startswith("req_") and raw.request_id != again.request_id
    reply = raw.parse()
    assert isinstance(reply, ChatCompletion) and reply.choices[0].message.content == "echo: hello there"
    assert turnout.served_by(raw) == "local"
    with pytest.raises(openai.NotFoundError, match="not found, try pulling it first") as caught:
        await client.chat.completions.with_raw_response.create(model="no-such-model", messages=MESSAGES)
    assert caught.value.status_code == 404


async def test_the_stream_helper_gives_events_and_the_final_completion(client: turnout.AsyncOpenAI) -> None:
    async with client.chat.completions.stream(model="test-model", messages=MESSAGES, response_format=Trip) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_completion()
    assert "content.delta" in kinds and kinds[-1] == "content.done"
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.parsed == Trip(city="hello there", days=0)


async def test_a_stream_through_the_client_has_its_response(client: turnout.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    assert stream.response.status_code == 200 and stream.response.headers["x-request-id"].startswith("req_")
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: hello there" and turnout.served_by(stream) == "local"


async def test_embeddings_through_the_client_decode_as_from_openai(client: turnout.AsyncOpenAI) -> None:
    """The SDK asks for base64 by default and decodes it itself; asked for floats, it gets floats."""
    default = await client.embeddings.create(model="test-model", input=["a", "b c"], dimensions=4)
    floats = await client.embeddings.create(
        model="test-model", input=["a", "b c"], dimensions=4, encoding_format="float"
    )
    assert isinstance(default, CreateEmbeddingResponse) and turnout.served_by(default) == "local"
    assert [len(d.embedding) for d in default.data] == [4, 4]
    assert [d.embedding for d in default.data] == [pytest.approx(d.embedding) for d in floats.data]
    assert default.usage.prompt_tokens == 3


async def test_embeddings_through_the_client_raise_no_warnings(client: turnout.AsyncOpenAI) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await client.embeddings.create(model="test-model", input="b c")
    assert [str(w.message) for w in caught] == []


async def test_models_list_through_the_client(client: turnout.AsyncOpenAI, ollama_server: OllamaServer) -> None:
    ollama_server.models = ["llama3.2:1b", "qwen3:4b"]
    assert [(m.id, m.owned_by, m.created) async for m in client.models.list()] == [
        ("llama3.2:1b", "local", 1714582800),
        ("qwen3:4b", "local", 1714582800),
    ]
    assert (await client.models.retrieve("qwen3:4b")).owned_by == "local"


async def test_extra_headers_through_the_client_reach_ollama(
    client: turnout.AsyncOpenAI, ollama_server: OllamaServer
) -> None:
    await client.chat.completions.create(model="test-model", messages=MESSAGES, extra_headers={"X-Trace": "abc"})
    await client.with_options(default_headers={"X-Team": "a"}).embeddings.create(model="test-model", input="b c")
    assert ollama_server.chat_requests()[-1].header("X-Trace") == "abc"
    assert ollama_server.requests[-1].path == "/api/embed" and ollama_server.requests[-1].header("X-Team") == "a"
