"""turnout.AsyncOpenAI / turnout.OpenAI, configured by environment variables only, against the real llama.cpp server."""

from __future__ import annotations

import asyncio
import json

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import turnout
from tests.support.llamacpp import EMBEDDING_DIM, MODEL_ALIAS, LlamaCppServer
from tests.support.loopback import Fault

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
SHORT = dict(model=MODEL_ALIAS, temperature=0, seed=1, max_tokens=12)


@pytest.fixture
def local_env(llamacpp: LlamaCppServer, monkeypatch, tmp_path) -> LlamaCppServer:
    """One backend, "local": the real server, named only through environment variables."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TURNOUT_BACKENDS", "local")
    monkeypatch.setenv("TURNOUT_BACKEND__LOCAL__PROVIDER", "llamacpp")
    monkeypatch.setenv("TURNOUT_BACKEND__LOCAL__BASE_URL", llamacpp.base_url)
    monkeypatch.setenv("TURNOUT_TIMEOUT", "120")
    return llamacpp


def primary_then_local(monkeypatch, primary_url: str, local: LlamaCppServer) -> None:
    monkeypatch.setenv("TURNOUT_BACKENDS", "primary,local")
    monkeypatch.setenv("TURNOUT_BACKEND__PRIMARY__PROVIDER", "openai_compat")
    monkeypatch.setenv("TURNOUT_BACKEND__PRIMARY__BASE_URL", primary_url)
    monkeypatch.setenv("TURNOUT_BACKEND__PRIMARY__MAX_RETRIES", "1")
    monkeypatch.setenv("TURNOUT_BACKEND__PRIMARY__BACKOFF_BASE", "1.01")
    monkeypatch.setenv("TURNOUT_BACKEND__PRIMARY__BACKOFF_MAX", "0.05")


async def test_a_completion_with_usage_finish_reason_and_backend(local_env) -> None:
    async with turnout.AsyncOpenAI() as client:
        reply = await client.chat.completions.create(messages=QUESTION, **SHORT)
    assert isinstance(reply, ChatCompletion)
    assert "paris" in (reply.choices[0].message.content or "").lower()
    assert reply.usage is not None and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert turnout.served_by(reply) == "local"


async def test_a_stream_reassembles_to_the_same_answer(local_env) -> None:
    async with turnout.AsyncOpenAI() as client:
        whole = await client.chat.completions.create(messages=QUESTION, **SHORT)
        stream = await client.chat.completions.create(
            messages=QUESTION, stream=True, stream_options={"include_usage": True}, **SHORT
        )
        chunks = [c async for c in stream]
    assert chunks and all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    # llama-cpp-python 0.3.36 ignores include_usage (tests/integration/test_llamacpp.py pins that quirk): no usage chunk.


async def test_max_tokens_gives_length_and_stop_is_honoured(local_env) -> None:
    async with turnout.AsyncOpenAI() as client:
        cut = await client.chat.completions.create(
            model=MODEL_ALIAS,
            messages=[{"role": "user", "content": "Write a long story about a dragon."}],
            max_tokens=3,
            temperature=0,
        )
        stopped = await client.chat.completions.create(
            model=MODEL_ALIAS,
            messages=[{"role": "user", "content": "Count from 1 to 10, separated by spaces."}],
            stop=["5"],
            max_tokens=40,
            temperature=0,
        )
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 3
    assert "5" not in (stopped.choices[0].message.content or "") and stopped.choices[0].finish_reason == "stop"


async def test_json_mode_gives_parseable_json(local_env) -> None:
    async with turnout.AsyncOpenAI() as client:
        reply = await client.chat.completions.create(
            model=MODEL_ALIAS,
            messages=[{"role": "user", "content": "Give a JSON object with a key name."}],
            response_format={"type": "json_object"},
            max_tokens=40,
            temperature=0,
        )
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


async def test_models_are_listed_as_the_backends(local_env) -> None:
    async with turnout.AsyncOpenAI() as client:
        models = [m async for m in client.models.list()]
    assert [(m.id, m.owned_by) for m in models] == [(MODEL_ALIAS, "local")]


async def test_embeddings_have_the_models_dimension(local_env) -> None:
    async with turnout.AsyncOpenAI() as client:
        reply = await client.embeddings.create(model=MODEL_ALIAS, input=["hello world", "bonjour"])
    assert [len(d.embedding) for d in reply.data] == [EMBEDDING_DIM, EMBEDDING_DIM]
    assert reply.data[0].embedding != reply.data[1].embedding


def test_the_sync_client_against_the_real_server(local_env) -> None:
    with turnout.OpenAI() as client:
        reply = client.chat.completions.create(messages=QUESTION, **SHORT)
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(messages=QUESTION, stream=True, **SHORT)
            if c.choices
        )
    assert text == reply.choices[0].message.content and "paris" in text.lower()


async def test_a_primary_on_a_closed_port_fails_over_to_the_real_server(
    local_env, free_port, monkeypatch, caplog
) -> None:
    primary_then_local(monkeypatch, f"http://127.0.0.1:{free_port}/v1", local_env)
    async with turnout.AsyncOpenAI() as client:
        with caplog.at_level("INFO", logger="turnout"):
            reply = await client.chat.completions.create(messages=QUESTION, **SHORT)
        stats = client.router.stats()
    assert turnout.served_by(reply) == "local" and "paris" in reply.choices[0].message.content.lower()
    assert stats["primary"]["attempts"] == 2 and stats["primary"]["failures"] == 1
    assert "failing over from primary to local" in caplog.text


async def test_a_primary_answering_503_fails_over_to_the_real_server(local_env, openai_server, monkeypatch) -> None:
    openai_server.fail(Fault(status=503, message="overloaded"))
    primary_then_local(monkeypatch, openai_server.base_url, local_env)
    async with turnout.AsyncOpenAI() as client:
        stream = await client.chat.completions.create(messages=QUESTION, stream=True, **SHORT)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert turnout.served_by(stream) == "local" and "paris" in text.lower()
    assert len(openai_server.requests) == 2, "the primary got its own retry first"


async def test_a_burst_of_50_concurrent_requests_is_all_answered(local_env, free_port, monkeypatch) -> None:
    primary_then_local(monkeypatch, f"http://127.0.0.1:{free_port}/v1", local_env)
    async with turnout.AsyncOpenAI() as client:
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=MODEL_ALIAS,
                    max_tokens=4,
                    temperature=0,
                    messages=[{"role": "user", "content": f"Say the number {i}."}],
                )
                for i in range(50)
            )
        )
        stats = client.router.stats()
    assert len(replies) == 50 and all(r.choices[0].message.content for r in replies)
    assert {turnout.served_by(r) for r in replies} == {"local"}
    assert stats["local"]["successes"] == 50 and stats["primary"]["state"] == "open"


async def test_the_responses_api_through_the_bridge(local_env) -> None:
    """llama-cpp-python's server has no /v1/responses: the llamacpp preset's unknown flag asks it once (404),
    then the request is bridged to chat; the answer is the model's own tokens, as a Response."""
    async with turnout.AsyncOpenAI() as client:
        reply = await client.responses.create(
            model=MODEL_ALIAS, input=QUESTION[0]["content"], temperature=0, max_output_tokens=12
        )
        again = await client.responses.create(
            model=MODEL_ALIAS,
            input="And of Italy? One word.",
            temperature=0,
            max_output_tokens=12,
            previous_response_id=reply.id,
        )
        async with client.responses.stream(
            model=MODEL_ALIAS, input=QUESTION[0]["content"], temperature=0, max_output_tokens=12
        ) as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            streamed = await stream.get_final_response()
    assert "paris" in reply.output_text.lower() and turnout.served_by(reply) == "local"
    assert reply.status == "completed"  # the one-word answer ends well inside 12 tokens
    assert reply.usage is not None and reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert again.output_text and again.previous_response_id == reply.id
    assert len(deltas) > 1 and "".join(deltas) == reply.output_text  # temperature 0: the same tokens, streamed
    assert streamed.output_text == reply.output_text and streamed.status == "completed"
