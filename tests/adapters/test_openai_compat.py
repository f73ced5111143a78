"""OpenAICompatAdapter as users reach it, through turnout's openai client, against the loopback OpenAI server.

What matters is what reaches the server (headers, key, body, every SDK
parameter) and what comes back (the SDK's types, the SDK's exceptions).
"""

from __future__ import annotations

import openai
import pytest
from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import turnout
from tests.support.loopback import Fault, OpenAIServer
from turnout.adapters import Adapter, OpenAICompatAdapter
from turnout.adapters.openai_compat import LOCAL_PLACEHOLDER_KEY

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def adapter(openai_server: OpenAIServer):
    a = OpenAICompatAdapter("local", preset="llamacpp", base_url=openai_server.base_url, timeout=5)
    yield a
    await a.aclose()


@pytest.fixture
def client(adapter: OpenAICompatAdapter, client_over) -> turnout.AsyncOpenAI:
    return client_over(adapter)


async def test_it_keeps_the_adapter_protocol(adapter: OpenAICompatAdapter, openai_server: OpenAIServer) -> None:
    assert isinstance(adapter, Adapter)
    assert adapter.base_url == openai_server.base_url


async def test_chat_returns_the_sdk_type(client: turnout.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert isinstance(reply, ChatCompletion)
    assert reply.choices[0].message.content == "echo: hello there"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.total_tokens == 2 + 3
    assert turnout.served_by(reply) == "local"


async def test_every_parameter_and_header_reaches_the_server(
    client: turnout.AsyncOpenAI, openai_server: OpenAIServer
) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string", "format": "uri"}},
                    "required": ["q"],
                },
            },
        }
    ]
    await client.chat.completions.create(
        model="test-model",
        messages=MESSAGES,
        tools=tools,
        tool_choice="auto",
        temperature=0.25,
        seed=7,
        response_format={"type": "json_object"},
        max_tokens=40,
        stop=["\n"],
        extra_body={"num_ctx": 4096, "top_k": 20},
        extra_headers={"X-Trace": "abc"},
        extra_query={"tag": "t1"},
    )
    sent = openai_server.chat_requests()[-1]
    assert sent.json == {
        "model": "test-model",
        "messages": MESSAGES,
        "tools": tools,
        "tool_choice": "auto",
        "temperature": 0.25,
        "seed": 7,
        "response_format": {"type": "json_object"},
        "max_tokens": 40,
        "stop": ["\n"],
        "num_ctx": 4096,
        "top_k": 20,
    }
    assert sent.header("X-Trace") == "abc"
    assert sent.query == {"tag": "t1"}


async def test_tool_calls_come_back_parsed(client: turnout.AsyncOpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    reply = await client.chat.completions.create(model="test-model", messages=MESSAGES, tools=tools)
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup" and call.function.arguments == '{"text": "hello there"}'


async def test_stream_yields_sdk_chunks_with_usage(client: turnout.AsyncOpenAI, openai_server: OpenAIServer) -> None:
    stream = await client.chat.completions.create(
        model="test-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert stream.response.status_code == 200, "the backend's own response, headers and all"
    assert stream.response.headers["x-request-id"] == openai_server.chat_requests()[-1].request_id
    assert turnout.served_by(stream) == "local"


async def test_a_stream_is_open_and_started_when_create_returns(
    client: turnout.AsyncOpenAI, openai_server: OpenAIServer
) -> None:
    """The router reads a stream up to its first event before handing it over (so it can still fail over);
    the rest is read as the caller iterates: a cut after the first events surfaces only then."""
    openai_server.fail(Fault(cut_after=2), times=1)
    stream = await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    assert len(openai_server.chat_requests()) == 1
    first = await stream.__anext__()
    assert first.choices[0].delta.role == "assistant"
    with pytest.raises(turnout.BrokenStreamError):
        async for _ in stream:
            pass


async def test_a_stream_closed_early_releases_its_connection(make_openai_server, client_over) -> None:
    server = make_openai_server(stream_chunks=500, stream_delay=0.01)
    client = client_over(OpenAICompatAdapter("slow", preset="vllm", base_url=server.base_url))
    stream = await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    await stream.__anext__()
    assert server.open_connections == 1
    await stream.close()
    assert await server.released()


async def test_embeddings(client: turnout.AsyncOpenAI) -> None:
    reply = await client.embeddings.create(model="test-model", input=["a", "b c"], dimensions=4)
    assert isinstance(reply, CreateEmbeddingResponse)
    assert [len(d.embedding) for d in reply.data] == [4, 4]
    assert reply.usage.prompt_tokens == 3
    assert turnout.served_by(reply) == "local"


async def test_models_are_owned_by_the_backend(
    adapter: OpenAICompatAdapter, client: turnout.AsyncOpenAI, openai_server: OpenAIServer
) -> None:
    openai_server.models = ["m1", "m2"]
    models = await adapter.list_models()
    assert all(isinstance(m, Model) for m in models)
    assert [(m.id, m.owned_by) for m in models] == [("m1", "local"), ("m2", "local")]
    assert [(m.id, m.owned_by) async for m in client.models.list()] == [("m1", "local"), ("m2", "local")]


async def test_health_up_with_model_count(adapter: OpenAICompatAdapter) -> None:
    health = await adapter.health()
    assert health.up and health.models == 1 and health.latency > 0 and health.error is None


async def test_health_down_on_a_closed_port(free_port: int) -> None:
    adapter = OpenAICompatAdapter("gone", preset="vllm", base_url=f"http://127.0.0.1:{free_port}/v1")
    health = await adapter.health()
    assert not health.up and "APIConnectionError" in (health.error or "")
    await adapter.aclose()


async def test_health_up_for_a_server_without_a_models_route(
    adapter: OpenAICompatAdapter, openai_server: OpenAIServer
) -> None:
    openai_server.fail(Fault(status=404, message="no such route"), times=1)
    health = await adapter.health()
    assert health.up and health.models is None


async def test_health_down_when_the_key_is_refused(adapter: OpenAICompatAdapter, openai_server: OpenAIServer) -> None:
    openai_server.fail(Fault(status=401, message="bad key"), times=1)
    health = await adapter.health()
    assert not health.up and "401" in (health.error or "")


# -- keys -----------------------------------------------------------------


async def test_key_is_sent_as_bearer_token(openai_server: OpenAIServer, client_over) -> None:
    adapter = OpenAICompatAdapter(
        "mine", preset="openai_compat", base_url=openai_server.base_url, api_key="sk-test-123"
    )
    client = client_over(adapter)
    await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert openai_server.requests[-1].header("Authorization") == "Bearer sk-test-123"
    assert "sk-test-123" not in repr(adapter) and "sk-test-123" not in repr(client)
    assert client.api_key != "sk-test-123", "a library reading client.api_key must not get this provider's key"


async def test_local_preset_sends_a_placeholder_key(client: turnout.AsyncOpenAI, openai_server: OpenAIServer) -> None:
    await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert openai_server.requests[-1].header("Authorization") == f"Bearer {LOCAL_PLACEHOLDER_KEY}"


async def test_local_preset_never_borrows_the_openai_key(openai_server: OpenAIServer, monkeypatch, client_over) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    client = client_over(OpenAICompatAdapter("local", preset="lmstudio", base_url=openai_server.base_url))
    await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert "sk-openai-secret" not in str(openai_server.requests[-1].headers)


async def test_openai_account_headers_stay_away_from_other_providers(
    openai_server: OpenAIServer, monkeypatch, client_over
) -> None:
    """The caller's client is an openai client too, built after these are set: it must not carry them either."""
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-secret")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-secret")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "X-Openai-Only: yes")
    client = client_over(OpenAICompatAdapter(preset="groq", base_url=openai_server.base_url, headers={"X-Mine": "1"}))
    await client.chat.completions.create(model="test-model", messages=MESSAGES)
    headers = {k.lower(): v for k, v in openai_server.requests[-1].headers.items()}
    assert headers["authorization"] == "Bearer gsk-test" and headers["x-mine"] == "1"
    assert not {"openai-organization", "openai-project", "x-openai-only"} & set(headers)


