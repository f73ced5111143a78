"""Routing through turnout's client against several loopback servers at once, each with its own faults.

Every request is made as SDK code makes it (``client.chat.completions.create``); the Router under the
client decides where it goes. These are round 1's routing guarantees, kept through the SDK seam.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import backoff
import openai
import pytest

import turnout
from tests.support.loopback import Fault, OpenAIServer
from turnout import AllBackendsFailedError, BrokenStreamError, served_by
from turnout.adapters import Capabilities, OpenAICompatAdapter
from turnout.router import Backend, Router, RouterEvent

MSG = [{"role": "user", "content": "hi"}]
REAL_SLEEP = asyncio.sleep


@pytest.fixture
def sleeps(mocker) -> list[float]:
    """backoff's waits, recorded and skipped: the suite must not sleep for real."""
    waits: list[float] = []

    async def fake_sleep(seconds: float, *args: object) -> None:
        waits.append(seconds)
        await REAL_SLEEP(0)

    mocker.patch.object(backoff._async.asyncio, "sleep", fake_sleep)
    return waits


class Clock:
    """The cooldowns' clock, moved by hand: a test skips 30 s without waiting them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(mocker) -> Clock:
    c = Clock()
    mocker.patch("turnout.state._clock.now", side_effect=lambda: c.now)
    return c


def backend(server: OpenAIServer | str, name: str, **knobs) -> Backend:
    url = server if isinstance(server, str) else server.base_url
    caps = knobs.pop("capabilities", None)
    return Backend(
        OpenAICompatAdapter(
            name, preset="vllm", base_url=url, timeout=knobs.pop("attempt_timeout", 5), capabilities=caps
        ),
        **knobs,
    )


def chat(client: openai.AsyncOpenAI, **kwargs: Any) -> Awaitable[Any]:
    """A chat completion as SDK code asks for one (``model`` and ``messages`` unless given)."""
    return client.chat.completions.create(**{"model": "test-model", "messages": MSG, **kwargs})


def stats(client: turnout.AsyncOpenAI) -> dict[str, dict[str, Any]]:
    return client.router.stats()


# -- failover and retries ------------------------------------------------------


async def test_a_dead_port_fails_over_to_the_next_backend(clients, openai_server, free_port, sleeps) -> None:
    client = clients(backend(f"http://127.0.0.1:{free_port}/v1", "dead", max_retries=1), backend(openai_server, "live"))
    reply = await chat(client)
    assert reply.choices[0].message.content == "echo: hi"
    assert served_by(reply) == "live"
    assert stats(client)["dead"]["attempts"] == 2 and stats(client)["live"]["successes"] == 1


async def test_500_then_success_on_the_same_backend_after_retries(clients, openai_server, sleeps) -> None:
    openai_server.fail(Fault(status=500), times=2)
    client = clients(backend(openai_server, "only", max_retries=2))
    reply = await chat(client)
    assert served_by(reply) == "only"
    assert len(openai_server.chat_requests()) == 3
    assert len(sleeps) == 2 and all(0 <= w <= 2 for w in sleeps)
    assert stats(client)["only"]["retries"] == 2


async def test_waits_grow_exponentially_with_full_jitter_and_a_cap(clients, openai_server, sleeps, mocker) -> None:
    mocker.patch("turnout.router._retry.random.uniform", side_effect=lambda low, high: high)
    openai_server.fail(Fault(status=503), times=5)
    client = clients(backend(openai_server, "only", max_retries=5, backoff_base=3, backoff_max=10, allowed_fails=10))
    await chat(client)
    assert sleeps == [1, 3, 9, 10, 10]


async def test_retry_after_is_honoured_exactly(clients, openai_server, sleeps) -> None:
    openai_server.fail(Fault(status=429, retry_after="1"), times=1)
    client = clients(backend(openai_server, "only"))
    await chat(client)
    assert sleeps == [1.0]


async def test_each_wait_reads_its_own_failures_retry_after(clients, openai_server, sleeps) -> None:
    """LiteLLM #20722: a retry loop that reads a stale exception waits the wrong time."""
    openai_server.fail(Fault(status=429, retry_after="2"), times=1)
    openai_server.fail(Fault(status=503, retry_after_ms="300"), times=1)
    openai_server.fail(Fault(status=500), times=1)
    client = clients(backend(openai_server, "only", max_retries=3, allowed_fails=10))
    await chat(client)
    assert sleeps[:2] == [2.0, 0.3] and 0 <= sleeps[2] <= 4


