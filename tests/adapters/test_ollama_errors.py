"""How OllamaAdapter fails: every fault the ollama SDK and httpx raise becomes the openai exception the router acts on."""

from __future__ import annotations

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.support.loopback import Fault, OllamaServer
from turnout import BrokenStreamError
from turnout.adapters import OllamaAdapter

MESSAGES = [{"role": "user", "content": "hello there"}]
LONG = [{"role": "user", "content": "a b c d e f"}]


@pytest.fixture
async def adapter(ollama_server: OllamaServer):
    a = OllamaAdapter("faulty", host=ollama_server.host, timeout=0.5)
    yield a
    await a.aclose()


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(status=400, message="invalid options"), openai.BadRequestError),
        (Fault(status=401), openai.AuthenticationError),
        (Fault(status=403), openai.PermissionDeniedError),
        (Fault(status=404), openai.NotFoundError),
        (Fault(status=409), openai.ConflictError),
        (Fault(status=422), openai.UnprocessableEntityError),
        (Fault(status=429, retry_after="2"), openai.RateLimitError),
        (Fault(status=500, message="llama runner process has terminated"), openai.InternalServerError),
        (Fault(status=503, message="server busy"), openai.InternalServerError),
        (Fault(close=True), openai.APIConnectionError),
        (Fault(malformed=True), openai.APIResponseValidationError),
        (Fault(hang=True), openai.APITimeoutError),
    ],
)
async def test_every_fault_surfaces_as_the_matching_openai_exception(
    adapter: OllamaAdapter, ollama_server: OllamaServer, fault: Fault, error: type
) -> None:
    ollama_server.fail(fault, times=1)
    with pytest.raises(error) as caught:
        await adapter.chat(model="test-model", messages=MESSAGES)
    if fault.message:
        assert fault.message in caught.value.message, "Ollama's own message is kept"
    if fault.status == 429:
        assert caught.value.response.headers["retry-after"] == "2"
    assert len(ollama_server.requests) == 1, "the SDK must not retry: that is the router's job"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(status=404), openai.NotFoundError),
        (Fault(status=429, retry_after="3"), openai.RateLimitError),
        (Fault(status=502), openai.InternalServerError),
        (Fault(close=True), openai.APIConnectionError),
        (Fault(hang=True), openai.APITimeoutError),
    ],
)
async def test_a_stream_refused_before_its_first_chunk_raises_the_same_classes(
    adapter: OllamaAdapter, ollama_server: OllamaServer, fault: Fault, error: type
) -> None:
    ollama_server.fail(fault, times=1)
    with pytest.raises(error) as caught:
        await adapter.stream_chat(model="test-model", messages=MESSAGES).__anext__()
    assert not isinstance(caught.value, BrokenStreamError)
    if fault.retry_after:
        assert caught.value.response.headers["retry-after"] == "3"


async def test_an_unknown_model_is_not_found_with_ollamas_message(adapter: OllamaAdapter) -> None:
    with pytest.raises(openai.NotFoundError, match='model "llama9" not found'):
        await adapter.chat(model="llama9", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError, match="not found"):
        await adapter.embeddings(model="llama9", input="x")


async def test_a_refused_connection_is_an_api_connection_error(free_port: int) -> None:
    """The SDK raises the built-in ConnectionError here (and a raw httpx.ConnectError when streaming)."""
    adapter = OllamaAdapter("gone", host=f"http://127.0.0.1:{free_port}")
    with pytest.raises(openai.APIConnectionError, match="gone") as caught:
        await adapter.chat(model="test-model", messages=MESSAGES)
    assert not isinstance(caught.value, BrokenStreamError)
    with pytest.raises(openai.APIConnectionError) as caught:
        await adapter.stream_chat(model="test-model", messages=MESSAGES).__anext__()
    assert not isinstance(caught.value, BrokenStreamError)
    for call in (adapter.list_models(), adapter.embeddings(model="test-model", input="x")):
        with pytest.raises(openai.APIConnectionError):
            await call
    await adapter.aclose()