# -- faults ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(status=400), openai.BadRequestError),
        (Fault(status=401), openai.AuthenticationError),
        (Fault(status=403), openai.PermissionDeniedError),
        (Fault(status=404), openai.NotFoundError),
        (Fault(status=409), openai.ConflictError),
        (Fault(status=422), openai.UnprocessableEntityError),
        (Fault(status=429, retry_after="2"), openai.RateLimitError),
        (Fault(status=500), openai.InternalServerError),
        (Fault(status=503), openai.InternalServerError),
        (Fault(close=True), openai.APIConnectionError),
        (Fault(malformed=True), openai.APIResponseValidationError),
        (Fault(hang=True), openai.APITimeoutError),
    ],
)
async def test_every_fault_surfaces_as_the_matching_openai_exception(
    openai_server: OpenAIServer, client_over, fault: Fault, error: type
) -> None:
    client = client_over(OpenAICompatAdapter("faulty", preset="vllm", base_url=openai_server.base_url, timeout=0.5))
    openai_server.fail(fault, times=1)
    with pytest.raises(error) as caught:
        await client.chat.completions.create(model="test-model", messages=MESSAGES)
    if fault.status == 429:
        assert caught.value.response.headers["retry-after"] == "2"
    assert len(openai_server.requests) == 1, "neither SDK client retries: that is the router's job"


async def test_a_refused_connection_is_an_api_connection_error(free_port: int, client_over) -> None:
    client = client_over(OpenAICompatAdapter("gone", preset="vllm", base_url=f"http://127.0.0.1:{free_port}/v1"))
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="test-model", messages=MESSAGES)


async def test_a_stream_cut_midway_raises_after_the_chunks_sent(
    client: turnout.AsyncOpenAI, openai_server: OpenAIServer
) -> None:
    openai_server.fail(Fault(cut_after=3), times=1)
    got: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIConnectionError):
        stream = await client.chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": "a b c d e f"}], stream=True
        )
        async for chunk in stream:
            got.append(chunk)
    assert len(got) == 3


async def test_a_stream_refused_before_its_first_chunk_raises_the_status_error(
    client: turnout.AsyncOpenAI, openai_server: OpenAIServer
) -> None:
    openai_server.fail(Fault(status=503), times=1)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    assert len(openai_server.requests) == 1


async def test_each_request_goes_to_its_own_path_and_the_backends_current_address(
    make_openai_server, client_over
) -> None:
    """A backend's SDK client keeps the URLs it joins (base URL + path): more paths than it keeps, and a base
    URL set anew on it, still send each request where the SDK would."""
    first, second = make_openai_server(), make_openai_server()
    adapter = OpenAICompatAdapter("local", preset="llamacpp", base_url=first.base_url, timeout=5)
    client = client_over(adapter)
    ids = [f"file-{i}" for i in range(70)]  # more than the 64 paths a client keeps
    for ident in ids + ids[:3]:
        with pytest.raises(openai.NotFoundError):  # no such file: the server says so, at its path
            await client.files.retrieve(ident)
    assert [r.path for r in first.requests] == [f"/v1/files/{i}" for i in ids + ids[:3]]
    await client.chat.completions.create(model="test-model", messages=MESSAGES)
    adapter.sdk_client.base_url = second.base_url
    await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert [r.path for r in second.requests] == ["/v1/chat/completions"]
    assert len(first.requests) == 74