async def test_a_cancelled_probe_does_not_wedge_the_breaker(clients, make_openai_server, sleeps, clock) -> None:
    flaky, spare = make_openai_server(), make_openai_server()
    flaky.fail(Fault(status=503), times=1)
    client = clients(backend(flaky, "flaky", max_retries=0, allowed_fails=1, cooldown=10), backend(spare, "spare"))
    await chat(client)
    clock.advance(11)
    flaky.fail(Fault(hang=True), times=1)
    probe = asyncio.ensure_future(chat(client))
    while len(flaky.requests) < 2:
        await asyncio.sleep(0.01)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert served_by(await chat(client)) == "flaky", "the next request probes again"


async def test_retry_after_ms_wins_over_retry_after(clients, openai_server, sleeps) -> None:
    openai_server.fail(Fault(status=503, retry_after="3", retry_after_ms="250"), times=1)
    client = clients(backend(openai_server, "only"))
    await chat(client)
    assert sleeps == [0.25]


async def test_retry_after_over_the_cap_fails_over_at_once(clients, make_openai_server, sleeps) -> None:
    limited, spare = make_openai_server(), make_openai_server()
    limited.fail(Fault(status=429, retry_after="120"))
    client = clients(backend(limited, "limited", backoff_max=30), backend(spare, "spare"))
    reply = await chat(client)
    assert served_by(reply) == "spare" and sleeps == [] and len(limited.chat_requests()) == 1


async def test_a_wait_past_the_deadline_fails_over_instead(clients, make_openai_server, sleeps) -> None:
    limited, spare = make_openai_server(), make_openai_server()
    limited.fail(Fault(status=429, retry_after="5"))
    client = clients(backend(limited, "limited"), backend(spare, "spare"), timeout=3)
    reply = await chat(client)
    assert served_by(reply) == "spare" and sleeps == []


async def test_a_bad_request_is_raised_at_once_with_one_attempt(clients, make_openai_server, sleeps) -> None:
    first, second = make_openai_server(), make_openai_server()
    first.fail(Fault(status=400, message="messages[0].role is invalid"))
    client = clients(backend(first, "first"), backend(second, "second"))
    with pytest.raises(openai.BadRequestError, match="role is invalid") as caught:
        await chat(client)
    assert not isinstance(caught.value, AllBackendsFailedError)
    assert len(first.requests) == 1 and second.requests == [] and sleeps == []


async def test_422_is_raised_at_once(clients, make_openai_server) -> None:
    first, second = make_openai_server(), make_openai_server()
    first.fail(Fault(status=422))
    client = clients(backend(first, "first"), backend(second, "second"))
    with pytest.raises(openai.UnprocessableEntityError):
        await chat(client)
    assert second.requests == []


async def test_a_context_length_error_fails_over(clients, make_openai_server, sleeps) -> None:
    small, big = make_openai_server(), make_openai_server()
    small.fail(
        Fault(status=400, code="context_length_exceeded", message="This model's maximum context length is 4096 tokens")
    )
    client = clients(backend(small, "small"), backend(big, "big"))
    assert served_by(await chat(client)) == "big"
    assert len(small.requests) == 1 and sleeps == []


async def test_404_fails_over_without_retry(clients, make_openai_server, sleeps) -> None:
    lacking, having = make_openai_server(models=["other"]), make_openai_server()
    client = clients(backend(lacking, "lacking"), backend(having, "having"))
    assert served_by(await chat(client)) == "having"
    assert len(lacking.requests) == 1 and sleeps == []


async def test_401_fails_over_and_cools_the_backend_down(clients, make_openai_server, sleeps) -> None:
    locked, open_ = make_openai_server(), make_openai_server()
    locked.fail(Fault(status=401, message="Incorrect API key"))
    client = clients(backend(locked, "locked", allowed_fails=5), backend(open_, "open"))
    for _ in range(3):
        assert served_by(await chat(client)) == "open"
    assert len(locked.requests) == 1, "a cooled-down backend is skipped"
    assert stats(client)["locked"]["state"] == "open" and stats(client)["locked"]["cooldowns"] == 1


