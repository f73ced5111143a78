"""Instrumentation that wraps the SDK's classes (``openai.AsyncOpenAI.request``, ``openai.OpenAI.request``)
sees each user request on turnout's clients once, with its real answer, and never a backend's attempt.

A primary backend that is dead and a working secondary: the wrapper must see one call (not an error for
the dead one plus a raw HTTP answer for the other). Tested with a plain wrapper and with logfire's
class-level ``instrument_openai()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import turnout
from tests.client.test_client_contract import drain, settle
from tests.router.test_router import MSG, backend, sleeps  # noqa: F401  (backoff's waits, skipped)
from tests.support.loopback import OpenAIServer
from turnout.router import Router

KINDS = {"async": (turnout.AsyncOpenAI, openai.AsyncOpenAI), "sync": (turnout.OpenAI, openai.OpenAI)}


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def seen(kind: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """A plain wrapper on the SDK class's ``request``: each call's ``stream`` flag and answer."""
    sdk = KINDS[kind][1]
    original = sdk.request
    calls: list[tuple[Any, Any]] = []
    if inspect.iscoroutinefunction(original):

        async def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            answer = await original(self, *args, **kwargs)
            calls.append((kwargs.get("stream"), answer))
            return answer
    else:

        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            answer = original(self, *args, **kwargs)
            calls.append((kwargs.get("stream"), answer))
            return answer

    monkeypatch.setattr(sdk, "request", wrapped)
    return calls


def client_for(kind: str, openai_server: OpenAIServer, free_port: int) -> Any:
    router = Router(
        [backend(f"http://127.0.0.1:{free_port}/v1", "dead", max_retries=0), backend(openai_server, "live")]
    )
    return KINDS[kind][0](router=router)


async def test_a_wrapper_on_the_sdk_class_sees_one_call_with_the_parsed_answer(
    kind, seen, openai_server, free_port, sleeps
) -> None:
    client = client_for(kind, openai_server, free_port)
    answer = await settle(client.chat.completions.create(model="test-model", messages=MSG))
    assert turnout.served_by(answer) == "live"
    assert [(s, type(a)) for s, a in seen] == [(False, ChatCompletion)]
    assert seen[0][1] is answer
    await settle(client.close())


async def test_a_wrapper_sees_a_stream_once_as_the_sdks_stream(kind, seen, openai_server, free_port, sleeps) -> None:
    client = client_for(kind, openai_server, free_port)
    stream = await settle(client.chat.completions.create(model="test-model", messages=MSG, stream=True))
    chunks = await drain(stream)
    assert chunks and all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert len(seen) == 1 and seen[0][0] is True and seen[0][1] is stream
    await settle(client.close())


@pytest.fixture
def logfire_spans(kind: str) -> Iterator[Any]:
    """logfire with its class-level OpenAI instrumentation, exporting to memory only (nothing leaves the machine)."""
    logfire = pytest.importorskip("logfire")
    from logfire.testing import TestExporter
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = TestExporter()
    logfire.configure(send_to_logfire=False, console=False, additional_span_processors=[SimpleSpanProcessor(exporter)])
    with logfire.instrument_openai():  # no argument: wraps request on openai.OpenAI and openai.AsyncOpenAI
        yield exporter


async def test_logfire_class_level_sees_one_span_with_usage_and_id(
    kind, logfire_spans, openai_server, free_port, sleeps
) -> None:
    client = client_for(kind, openai_server, free_port)
    await settle(client.chat.completions.create(model="test-model", messages=MSG))
    stream = await settle(
        client.chat.completions.create(
            model="test-model", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
    )
    await drain(stream)
    records = logfire_spans.exported_spans_as_dict()
    calls = [r for r in records if r["name"].startswith("Chat Completion")]
    streamed = [r for r in records if r["name"].startswith("streaming response")]
    assert len(calls) == 2 and len(streamed) == 1, [r["name"] for r in records]  # none for the dead backend
    for answer in (calls[0], streamed[0]):
        assert answer["attributes"]["gen_ai.response.id"] == "chatcmpl-loopback"
        assert answer["attributes"]["gen_ai.usage.input_tokens"] > 0
    await settle(client.close())


async def test_with_a_wrapper_errors_keep_their_class_and_are_never_retried_by_the_sdk(
    kind, seen, make_openai_server
) -> None:
    from tests.support.loopback import Fault

    server = make_openai_server()
    server.fail(Fault(status=400, message="bad", error_type="invalid_request_error"))
    client = KINDS[kind][0](router=Router([backend(server, "only")]), max_retries=5)
    with pytest.raises(openai.BadRequestError):
        await settle(client.chat.completions.create(model="test-model", messages=MSG))
    assert len(server.chat_requests()) == 1 and seen == []  # raised through the wrapper, sent once
    await settle(client.close())
