"""The Responses API through turnout's clients, on every kind of backend, with failover.

Each scenario runs on three kinds of backend, each behind a dead primary:
a chat-only server (the bridge; its kind is unknown, so it is asked natively
first and learns it must be bridged), a server with the Responses API
(passed through), and Ollama (the native adapter: bridged). The caller's code
is the same plain ``client.responses`` code in every case.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel

import turnout
from tests.support.loopback import Fault, OllamaServer, OpenAIServer
from turnout import Backend, Router
from turnout.adapters import OllamaAdapter, OpenAICompatAdapter

KINDS = ("chat-only", "native", "ollama")
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class City(BaseModel):
    name: str
    population: int


def dead(port: int) -> Backend:
    """A primary with the Responses API on a closed port: every request to it fails to connect."""
    return Backend(
        OpenAICompatAdapter("dead", preset="vllm", base_url=f"http://127.0.0.1:{port}/v1", timeout=5), max_retries=0
    )


def live(kind: str, server: Any, name: str = "live") -> Backend:
    if kind == "ollama":
        return Backend(OllamaAdapter(name, host=server.host, timeout=5), max_retries=0)
    preset = "openai_compat" if kind == "chat-only" else "vllm"
    return Backend(OpenAICompatAdapter(name, preset=preset, base_url=server.base_url, timeout=5), max_retries=0)


def start(kind: str, **knobs: Any) -> Any:
    if kind == "ollama":
        return OllamaServer(**knobs).start()
    return OpenAIServer(disabled={"responses"} if kind == "chat-only" else set(), **knobs).start()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    return str(request.param)


@pytest.fixture
def server(kind: str) -> Iterator[Any]:
    made = start(kind)
    yield made
    made.stop()


@pytest.fixture
async def client(kind: str, server: Any, free_port: int) -> Any:
    made = turnout.AsyncOpenAI(router=Router([dead(free_port), live(kind, server)], stateful_backend="live"))
    yield made
    await made.close()


def sent(server: Any) -> list[dict[str, Any]]:
    """The bodies the backend received for answers: chat requests (bridged) or Responses requests."""
    return [r.json for r in server.requests if r.json is not None and r.method == "POST"]


def chat_messages(server: Any) -> list[dict[str, Any]]:
    return sent(server)[-1]["messages"]


# -- one answer -------------------------------------------------------------------------
async def test_plain_text_fails_over_from_the_dead_primary(client: Any, server: Any, kind: str) -> None:
    reply = await client.responses.create(model="test-model", input="hello there")
    assert reply.output_text == "echo: hello there"
    assert reply.status == "completed" and reply.object == "response" and reply.id.startswith("resp")
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens
    assert turnout.served_by(reply) == "live"
    assert client.router.stats()["dead"]["failures"] == 1


async def test_instructions_reach_the_backend_as_its_system_prompt(client: Any, server: Any, kind: str) -> None:
    reply = await client.responses.create(model="test-model", instructions="Answer in French.", input="hi")
    assert reply.instructions == "Answer in French." and reply.output_text == "echo: hi"
    if kind == "native":
        assert sent(server)[-1]["instructions"] == "Answer in French."
    else:
        assert chat_messages(server)[0] == {"role": "system", "content": "Answer in French."}


async def test_a_multi_turn_item_list_is_the_conversation(client: Any, server: Any, kind: str) -> None:
    reply = await client.responses.create(
        model="test-model",
        input=[
            {"role": "user", "content": "my name is Ada"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello Ada"}]},
            {"role": "user", "content": [{"type": "input_text", "text": "what is my name?"}]},
        ],
    )
    assert reply.output_text == "echo: what is my name?"
    if kind != "native":
        roles = [m["role"] for m in chat_messages(server)]
        assert roles == ["user", "assistant", "user"]


async def test_a_tool_round_trip(client: Any, server: Any, kind: str) -> None:
    first = await client.responses.create(model="test-model", input="weather in Paris?", tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id
    history: list[Any] = [
        {"role": "user", "content": "weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
    ]
    history.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 24C"})
    second = await client.responses.create(model="test-model", input=history, tools=[WEATHER])
    assert "sunny, 24C" in second.output_text
    assert not [item for item in second.output if item.type == "function_call"]
    if kind != "native":
        messages = chat_messages(server)
        assert messages[1]["tool_calls"][0]["id"] == calls[0].call_id
        assert messages[2]["role"] == "tool" and messages[2]["tool_call_id"] == calls[0].call_id


async def test_parse_with_a_text_format_model(client: Any, kind: str) -> None:
    reply = await client.responses.parse(model="test-model", input="a city", text_format=City)
    assert isinstance(reply.output_parsed, City)
    assert turnout.served_by(reply) == "live"


async def test_length_limited_output_is_incomplete(kind: str, free_port: int) -> None:
    server = start(kind, **({"done_reason": "length"} if kind == "ollama" else {}))
    try:
        async with turnout.AsyncOpenAI(router=Router([dead(free_port), live(kind, server)])) as client:
            reply = await client.responses.create(model="test-model", input="a long story please", max_output_tokens=2)
        assert reply.status == "incomplete"
        assert reply.incomplete_details is not None and reply.incomplete_details.reason == "max_output_tokens"
    finally:
        server.stop()


# -- streams ------------------------------------------------------------------------------
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def collapsed(types: list[str]) -> list[str]:
    """Event types with runs of deltas collapsed to one."""
    return [t for i, t in enumerate(types) if not (t.endswith(".delta") and i and types[i - 1] == t)]


async def test_a_stream_through_the_stream_helper(client: Any, kind: str) -> None:
    async with client.responses.stream(model="test-model", input="stream me please") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    assert collapsed([e.type for e in events]) == TEXT_EVENTS
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: stream me please"
    assert final.output_text == "echo: stream me please" and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens > 0


async def test_a_streamed_tool_call(client: Any, kind: str) -> None:
    async with client.responses.stream(model="test-model", input="weather in Oslo?", tools=[WEATHER]) as stream:
        types = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.function_call_arguments.done" in types
    calls = [item for item in final.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and calls[0].call_id and calls[0].arguments


@pytest.mark.parametrize("kind", ["chat-only"], indirect=True)
async def test_bridged_streams_reuse_the_backends_connection(kind: str) -> None:
    """The chat stream behind a bridged one is read to its end, so its connection goes back to the pool."""
    with OpenAIServer(disabled={"responses"}) as server:
        async with turnout.AsyncOpenAI(router=Router([live(kind, server)])) as client:
            for _ in range(4):
                async with client.responses.stream(model="test-model", input="again") as stream:
                    assert (await stream.get_final_response()).output_text == "echo: again"
        assert server.connections_made == 1


async def test_create_with_stream_true(client: Any) -> None:
    stream = await client.responses.create(model="test-model", input="hi", stream=True)
    events = [event async for event in stream]
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.output_text == "echo: hi"
    assert stream.response.headers["x-turnout-backend"] == "live"


# -- what is not failed over, and what is refused -----------------------------------------------
@pytest.mark.parametrize("kind", ["chat-only", "ollama"], indirect=True)
async def test_a_bridged_bad_request_is_not_failed_over(kind: str) -> None:
    first, second = start(kind), start(kind)
    try:
        first.fail(Fault(status=400, message="messages: invalid", error_type="invalid_request_error"))
        async with turnout.AsyncOpenAI(router=Router([live(kind, first, "first"), live(kind, second, "second")])) as c:
            with pytest.raises(openai.BadRequestError):
                await c.responses.create(model="test-model", input="hi")
        assert second.requests == []
    finally:
        first.stop()
        second.stop()


async def test_a_built_in_tool_goes_only_to_a_backend_with_the_responses_api(make_openai_server: Any) -> None:
    chat_only = make_openai_server(disabled={"responses"})
    native = make_openai_server()
    router = Router(
        [
            Backend(OpenAICompatAdapter("chat", preset="tgi", base_url=chat_only.base_url), max_retries=0),
            Backend(OpenAICompatAdapter("native", preset="vllm", base_url=native.base_url), max_retries=0),
        ]
    )
    async with turnout.AsyncOpenAI(router=router) as client:
        reply = await client.responses.create(model="test-model", input="news?", tools=[{"type": "web_search"}])
    assert turnout.served_by(reply) == "native" and chat_only.requests == []


async def test_a_built_in_tool_with_no_backend_that_can_says_so(make_openai_server: Any) -> None:
    chat_only = make_openai_server(disabled={"responses"})
    router = Router([Backend(OpenAICompatAdapter("chat", preset="tgi", base_url=chat_only.base_url), max_retries=0)])
    async with turnout.AsyncOpenAI(router=router) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="test-model", input="news?", tools=[{"type": "web_search"}])
        with pytest.raises(openai.BadRequestError) as background:
            await client.responses.create(model="test-model", input="later", background=True)
    assert caught.value.code == "unsupported_by_backend" and "web_search" in caught.value.message
    assert background.value.code == "unsupported_by_backend" and "background" in background.value.message
    assert chat_only.requests == []


async def test_an_unknown_backend_is_asked_once_then_bridged(openai_server: OpenAIServer) -> None:
    chat_only = OpenAIServer(disabled={"responses"}).start()
    try:
        adapter = OpenAICompatAdapter("local", preset="openai_compat", base_url=chat_only.base_url)
        async with turnout.AsyncOpenAI(router=Router([Backend(adapter, max_retries=0)])) as client:
            for _ in range(3):
                assert (await client.responses.create(model="test-model", input="hi")).output_text == "echo: hi"
        paths = [r.path for r in chat_only.requests]
        assert paths == ["/v1/responses", "/v1/chat/completions", "/v1/chat/completions", "/v1/chat/completions"]
    finally:
        chat_only.stop()


# -- state: follow-ups, retrieve, delete, input items ---------------------------------------------
@pytest.mark.parametrize("kind", ["chat-only", "ollama"], indirect=True)  # native: the next test
async def test_a_follow_up_replays_a_bridged_conversation_on_any_backend(kind: str) -> None:
    first, second = start(kind), start(kind)
    try:
        router = Router([live(kind, first, "first"), live(kind, second, "second")])
        async with turnout.AsyncOpenAI(router=router) as client:
            one = await client.responses.create(model="test-model", instructions="Be brief.", input="my name is Ada")
            first.fail(Fault(status=503))
            two = await client.responses.create(
                model="test-model", input="what is my name?", previous_response_id=one.id
            )
        assert turnout.served_by(two) == "second" and two.previous_response_id == one.id
        messages = chat_messages(second)
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]  # instructions are not carried over
        assert messages[0]["content"] == "my name is Ada" and messages[1]["content"] == "echo: my name is Ada"
    finally:
        first.stop()
        second.stop()


async def test_a_follow_up_of_a_native_response_stays_with_its_backend(make_openai_server: Any) -> None:
    first, second = make_openai_server(), make_openai_server()
    router = Router(
        [
            Backend(OpenAICompatAdapter("first", preset="vllm", base_url=first.base_url), max_retries=0),
            Backend(OpenAICompatAdapter("second", preset="vllm", base_url=second.base_url), max_retries=0),
        ]
    )
    async with turnout.AsyncOpenAI(router=router) as client:
        one = await client.responses.create(model="test-model", input="my name is Ada")
        two = await client.responses.create(model="test-model", input="and mine?", previous_response_id=one.id)
        assert turnout.served_by(two) == "first" and sent(first)[-1]["previous_response_id"] == one.id
        first.fail(Fault(status=503))
        with pytest.raises(openai.InternalServerError):
            await client.responses.create(model="test-model", input="again?", previous_response_id=two.id)
    assert second.requests == []  # its state lives at the first: never failed over


async def test_retrieve_delete_and_input_items(client: Any, server: Any, kind: str) -> None:
    made = await client.responses.create(model="test-model", input="keep this")
    got = await client.responses.retrieve(made.id)
    assert got.id == made.id and got.output_text == "echo: keep this"
    items = await client.responses.input_items.list(made.id)
    assert [item.type for item in items.data] == ["message"]
    assert items.data[0].content[0].text == "keep this"
    await client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(made.id)


async def test_a_response_not_stored_is_not_kept(client: Any, kind: str) -> None:
    made = await client.responses.create(model="test-model", input="forget this", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(made.id)


async def test_an_unknown_id_with_no_backend_to_hold_it_is_a_clear_404(make_openai_server: Any) -> None:
    chat_only = make_openai_server(disabled={"responses"})
    router = Router(
        [Backend(OpenAICompatAdapter("chat", preset="tgi", base_url=chat_only.base_url), max_retries=0)],
        responses_ttl=60,
    )
    async with turnout.AsyncOpenAI(router=router) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.responses.create(model="test-model", input="hi", previous_response_id="resp_gone")
    assert "resp_gone" in caught.value.message and "60s" in caught.value.message
    assert chat_only.requests == []


# -- the sync client --------------------------------------------------------------------------
def test_the_sync_client_creates_and_streams(free_port: int) -> None:
    with OpenAIServer(disabled={"responses"}) as server:
        with turnout.OpenAI(router=Router([dead(free_port), live("chat-only", server)])) as client:
            reply = client.responses.create(model="test-model", input="hello")
            with client.responses.stream(model="test-model", input="streamed") as stream:
                text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            follow = client.responses.create(model="test-model", input="again", previous_response_id=reply.id)
    assert reply.output_text == "echo: hello" and text == "echo: streamed" and follow.output_text == "echo: again"