async def test_cooldown_skips_a_dead_backend_then_probes_it_once(clients, make_openai_server, sleeps, clock) -> None:
    flaky, spare = make_openai_server(), make_openai_server()
    flaky.fail(Fault(status=503))
    client = clients(backend(flaky, "flaky", max_retries=0, allowed_fails=2, cooldown=30), backend(spare, "spare"))
    for _ in range(2):
        await chat(client)
    assert len(flaky.requests) == 2 and stats(client)["flaky"]["state"] == "open"
    await chat(client)
    assert len(flaky.requests) == 2, "skipped while cooling down"
    clock.advance(31)
    flaky.heal()
    reply = await chat(client)
    assert served_by(reply) == "flaky" and len(flaky.requests) == 3
    assert stats(client)["flaky"]["state"] == "closed"


async def test_a_failed_probe_reopens_the_cooldown(clients, make_openai_server, sleeps, clock) -> None:
    flaky, spare = make_openai_server(), make_openai_server()
    flaky.fail(Fault(status=503))
    client = clients(backend(flaky, "flaky", max_retries=3, allowed_fails=1, cooldown=30), backend(spare, "spare"))
    await chat(client)
    assert len(flaky.requests) == 4, "max_retries=3 is kept though the breaker opened at the first failure"
    clock.advance(31)
    await chat(client)
    assert len(flaky.requests) == 5, "one probe, not retried"
    await chat(client)
    assert len(flaky.requests) == 5 and stats(client)["flaky"]["cooldowns"] == 2


async def test_when_all_cool_down_the_first_to_recover_is_tried(clients, make_openai_server, sleeps, clock) -> None:
    a, b = make_openai_server(), make_openai_server()
    a.fail(Fault(status=503), times=1)
    b.fail(Fault(status=503), times=1)
    client = clients(
        backend(a, "a", max_retries=0, allowed_fails=1, cooldown=60),
        backend(b, "b", max_retries=0, allowed_fails=1, cooldown=10),
    )
    with pytest.raises(AllBackendsFailedError):
        await chat(client)
    reply = await chat(client)
    assert served_by(reply) == "b", "b's cooldown ends first"


async def test_equal_priority_backends_share_the_load(clients, make_openai_server) -> None:
    servers = [make_openai_server() for _ in range(3)]
    client = clients(
        backend(servers[0], "a", priority=1),
        backend(servers[1], "b", priority=1, weight=3),
        backend(servers[2], "c", priority=2),
    )
    served = Counter([served_by(await chat(client)) for _ in range(200)])
    assert set(served) == {"a", "b"}, "the lower-priority backend is not used while these answer"
    assert 100 < served["b"] < 190, f"b weighs 3 of 4: {served}"


async def test_an_equal_priority_backend_still_fails_over(clients, make_openai_server, sleeps) -> None:
    a, b = make_openai_server(), make_openai_server()
    a.fail(Fault(close=True))
    client = clients(backend(a, "a", priority=0, max_retries=0, allowed_fails=1000), backend(b, "b", priority=0))
    served = {served_by(await chat(client)) for _ in range(20)}
    assert served == {"b"}


async def test_the_deadline_is_respected(clients, make_openai_server, sleeps) -> None:
    slow, spare = make_openai_server(), make_openai_server()
    slow.fail(Fault(hang=True))
    client = clients(backend(slow, "slow", attempt_timeout=30), backend(spare, "spare"), timeout=0.3)
    with pytest.raises(openai.APITimeoutError) as caught:
        await chat(client)
    assert isinstance(caught.value, AllBackendsFailedError)
    assert spare.requests == [], "no time was left for another backend"


async def test_a_per_call_timeout_overrides_the_router_deadline(clients, openai_server, sleeps) -> None:
    openai_server.fail(Fault(hang=True))
    client = clients(backend(openai_server, "slow", attempt_timeout=30))
    with pytest.raises(openai.APITimeoutError):
        await chat(client, timeout=0.2)


async def test_all_failing_is_caught_as_the_sdk_class_and_as_ours(clients, make_openai_server, sleeps) -> None:
    a, b = make_openai_server(), make_openai_server()
    a.fail(Fault(status=503))
    b.fail(Fault(status=429, message="quota exceeded"))
    client = clients(backend(a, "a", max_retries=1), backend(b, "b", max_retries=1))
    with pytest.raises(openai.RateLimitError) as caught:
        await chat(client)
    err = caught.value
    assert isinstance(err, AllBackendsFailedError) and isinstance(err, openai.APIStatusError)
    assert set(err.errors) == {"a", "b"}
    assert isinstance(err.errors["a"], openai.InternalServerError) and err.status_code == 429
    assert "a: InternalServerError 503" in str(err) and "b: RateLimitError 429: quota exceeded" in str(err)


