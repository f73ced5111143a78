"""turnout.AsyncOpenAI / turnout.OpenAI: the SDK's surface over a Router, compared with the SDK itself."""

from __future__ import annotations

import backoff
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import turnout
from tests.support.loopback import Fault
from turnout.adapters import OpenAICompatAdapter
from turnout.router import Backend, Router

MSG = [{"role": "user", "content": "hi there"}]


def router_for(*servers, **knobs) -> Router:
    return Router(
        [
            Backend(OpenAICompatAdapter(f"b{i}", preset="vllm", base_url=s.base_url), **knobs)
            for i, s in enumerate(servers)
        ]
    )


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
    await client.chat.completions.create(
        model="test-model",
        messages=MSG,
        temperature=openai.NOT_GIVEN,
        stream=openai.NOT_GIVEN,
        timeout=openai.NOT_GIVEN,
    )
    assert "temperature" not in openai_server.chat_requests()[0].json
    await client.close()


# -- a real SDK client: what libraries read off it, and copies ----------------------


async def test_the_clients_are_the_sdks_own(openai_server) -> None:
    """instructor and others refuse anything that fails ``isinstance(client, openai.AsyncOpenAI)``."""
    async_client = turnout.AsyncOpenAI(router=router_for(openai_server))
    sync_client = turnout.OpenAI(router=router_for(openai_server))
    assert isinstance(async_client, openai.AsyncOpenAI) and isinstance(sync_client, openai.OpenAI)
    assert isinstance(async_client.with_options(max_retries=1), openai.AsyncOpenAI)
    await async_client.close()
    sync_client.close()


async def test_base_url_is_the_primarys_and_the_api_key_a_placeholder(make_openai_server) -> None:
    """Libraries send ``client.api_key`` where they like (the Agents SDK to OpenAI's tracing host):
    it is a real key only when OpenAI's own host is the primary backend."""
    local, spare = make_openai_server(), make_openai_server()
    openai_second = OpenAICompatAdapter("openai", preset="openai", api_key="sk-real-openai-0123456789")
    client = turnout.AsyncOpenAI(
        router=Router([OpenAICompatAdapter("local", preset="vllm", base_url=local.base_url), openai_second])
    )
    assert client.api_key == turnout.client.PLACEHOLDER_KEY == "turnout-routed"
    assert str(client.base_url) == local.base_url + "/"
    await client.chat.completions.create(model="test-model", messages=MSG)
    assert local.chat_requests()[0].header("Authorization") == "Bearer sk-no-key-required", "each backend its own key"
    proxied = OpenAICompatAdapter(
        "openai", preset="openai", api_key="sk-real-openai-0123456789", base_url=spare.base_url
    )
    other = turnout.AsyncOpenAI(router=Router([proxied]))
    assert other.api_key == "turnout-routed", "OpenAI's key, another host"
    await other.close()
    await client.close()


