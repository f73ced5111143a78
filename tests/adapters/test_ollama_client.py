"""Ollama behind turnout's clients, sync and async, as the failover target of a dead OpenAI-compatible primary.

Ollama speaks its own protocol; turnout's Ollama adapter answers in the OpenAI
wire format, so the caller's SDK (create, streams, parse, raw responses,
embeddings, models) cannot tell which protocol served it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import turnout
from tests.support.loopback import OllamaServer
from turnout import Backend, Router
from turnout.adapters import OllamaAdapter, OpenAICompatAdapter

MESSAGES = [{"role": "user", "content": "hello there"}]


class Trip(BaseModel):
    city: str
    days: int


async def settle(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def chunks_of(stream: Any) -> list[Any]:
    if hasattr(stream, "__aiter__"):
        return [chunk async for chunk in stream]
    return list(stream)


@pytest.fixture(params=["async", "sync"])
def client(request: pytest.FixtureRequest, ollama_server: OllamaServer, free_port: int) -> Iterator[Any]:
    """A dead OpenAI-compatible primary (closed port, no retries), then Ollama."""
    router = Router(
        [
            Backend(
                OpenAICompatAdapter("dead", preset="vllm", base_url=f"http://127.0.0.1:{free_port}/v1", timeout=5),
                max_retries=0,
            ),
            Backend(OllamaAdapter("local", host=ollama_server.host, timeout=5), max_retries=0),
        ]
    )
    made = (turnout.AsyncOpenAI if request.param == "async" else turnout.OpenAI)(router=router)
    yield made
    if request.param == "sync":
        made.close()


async def test_a_completion_fails_over_to_ollama(client: Any) -> None:
    reply = await settle(client.chat.completions.create(model="test-model", messages=MESSAGES))
    assert reply.choices[0].message.content == "echo: hello there" and turnout.served_by(reply) == "local"
    assert client.router.stats()["dead"]["failures"] == 1


async def test_a_stream_fails_over_to_ollama_with_its_response(client: Any) -> None:
    stream = await settle(client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True))
    assert stream.response.headers["x-turnout-backend"] == "local"
    chunks = await chunks_of(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello there"
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_parse_and_raw_responses_work_on_ollama(client: Any) -> None:
    parsed = await settle(client.chat.completions.parse(model="test-model", messages=MESSAGES, response_format=Trip))
    assert parsed.choices[0].message.parsed == Trip(city="hello there", days=0)
    raw = await settle(client.chat.completions.with_raw_response.create(model="test-model", messages=MESSAGES))
    assert raw.status_code == 200 and raw.request_id.startswith("req_")
    assert raw.parse().choices[0].message.content == "echo: hello there" and turnout.served_by(raw) == "local"


async def test_embeddings_fail_over_to_ollama_and_models_leave_out_the_dead(
    client: Any, ollama_server: OllamaServer
) -> None:
    answer = await settle(client.embeddings.create(model="test-model", input=["a", "b"]))
    assert [d.index for d in answer.data] == [0, 1] and turnout.served_by(answer) == "local"
    assert client.router.stats()["dead"]["failures"] == 1
    page = await settle(client.models.list())
    assert {(m.id, m.owned_by) for m in page.data} == {(name, "local") for name in ollama_server.models}