# -- model routing and capabilities -------------------------------------------------


async def test_a_backend_prefix_pins_the_request(clients, make_openai_server) -> None:
    a, b = make_openai_server(), make_openai_server()
    client = clients(backend(a, "a"), backend(b, "b"))
    reply = await chat(client, model="b/test-model", messages=MSG)
    assert served_by(reply) == "b" and b.chat_requests()[0].json["model"] == "test-model"


async def test_a_slash_in_a_model_name_is_not_a_pin(clients, make_openai_server) -> None:
    server = make_openai_server(models=["meta-llama/Llama-3.1-8B"])
    client = clients(backend(server, "a"))
    await chat(client, model="meta-llama/Llama-3.1-8B", messages=MSG)
    assert server.chat_requests()[0].json["model"] == "meta-llama/Llama-3.1-8B"


async def test_one_alias_maps_to_each_backends_own_model_name(clients, make_openai_server, sleeps) -> None:
    ollama_like = make_openai_server(models=["llama3.1:8b"])
    groq_like = make_openai_server(models=["llama-3.1-8b-instant"])
    ollama_like.fail(Fault(status=503))
    client = clients(
        backend(ollama_like, "ollama", models={"fast": "llama3.1:8b"}, max_retries=0),
        backend(groq_like, "groq", models={"fast": "llama-3.1-8b-instant"}),
    )
    reply = await chat(client, model="fast", messages=MSG)
    assert served_by(reply) == "groq"
    assert ollama_like.chat_requests()[0].json["model"] == "llama3.1:8b"
    assert groq_like.chat_requests()[0].json["model"] == "llama-3.1-8b-instant"


async def test_backends_that_declare_other_models_are_skipped(clients, make_openai_server) -> None:
    declared, open_ = make_openai_server(), make_openai_server(models=["test-model", "other"])
    client = clients(backend(declared, "declared", models={"big": "test-model"}), backend(open_, "open"))
    assert served_by(await chat(client, model="big", messages=MSG)) == "declared"
    assert served_by(await chat(client)) == "declared", "its own name counts"
    assert served_by(await chat(client, model="other", messages=MSG)) == "open"
    assert [r.json["model"] for r in declared.chat_requests()] == ["test-model", "test-model"]
    assert [r.json["model"] for r in open_.chat_requests()] == ["other"]


async def test_an_unknown_model_names_the_configured_ones(clients, openai_server) -> None:
    client = clients(backend(openai_server, "a", models={"fast": "x", "big": "y"}))
    with pytest.raises(openai.NotFoundError) as caught:
        await chat(client, model="nosuch", messages=MSG)
    assert "'nosuch'" in str(caught.value) and "big, fast" in str(caught.value) and "a/<model>" in str(caught.value)
    assert openai_server.requests == []


async def test_requests_skip_backends_lacking_a_needed_capability(clients, make_openai_server) -> None:
    plain, seeing = make_openai_server(), make_openai_server()
    client = clients(
        backend(plain, "plain", capabilities=Capabilities(vision=False, tools=False)),
        backend(seeing, "seeing", capabilities=Capabilities(vision=True)),
    )
    image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is it"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    assert served_by(await chat(client, messages=image)) == "seeing"
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert served_by(await chat(client, tools=tools)) == "seeing"
    assert served_by(await chat(client)) == "plain"
    assert len(plain.requests) == 1


async def test_no_capable_backend_is_a_clear_bad_request(clients, openai_server) -> None:
    client = clients(backend(openai_server, "plain", capabilities=Capabilities(json_schema=False)))
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError, match="needs json_schema.*plain"):
        await chat(client, response_format=fmt)
    assert openai_server.requests == []


async def test_embeddings_skip_backends_without_them(clients, make_openai_server) -> None:
    chat_only, embedder = make_openai_server(), make_openai_server()
    client = clients(
        backend(chat_only, "chat", capabilities=Capabilities(embeddings=False)),
        backend(embedder, "embed", capabilities=Capabilities(embeddings=True)),
    )
    reply = await client.embeddings.create(model="test-model", input="hello")
    assert served_by(reply) == "embed" and len(reply.data[0].embedding) == 8
    assert chat_only.requests == []