async def test_the_api_key_is_real_when_openai_itself_is_primary(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    key = "sk-real-openai-0123456789"
    for client in (
        turnout.AsyncOpenAI(api_key=key),
        turnout.AsyncOpenAI(router=Router([OpenAICompatAdapter("openai", preset="openai", api_key=key)])),
    ):
        assert client.api_key == key and str(client.base_url) == "https://api.openai.com/v1/"
        await client.close()
    sync_client = turnout.OpenAI(api_key=key)
    assert sync_client.api_key == key
    sync_client.close()


async def test_copies_share_the_router_and_its_cooldowns(make_openai_server) -> None:
    flaky, spare = make_openai_server(), make_openai_server()
    client = turnout.AsyncOpenAI(router=router_for(flaky, spare, max_retries=0, allowed_fails=1))
    copies = [client.copy(), client.with_options(timeout=30), client.with_options(default_headers={"X-A": "1"})]
    assert all(c.router is client.router for c in copies)
    flaky.fail(Fault(status=503), times=1)
    reply = await copies[0].chat.completions.create(model="test-model", messages=MSG)
    assert turnout.served_by(reply) == "b1"
    reply = await client.chat.completions.create(model="test-model", messages=MSG)
    assert turnout.served_by(reply) == "b1" and len(flaky.requests) == 1, "the copy cooled b0 down for the original"
    await copies[2].chat.completions.create(model="test-model", messages=MSG)
    assert spare.chat_requests()[-1].header("X-A") == "1", "a copy's headers reach the backend"
    assert client.router.stats()["b1"]["successes"] == 3
    await client.close()


@pytest.mark.parametrize(("configured", "per_call"), [(3, 0), (0, 2)])
async def test_with_options_max_retries_sets_the_retries_on_every_backend(
    make_openai_server, no_sleep, configured, per_call
) -> None:
    a, b = make_openai_server(), make_openai_server()
    a.fail(Fault(status=500))
    b.fail(Fault(status=500))
    client = turnout.AsyncOpenAI(router=router_for(a, b, max_retries=configured, allowed_fails=10))
    with pytest.raises(openai.InternalServerError) as caught:
        await client.with_options(max_retries=per_call).chat.completions.create(model="test-model", messages=MSG)
    assert isinstance(caught.value, turnout.AllBackendsFailedError)
    assert (len(a.requests), len(b.requests)) == (per_call + 1, per_call + 1)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="test-model", messages=MSG)
    assert (len(a.requests), len(b.requests)) == (per_call + configured + 2,) * 2, "the client keeps its own"
    await client.close()


async def test_a_per_call_timeout_is_the_deadline_of_the_whole_request(make_openai_server) -> None:
    """Were it each attempt's timeout, the healthy second backend would answer after the first timed out."""
    hung, healthy = make_openai_server(), make_openai_server()
    hung.fail(Fault(hang=True))
    client = turnout.AsyncOpenAI(router=router_for(hung, healthy, max_retries=0))
    with pytest.raises(openai.APITimeoutError) as caught:
        await client.chat.completions.create(model="test-model", messages=MSG, timeout=0.3)
    assert isinstance(caught.value, turnout.AllBackendsFailedError)
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.3).chat.completions.create(model="test-model", messages=MSG)
    assert healthy.requests == [], "no time was left for the next backend"
    await client.close()


@pytest.mark.parametrize(
    "change", [{"base_url": "http://elsewhere.example/v1"}, {"api_key": "sk-other"}, {"organization": "org-x"}]
)
async def test_a_copy_cannot_send_elsewhere(openai_server, change) -> None:
    """A copy shares the router: a different address or key would be silently ignored, so it is refused."""
    async_client, sync_client = (
        turnout.AsyncOpenAI(router=router_for(openai_server)),
        turnout.OpenAI(router=router_for(openai_server)),
    )
    for client in (async_client, sync_client):
        with pytest.raises(TypeError, match="cannot change"):
            client.copy(**change)
        with pytest.raises(TypeError, match="cannot change"):
            client.with_options(**change)
    await async_client.close()
    sync_client.close()


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


def test_sync_copies_share_the_router_and_set_retries_and_deadline(make_openai_server) -> None:
    failing, healthy = make_openai_server(), make_openai_server()
    client = turnout.OpenAI(router=router_for(failing, healthy, max_retries=0, allowed_fails=10))
    copy = client.copy()
    assert isinstance(copy, openai.OpenAI) and copy.router is client.router
    failing.fail(Fault(status=500), times=1)
    with pytest.raises(openai.InternalServerError):
        client.with_options(max_retries=0).chat.completions.create(model="b0/test-model", messages=MSG)
    assert len(failing.requests) == 1
    failing.fail(Fault(hang=True), times=1)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(model="test-model", messages=MSG)
    assert healthy.requests == [], "the copy's timeout is the whole request's deadline"
    client.close()


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


def test_a_forked_child_gets_its_own_loops_and_leaves_the_parents_working(openai_server) -> None:
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
    # the child's loops shared their epoll instances with the parent's: had it closed its copies, the parent's
    # loop would wake no more (a new client's first call, which asks a worker thread, then hangs to its deadline)
    fresh = turnout.OpenAI(router=router_for(openai_server))
    assert fresh.chat.completions.create(model="test-model", messages=MSG, timeout=10).choices[0].message.content
    fresh.close()
    client.close()
