"""The same caller code, through turnout's client, over OpenAI (OpenAICompatAdapter) and over Ollama (OllamaAdapter):
same types, same fields filled."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from pydantic import BaseModel

import turnout
from tests.support.loopback import OllamaServer, OpenAIServer
from turnout.adapters import OllamaAdapter, OpenAICompatAdapter

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        },
    }
]


Client = turnout.AsyncOpenAI


@pytest.fixture
def pair(openai_server: OpenAIServer, ollama_server: OllamaServer, client_over) -> tuple[Client, Client]:
    openai_like = client_over(OpenAICompatAdapter("remote", preset="vllm", base_url=openai_server.base_url, timeout=5))
    ollama_like = client_over(OllamaAdapter("local", host=ollama_server.host, timeout=5))
    return openai_like, ollama_like


def filled(value: Any, path: str = "") -> set[str]:
    """Dotted paths of every field that is set (not None), lists collapsed to ``[]``."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if item is not None:
                here = f"{path}.{key}" if path else key
                paths |= {here} | filled(item, here)
    elif isinstance(value, list):
        for item in value:
            paths |= filled(item, f"{path}[]")
    return paths


async def same_shape(pair: tuple[Client, Client], call: Callable[[Client], Any]) -> tuple[Any, Any]:
    """Run ``call`` on both clients; both answers must be of one type with the same fields filled."""
    a, b = [await call(client) for client in pair]
    assert type(a) is type(b)
    assert filled(a) == filled(b)
    return a, b


async def test_a_plain_chat(pair: tuple[Client, Client]) -> None:
    a, b = await same_shape(
        pair, lambda c: c.chat.completions.create(model="test-model", messages=MESSAGES, temperature=0.2, max_tokens=50)
    )
    assert a.choices[0].message.content == b.choices[0].message.content == "echo: hello there"
    assert a.choices[0].finish_reason == b.choices[0].finish_reason == "stop"


async def test_a_tool_call_and_its_answer(pair: tuple[Client, Client]) -> None:
    a, b = await same_shape(
        pair, lambda c: c.chat.completions.create(model="test-model", messages=MESSAGES, tools=TOOLS)
    )
    for reply in (a, b):
        call = reply.choices[0].message.tool_calls[0]
        assert reply.choices[0].finish_reason == "tool_calls" and call.function.name == "lookup"
        assert json.loads(call.function.arguments) == {"text": "hello there"}

    async def answer(client: Client) -> Any:
        first = await client.chat.completions.create(model="test-model", messages=MESSAGES, tools=TOOLS)
        call = first.choices[0].message.tool_calls[0]
        history = [
            *MESSAGES,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "found"},
        ]
        return await client.chat.completions.create(model="test-model", messages=history, tools=TOOLS)

    a, b = await same_shape(pair, answer)
    assert "found" in (a.choices[0].message.content or "") and "found" in (b.choices[0].message.content or "")


async def test_a_json_answer(pair: tuple[Client, Client]) -> None:
    a, b = await same_shape(
        pair,
        lambda c: c.chat.completions.create(
            model="test-model", messages=MESSAGES, response_format={"type": "json_object"}
        ),
    )
    assert (
        json.loads(a.choices[0].message.content) == json.loads(b.choices[0].message.content) == {"echo": "hello there"}
    )


@pytest.mark.parametrize("tools", [None, TOOLS])
async def test_a_stream_with_usage(pair: tuple[Client, Client], tools: list[dict[str, Any]] | None) -> None:
    async def stream(client: Client) -> list[Any]:
        extra = {"tools": tools} if tools else {}
        return [
            c
            async for c in await client.chat.completions.create(
                model="test-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}, **extra
            )
        ]

    a, b = [await stream(client) for client in pair]
    assert {type(c) for c in a} == {type(c) for c in b}
    assert a[0].choices[0].delta.role == b[0].choices[0].delta.role == "assistant"
    assert [filled(c) for c in a[-2:]] == [filled(c) for c in b[-2:]], "finish chunk, then the usage chunk"
    assert set().union(*map(filled, a[:-2])) == set().union(*map(filled, b[:-2])), "the deltas fill the same fields"
    text = ["".join(c.choices[0].delta.content or "" for c in chunks if c.choices) for chunks in (a, b)]
    assert text[0] == text[1]


async def test_embeddings(pair: tuple[Client, Client]) -> None:
    a, b = await same_shape(pair, lambda c: c.embeddings.create(model="test-model", input=["a", "b c"], dimensions=4))
    assert [len(d.embedding) for d in a.data] == [len(d.embedding) for d in b.data] == [4, 4]


async def test_models(pair: tuple[Client, Client]) -> None:
    a, b = await same_shape(pair, lambda c: c.models.list())
    assert [m.id for m in a.data] == [m.id for m in b.data] == ["test-model"]
    assert (a.data[0].owned_by, b.data[0].owned_by) == ("remote", "local")


async def test_health(pair: tuple[Client, Client]) -> None:
    (a,), (b,) = [(await client.router.health()).values() for client in pair]
    assert a.up and b.up and a.models == b.models == 1