async def test_a_stream_cut_midway_is_a_broken_stream_after_the_chunks_sent(
    adapter: OllamaAdapter, ollama_server: OllamaServer
) -> None:
    ollama_server.fail(Fault(cut_after=3), times=1)
    got: list[ChatCompletionChunk] = []
    with pytest.raises(BrokenStreamError) as caught:
        async for chunk in adapter.stream_chat(model="test-model", messages=LONG):
            got.append(chunk)
    assert len(got) == 3 and caught.value.chunks == 3
    assert isinstance(caught.value, openai.APIConnectionError)


async def test_an_error_line_mid_stream_is_a_broken_stream_with_its_message(
    adapter: OllamaAdapter, ollama_server: OllamaServer
) -> None:
    """The SDK raises ResponseError with status_code -1 for an ``{"error": ...}`` line after a 200."""
    ollama_server.fail(Fault(cut_after=2, error_line="an error was encountered while running the model"), times=1)
    got = []
    with pytest.raises(BrokenStreamError, match="encountered while running the model") as caught:
        async for chunk in adapter.stream_chat(model="test-model", messages=LONG):
            got.append(chunk)
    assert len(got) == 2 and caught.value.chunks == 2


async def test_an_error_line_before_any_chunk_is_broken_with_nothing_delivered(
    adapter: OllamaAdapter, ollama_server: OllamaServer
) -> None:
    ollama_server.fail(Fault(error_line="out of memory"), times=1)
    with pytest.raises(BrokenStreamError, match="out of memory") as caught:
        await adapter.stream_chat(model="test-model", messages=MESSAGES).__anext__()
    assert caught.value.chunks == 0, "nothing delivered: the router may still retry or fail over"


async def test_a_stream_that_ends_without_done_is_a_broken_stream(make_ollama_server) -> None:
    server = make_ollama_server(end_without_done=True)
    adapter = OllamaAdapter(host=server.host)
    got = []
    with pytest.raises(BrokenStreamError, match="without its final") as caught:
        async for chunk in adapter.stream_chat(model="test-model", messages=LONG):
            got.append(chunk)
    assert caught.value.chunks == len(got) == 7  # "echo:" and six words
    assert all(c.choices[0].finish_reason is None for c in got)
    await adapter.aclose()


async def test_a_malformed_stream_line_is_a_validation_error(
    adapter: OllamaAdapter, ollama_server: OllamaServer
) -> None:
    ollama_server.fail(Fault(malformed=True), times=1)
    with pytest.raises(openai.APIResponseValidationError, match="malformed"):
        await adapter.stream_chat(model="test-model", messages=MESSAGES).__anext__()


async def test_a_stream_that_stalls_midway_times_out_as_a_broken_stream(make_ollama_server) -> None:
    server = make_ollama_server(stream_chunks=3, stream_delay=1.0)
    adapter = OllamaAdapter(host=server.host, timeout=0.3)
    got = []
    with pytest.raises(BrokenStreamError, match="timed out") as caught:
        async for chunk in adapter.stream_chat(model="test-model", messages=MESSAGES):
            got.append(chunk)
    assert caught.value.chunks == len(got) == 1
    await adapter.aclose()


async def test_a_per_call_timeout_overrides_the_adapter_default(ollama_server: OllamaServer) -> None:
    adapter = OllamaAdapter(host=ollama_server.host)  # default: 60 s, never the SDK's "no timeout"
    ollama_server.fail(Fault(hang=True), times=1)
    with pytest.raises(openai.APITimeoutError):
        await adapter.chat(model="test-model", messages=MESSAGES, timeout=0.3)
    await adapter.aclose()


def test_the_default_timeout_is_set() -> None:
    """ollama-python's own default is no timeout at all: a hung Ollama would hang the router."""
    assert OllamaAdapter().timeout == 60.0


async def test_error_messages_never_carry_the_key(ollama_server: OllamaServer, free_port: int) -> None:
    ollama_server.fail(Fault(status=401, message="unauthorized"), times=1)
    for host in (ollama_server.host, f"http://127.0.0.1:{free_port}"):
        adapter = OllamaAdapter(host=host, api_key="sk-very-secret")
        with pytest.raises(openai.APIError) as caught:
            await adapter.chat(model="test-model", messages=MESSAGES)
        assert "sk-very-secret" not in str(caught.value) and "sk-very-secret" not in repr(caught.value)
        await adapter.aclose()
