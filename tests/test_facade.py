"""turnout.AsyncOpenAI / turnout.OpenAI: the SDK's surface over a Router, compared with the SDK itself."""

from __future__ import annotations

import backoff
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import turnout
from tests.loopback import Fault
from turnout.adapters import OpenAICompatAdapter
from turnout.router import Backend, Router

MSG = [{"role": "user", "content": "hi there"}]


def router_for(*servers, **knobs) -> Router:
    return Router([Backend(OpenAICompatAdapter(f"b{i}", preset="vllm", base_url=s.base_url), **knobs)
                   for i, s in enumerate(servers)])


@pytest.fixture
def no_sleep(mocker) -> None:
    async def instant(seconds: float, *args: object) -> None:
        return None

    mocker.patch.object(backoff._async.asyncio, "sleep", instant)


async def test_async_chat_matches_the_plain_sdk(openai_server) -> None:
    sdk = openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="x", max_retries=0)
    async with turnout.AsyncOpenAI(router=router_for(openai_server)) as client:
        ours = await client.chat.completions.create(model="test-model", messages=MSG, temperature=0.1)
    theirs = await sdk.chat.completions.create(model="test-model", messages=MSG, temperature=0.1)
    await sdk.close()
    assert isinstance(ours, ChatCompletion)
    assert ours.model_dump(exclude={"created"}) == theirs.model_dump(exclude={"created"})
    assert turnout.served_by(ours) == "b0"


async def test_async_stream_matches_the_plain_sdk(openai_server) -> None:
    sdk = openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="x", max_retries=0)
    client = turnout.AsyncOpenAI(router=router_for(openai_server))
    kwargs = dict(model="test-model", messages=MSG, stream=True, stream_options={"include_usage": True})
    ours = [c async for c in await client.chat.completions.create(**kwargs)]
    theirs = [c async for c in await sdk.chat.completions.create(**kwargs)]
    assert all(isinstance(c, ChatCompletionChunk) for c in ours)
    assert [c.model_dump(exclude={"created"}) for c in ours] == [c.model_dump(exclude={"created"}) for c in theirs]
    await client.close()
    await sdk.close()


async def test_async_embeddings_and_models(make_openai_server) -> None:
    a, b = make_openai_server(models=["m1"]), make_openai_server(models=["m2"])
    client = turnout.AsyncOpenAI(router=router_for(a, b))
    reply = await client.embeddings.create(model="m1", input=["x", "y"])
    assert len(reply.data) == 2
    page = await client.models.list()
    assert [m.id for m in page.data] == ["m1", "m2"]
    assert [m.id async for m in client.models.list()] == ["m1", "m2"]
    assert (await client.models.retrieve("m2")).owned_by == "b1"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("nosuch")
    await client.close()


async def test_with_options_sets_retries_and_timeout_per_call(openai_server, no_sleep) -> None:
    client = turnout.AsyncOpenAI(router=router_for(openai_server, max_retries=3))
    openai_server.fail(Fault(status=500), times=1)
    with pytest.raises(openai.InternalServerError):
        await client.with_options(max_retries=0).chat.completions.create(model="test-model", messages=MSG)
    assert len(openai_server.requests) == 1
    openai_server.fail(Fault(status=500), times=1)
    await client.chat.completions.create(model="test-model", messages=MSG)
    assert len(openai_server.requests) == 3, "the original client keeps its own retries"
    openai_server.fail(Fault(hang=True), times=1)
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.2, max_retries=0).chat.completions.create(model="test-model", messages=MSG)
    await client.close()


async def test_not_given_arguments_mean_what_they_mean_to_the_sdk(openai_server) -> None:
    client = turnout.AsyncOpenAI(router=router_for(openai_server))
    await client.chat.completions.create(model="test-model", messages=MSG, temperature=openai.NOT_GIVEN,
                                         stream=openai.NOT_GIVEN, timeout=openai.NOT_GIVEN)
    assert "temperature" not in openai_server.chat_requests()[0].json
    await client.close()


async def test_unrouted_methods_say_so(openai_server) -> None:
    client = turnout.AsyncOpenAI(router=router_for(openai_server))
    with pytest.raises(NotImplementedError, match="audio.speech.create"):
        await client.audio.speech.create(model="tts-1", voice="alloy", input="hi")
    with pytest.raises(NotImplementedError, match="files.list"):
        client.files.list()
    with pytest.raises(AttributeError):
        client.no_such_namespace
    assert not hasattr(client, "_private_probe")
    await client.close()


# -- sync ------------------------------------------------------------------------

def test_sync_chat_stream_embeddings_and_models(openai_server) -> None:
    sdk = openai.OpenAI(base_url=openai_server.base_url, api_key="x", max_retries=0)
    with turnout.OpenAI(router=router_for(openai_server)) as client:
        ours = client.chat.completions.create(model="test-model", messages=MSG)
        theirs = sdk.chat.completions.create(model="test-model", messages=MSG)
        assert ours.model_dump(exclude={"created"}) == theirs.model_dump(exclude={"created"})
        stream = client.chat.completions.create(model="test-model", messages=MSG, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "echo: hi there" and turnout.served_by(stream) == "b0"
        assert len(client.embeddings.create(model="test-model", input="x").data) == 1
        assert [m.id for m in client.models.list().data] == ["test-model"]
        assert [m.id for m in client.models.list()] == ["test-model"]
    sdk.close()


def test_sync_errors_are_the_sdk_classes(openai_server) -> None:
    client = turnout.OpenAI(router=router_for(openai_server))
    openai_server.fail(Fault(status=400, message="bad"), times=1)
    with pytest.raises(openai.BadRequestError, match="bad"):
        client.chat.completions.create(model="test-model", messages=MSG)
    client.close()


def test_sync_stream_closed_early(make_openai_server) -> None:
    server = make_openai_server(stream_chunks=300, stream_delay=0.01)
    client = turnout.OpenAI(router=router_for(server))
    with client.chat.completions.create(model="test-model", messages=MSG, stream=True) as stream:
        first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    client.close()


async def test_an_sdk_timeout_object_is_a_deadline_too(openai_server) -> None:
    import httpx2

    client = turnout.AsyncOpenAI(router=router_for(openai_server, max_retries=0))
    openai_server.fail(Fault(hang=True), times=1)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="test-model", messages=MSG, timeout=httpx2.Timeout(0.2))
    await client.close()


def test_the_sync_client_serves_many_threads_at_once(openai_server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = turnout.OpenAI(router=router_for(openai_server))

    def ask(i: int) -> str:
        reply = client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": f"n{i}"}])
        return reply.choices[0].message.content

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, range(100)))
    assert answers == [f"echo: n{i}" for i in range(100)]
    assert client.router.stats()["b0"]["successes"] == 100, "the counters add up across threads"
    client.close()


def test_a_forked_child_gets_its_own_portal(openai_server) -> None:
    import os

    client = turnout.OpenAI(router=router_for(openai_server))
    client.chat.completions.create(model="test-model", messages=MSG)  # the parent's portal is running
    pid = os.fork()
    if pid == 0:  # the child: a fresh client must work rather than wait for a thread that was not forked
        try:
            child = turnout.OpenAI(router=router_for(openai_server))
            ok = child.chat.completions.create(model="test-model", messages=MSG).choices[0].message.content
            os._exit(0 if ok == "echo: hi there" else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    client.close()