# -- streams -------------------------------------------------------------------


async def test_a_stream_fails_over_before_its_first_chunk(clients, make_openai_server, sleeps) -> None:
    broken, fine = make_openai_server(), make_openai_server()
    broken.fail(Fault(status=502))
    client = clients(backend(broken, "broken", max_retries=1), backend(fine, "fine"))
    stream = await chat(client, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: hi" and served_by(stream) == "fine"
    assert stream.response.headers["x-turnout-backend"] == "fine", "the real HTTP response of the one that served"
    assert len(broken.requests) == 2


async def test_a_stream_cut_after_three_chunks_raises_and_keeps_them(clients, make_openai_server, sleeps) -> None:
    cut, spare = make_openai_server(), make_openai_server()
    cut.fail(Fault(cut_after=3))
    client = clients(backend(cut, "cut"), backend(spare, "spare"))
    got = []
    with pytest.raises(BrokenStreamError) as caught:
        async with await chat(
            client, stream=True, model="test-model", messages=[{"role": "user", "content": "a b c d e"}]
        ) as stream:
            async for chunk in stream:
                got.append(chunk)
    assert len(got) == 3 and caught.value.chunks == 3
    assert isinstance(caught.value, openai.APIConnectionError), "existing SDK error handling catches it"
    assert "'cut'" in str(caught.value) and "not replayed" in str(caught.value)
    assert spare.requests == [], "never replayed on another backend"


async def test_a_stream_closed_early_releases_its_connection(clients, make_openai_server) -> None:
    server = make_openai_server(stream_chunks=500, stream_delay=0.01)
    client = clients(backend(server, "slow"))
    stream = await chat(client, stream=True)
    await stream.__anext__()
    await stream.close()
    assert await server.released()


# -- retry budget, observability, lifecycle ---------------------------------------------


async def test_the_retry_budget_stops_retries_when_a_backend_fails_broadly(clients, make_openai_server, sleeps) -> None:
    bad, good = make_openai_server(), make_openai_server()
    bad.fail(Fault(status=500))
    client = clients(
        backend(bad, "bad", max_retries=3, allowed_fails=10**6),
        backend(good, "good"),
        retry_budget=0.1,
        retry_budget_min=2,
    )
    for _ in range(20):
        await chat(client)
    bad_stats = stats(client)["bad"]
    assert bad_stats["retries"] <= 2 + 0.1 * 20
    assert bad_stats["retries_denied"] > 0
    assert len(bad.requests) == 20 + bad_stats["retries"]


async def test_events_and_logs_record_each_attempt_retry_and_failover(
    clients, make_openai_server, sleeps, caplog
) -> None:
    events: list[RouterEvent] = []

    async def hook(event: RouterEvent) -> None:
        events.append(event)

    a, b = make_openai_server(), make_openai_server()
    a.fail(Fault(status=503))
    client = clients(backend(a, "a", max_retries=1), backend(b, "b"), on_event=hook)
    with caplog.at_level(logging.DEBUG, logger="turnout"):
        await chat(client)
    assert [(e.kind, e.backend, e.attempt) for e in events] == [
        ("request", "", 0),
        ("attempt", "a", 1),
        ("attempt_failed", "a", 1),
        ("retry", "a", 1),
        ("attempt", "a", 2),
        ("attempt_failed", "a", 2),
        ("failure", "a", 0),
        ("failover", "a", 0),
        ("attempt", "b", 1),
        ("success", "b", 1),
        ("done", "b", 0),
    ]
    assert events[7].to == "b"
    assert len({id(e.request) for e in events}) == 1 and events[0].request.model == "test-model"
    answer = events[9]
    assert events[0].start <= answer.start <= answer.first == answer.end <= events[-1].end  # one clock, in order
    assert answer.response is not None and answer.response.status_code == 200
    assert answer.times is events[8].times, "the success carries the timings its attempt started"
    text = caplog.text
    assert "backend a: InternalServerError 503" in text and "failing over from a to b" in text


async def test_a_failing_hook_never_breaks_a_request(clients, openai_server) -> None:
    async def hook(event: RouterEvent) -> None:
        raise RuntimeError("metrics exporter down")

    client = clients(backend(openai_server, "a"), on_event=hook)
    assert served_by(await chat(client)) == "a"


async def test_a_bodys_own_bytes_go_to_every_backend_tried_until_a_hook_changes_the_body(
    clients, make_openai_server
) -> None:
    """``raw`` (what ``turnout serve`` read) is sent as it is, to the backend failed over to as well; once a
    subscriber changes the body (telemetry asking a stream for its usage), the body is encoded anew."""
    from openai._models import FinalRequestOptions

    a, b = make_openai_server(), make_openai_server()
    a.fail(Fault(status=503), times=1)
    sent = b'{"messages":[{"role":"user","content":"hi"}],  "model":"test-model","top_p":1.0}'

    def options() -> FinalRequestOptions:
        return FinalRequestOptions.construct(method="post", url="/chat/completions", json_data=json.loads(sent))

    plain = clients(backend(a, "a", max_retries=0), backend(b, "b"))
    name, _ = await plain.router.send(options(), raw=sent)
    assert name == "b" and a.chat_requests()[-1].raw == sent and b.chat_requests()[-1].raw == sent

    async def hook(event: RouterEvent) -> None:
        if event.kind == "request" and event.request is not None:
            event.request.change("user", "someone")

    changing = clients(backend(b, "b"), on_event=hook)
    await changing.router.send(options(), raw=sent)
    received = b.chat_requests()[-1]
    assert received.raw != sent and received.json == {**json.loads(sent), "user": "someone"}


async def test_models_aggregate_every_backend_and_report_the_down_ones(clients, make_openai_server, free_port) -> None:
    a, b = make_openai_server(models=["m1"]), make_openai_server(models=["m2", "m3"])
    client = clients(backend(a, "a"), backend(b, "b"), backend(f"http://127.0.0.1:{free_port}/v1", "down"))
    listing = await client.router.list_models()
    assert [(m.id, m.owned_by) for m in listing.data] == [("m1", "a"), ("m2", "b"), ("m3", "b")]
    assert [m.id async for m in listing] == ["m1", "m2", "m3"]
    assert list(listing.errors) == ["down"] and "APIConnectionError" in listing.errors["down"]


async def test_health_of_every_backend(clients, openai_server, free_port) -> None:
    client = clients(backend(openai_server, "up"), backend(f"http://127.0.0.1:{free_port}/v1", "down"))
    health = await client.router.health()
    assert health["up"].up and not health["down"].up


async def test_closing_the_client_leaves_no_connection_open(make_openai_server) -> None:
    a, b = make_openai_server(), make_openai_server()
    async with turnout.AsyncOpenAI(router=Router([backend(a, "a"), backend(b, "b", priority=0)])) as client:
        await asyncio.gather(*(chat(client) for _ in range(10)))
        assert a.open_connections + b.open_connections > 0
    assert await a.released() and await b.released()


async def test_a_routers_own_aclose_leaves_no_connection_open(make_openai_server) -> None:
    a, b = make_openai_server(), make_openai_server()
    async with Router([backend(a, "a"), backend(b, "b", priority=0)]) as router:
        client = turnout.AsyncOpenAI(router=router)
        await asyncio.gather(*(chat(client) for _ in range(10)))
        assert a.open_connections + b.open_connections > 0
    assert await a.released() and await b.released()


def test_backend_names_must_be_unique() -> None:
    adapter = OpenAICompatAdapter("same", preset="vllm")
    with pytest.raises(ValueError, match="unique"):
        Router([adapter, OpenAICompatAdapter("same", preset="llamacpp")])


# -- load -------------------------------------------------------------------------


async def test_1000_concurrent_requests_with_a_flaky_primary_are_all_answered(
    clients, make_openai_server, sleeps, mocker
) -> None:
    flaky, healthy = make_openai_server(), make_openai_server()
    rng = __import__("random").Random(7)
    flaky.faults.take = lambda: Fault(status=500) if rng.random() < 1 / 3 else None  # type: ignore[method-assign]
    # Attempts get a minute: on a loaded machine a 5 s timeout let a request time out in the server's queue,
    # counted as an attempt here before the server had recorded it (the counts below would then differ).
    client = clients(
        backend(flaky, "flaky", max_retries=1, allowed_fails=10**6, attempt_timeout=60),
        backend(healthy, "healthy", attempt_timeout=60),
        retry_budget_min=10**6,
    )
    prompts = [f"request {i}" for i in range(1000)]
    replies = await asyncio.gather(*(chat(client, messages=[{"role": "user", "content": p}]) for p in prompts))
    assert [r.choices[0].message.content for r in replies] == [f"echo: {p}" for p in prompts]
    counts = stats(client)
    served = Counter(served_by(r) for r in replies)
    assert served["flaky"] == counts["flaky"]["successes"] and served["healthy"] == counts["healthy"]["successes"]
    assert counts["flaky"]["requests"] == 1000
    assert counts["flaky"]["successes"] + counts["flaky"]["failures"] == 1000
    assert counts["healthy"]["requests"] == counts["flaky"]["failures"]
    assert len(flaky.chat_requests()) == counts["flaky"]["attempts"] == 1000 + counts["flaky"]["retries"]
    assert len(healthy.chat_requests()) == served["healthy"], "nothing lost or duplicated"


async def test_what_one_backend_cannot_do_fails_over_to_one_that_can(
    clients, make_ollama_server, openai_server
) -> None:
    from turnout.adapters import OllamaAdapter

    ollama_server = make_ollama_server()
    client = clients(Backend(OllamaAdapter("ollama", host=ollama_server.host)), backend(openai_server, "cloud"))
    reply = await chat(client, n=2)
    assert served_by(reply) == "cloud", "Ollama refuses n > 1 before sending; the next backend can"
    assert ollama_server.requests == []


async def test_a_stream_that_ends_before_its_first_chunk_fails_over(clients, make_openai_server, sleeps) -> None:
    from tests.support.loopback import Fault

    empty, fine = make_openai_server(), make_openai_server()
    empty.fail(Fault(empty=True))
    client = clients(backend(empty, "empty", max_retries=0), backend(fine, "fine"))
    stream = await chat(client, stream=True)
    assert served_by(stream) == "fine" and [c async for c in stream]


async def test_a_long_conversation_is_put_in_wire_form_once_for_all_attempts(
    clients, make_openai_server, sleeps, mocker
) -> None:
    """The SDK's transform of 500 messages costs ~85 ms: the caller's SDK builds the body once, and no
    retry, failover or per-backend model name builds it again."""
    import openai._utils._transform as transform
    import openai.resources.chat.completions.completions as sdk_completions

    flaky, spare = make_openai_server(), make_openai_server()
    flaky.fail(Fault(status=503))
    client = clients(
        backend(flaky, "flaky", models={"long": "test-model"}, max_retries=2, allowed_fails=10),
        backend(spare, "spare", models={"long": "test-model"}),
    )
    create = mocker.spy(sdk_completions, "async_maybe_transform")
    transforms = [mocker.spy(transform, "async_transform"), mocker.spy(transform, "transform")]
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(500)]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    reply = await chat(client, model="long", messages=messages, tools=tools)
    assert served_by(reply) == "spare" and len(flaky.chat_requests()) == 3 and len(spare.chat_requests()) == 1
    assert create.call_count == 1, "one body for four attempts on two backends"
    bodies = [
        c for spy in transforms for c in spy.call_args_list if isinstance(c.args[0], dict) and "messages" in c.args[0]
    ]
    assert len(bodies) == 1, "no backend's SDK client transforms the messages again"
    for request in flaky.chat_requests() + spare.chat_requests():
        assert request.json["model"] == "test-model"
        assert request.json["messages"] == messages and request.json["tools"] == tools


async def test_sdk_message_objects_from_an_earlier_reply_can_be_sent_back(
    clients, openai_server, make_ollama_server
) -> None:
    from turnout.adapters import OllamaAdapter

    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    ollama_server = make_ollama_server()
    for client in (
        clients(backend(openai_server, "openai")),
        clients(Backend(OllamaAdapter("ollama", host=ollama_server.host))),
    ):
        first = await chat(client, messages=[{"role": "user", "content": "look it up"}], tools=tools)
        call = first.choices[0].message.tool_calls[0]
        history = [
            {"role": "user", "content": "look it up"},
            first.choices[0].message,  # the SDK object itself
            {"role": "tool", "tool_call_id": call.id, "content": "found"},
        ]
        second = await chat(client, messages=history, tools=tools)
        assert "found" in second.choices[0].message.content
