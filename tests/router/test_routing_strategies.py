"""Routing by what the backends are doing: latency, requests in flight, session affinity, hedged requests.

Loopback servers with set latencies (``server.latency``: seconds, or a schedule by request number) and
faults, reached through turnout's client as SDK code reaches it. Assertions are on counts and on which
backend served (``served_by``, read from ``x-turnout-backend``), never on how long anything took.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections import Counter
from typing import Any

import pytest

import turnout
from tests.router.test_router import backend as ranked_backend
from tests.router.test_router import chat
from tests.state.test_many_processes import workers  # noqa: F401 -- the fixture
from tests.support.loopback import Fault, OpenAIServer
from turnout import served_by
from turnout.router import RouterEvent
from turnout.state import RedisState


def backend(server: OpenAIServer, name: str, **knobs: Any) -> Any:
    """A backend of the one priority level the strategies order (``ranked_backend``: by position)."""
    return ranked_backend(server, name, **{"priority": 0, **knobs})


async def served(client: turnout.AsyncOpenAI, n: int, **kwargs: Any) -> list[str]:
    """Who served each of ``n`` requests sent one after another."""
    return [served_by(await chat(client, **kwargs)) or "?" for _ in range(n)]


async def until(condition: Any, what: str, tries: int = 200) -> None:
    """``condition()`` true within ``tries`` polls 20 ms apart (the server's view of a closed socket lags)."""
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


@pytest.fixture
def no_exploring(mocker) -> None:
    """The latency strategy's exploration is a coin toss; the tests that count exact turns switch it off."""
    mocker.patch("turnout.router._strategy.EXPLORE", 0.0)


# -- latency ----------------------------------------------------------------------------------------


async def test_latency_sends_nearly_everything_to_the_faster_backend_and_moves_when_it_slows(
    clients, make_openai_server
) -> None:
    fast, slow = make_openai_server(), make_openai_server()
    fast.latency, slow.latency = 0.02, 0.15
    client = clients(backend(fast, "fast"), backend(slow, "slow"), strategy="latency")
    await served(client, 10)  # warm-up: each is measured
    counts = Counter(await served(client, 200))
    assert counts["fast"] >= 180, counts

    fast.latency = 0.3
    after = await served(client, 30)
    first_move = after.index("slow")
    assert first_move <= 6, f"still on the slowed backend after {first_move} requests: {after}"
    assert after[-10:].count("slow") >= 8, after


async def test_latency_tries_a_backend_with_no_measurement_yet(clients, make_openai_server, no_exploring) -> None:
    one, two, three = make_openai_server(), make_openai_server(), make_openai_server()
    one.latency = 0.01
    client = clients(backend(one, "one"), backend(two, "two"), backend(three, "three"), strategy="latency")
    first = await served(client, 3)
    assert sorted(first) == ["one", "three", "two"], "each unmeasured backend is tried before a measured one"


async def test_latency_is_measured_once_and_the_events_carry_it(clients, make_openai_server) -> None:
    server = make_openai_server()
    server.latency = 0.05
    events: list[RouterEvent] = []

    async def hook(event: RouterEvent) -> None:
        events.append(event)

    client = clients(backend(server, "only"), strategy="latency", on_event=hook)
    await chat(client)
    attempt, success = (e for e in events if e.kind in ("attempt", "success"))
    assert attempt.times is success.times, "one measurement, filled in as the attempt goes"
    times = success.times
    assert times is not None and times.first is not None and times.end is not None
    assert times.start < times.first <= times.end
    assert client.router._runners[0].latency_of("test-model") == pytest.approx(times.to_first)


# -- least-busy --------------------------------------------------------------------------------------


async def test_least_busy_sends_nothing_to_a_backend_holding_slow_requests(clients, make_openai_server) -> None:
    held, idle = make_openai_server(), make_openai_server()
    held.latency = 5.0
    client = clients(backend(held, "held"), backend(idle, "idle"), strategy="least-busy")
    holding = [asyncio.ensure_future(chat(client, model="held/test-model")) for _ in range(20)]
    await until(lambda: len(held.requests) == 20, "20 requests in flight on 'held'")
    assert client.router.stats()["held"]["in_flight"] == 20
    assert Counter(await served(client, 20)) == {"idle": 20}
    for task in holding:
        task.cancel()
    await asyncio.gather(*holding, return_exceptions=True)
    assert client.router.stats()["held"]["in_flight"] == 0, "a cancelled request is no longer in flight"


async def test_a_stream_is_in_flight_until_it_is_read_to_its_end(clients, make_openai_server) -> None:
    server = make_openai_server()
    client = clients(backend(server, "only"), strategy="least-busy")
    stream = await chat(client, stream=True)
    assert client.router.stats()["only"]["in_flight"] == 1
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: hi"
    assert client.router.stats()["only"]["in_flight"] == 0


async def test_least_busy_counts_another_processes_requests_through_redis(
    workers, clients, make_openai_server, redis_server
) -> None:
    held, idle = make_openai_server(), make_openai_server()
    held.latency = 20.0
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    [other] = workers(
        1, redis_server.url, [("held", held, {}), ("idle", idle, {})], prefix=prefix, strategy="least-busy"
    )
    other.ask("hold", "held/test-model", 20)
    await until(lambda: len(held.requests) == 20, "20 requests from the other process in flight on 'held'", 500)
    client = clients(
        backend(held, "held"),
        backend(idle, "idle"),
        strategy="least-busy",
        state=RedisState(redis_server.url, prefix=prefix),
    )
    assert (await client.router.shared_stats())["held"]["in_flight"] == 20
    assert Counter(await served(client, 20)) == {"idle": 20}, "not one to the backend the other process keeps busy"

    other.proc.kill()  # mid-request: it never says its requests ended
    other.proc.join(5)
    for _ in range(60):  # its lease (5 s) runs out: bounded polls, 0.25 s apart
        if (await client.router.shared_stats())["held"]["in_flight"] == 0:
            break
        await asyncio.sleep(0.25)
    assert (await client.router.shared_stats())["held"]["in_flight"] == 0, "a dead process's counts were left behind"


# -- affinity -----------------------------------------------------------------------------------------


async def test_every_turn_of_a_session_goes_to_one_backend(clients, make_openai_server) -> None:
    servers = [make_openai_server() for _ in range(3)]
    client = clients(*(backend(s, f"b{i}") for i, s in enumerate(servers)))

    async def session(n: int) -> set[str]:
        return {served_by(await chat(client, user=f"user-{n}")) or "?" for _ in range(5)}

    homes = await asyncio.gather(*(session(n) for n in range(50)))
    assert all(len(home) == 1 for home in homes), homes
    assert len({next(iter(h)) for h in homes}) == 3, "sessions still spread over every backend"


async def test_a_session_names_itself_by_prompt_cache_key_header_or_first_messages(clients, make_openai_server) -> None:
    servers = [make_openai_server() for _ in range(3)]
    client = clients(*(backend(s, f"b{i}") for i, s in enumerate(servers)), affinity="hash")
    by_key = {served_by(await chat(client, prompt_cache_key="conv-1")) for _ in range(8)}
    by_header = {served_by(await chat(client, extra_headers={"x-turnout-session": "conv-2"})) for _ in range(8)}
    first = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}]
    by_hash = set()
    for turn in range(8):
        messages = first + [{"role": "assistant", "content": "yes"}, {"role": "user", "content": f"turn {turn}"}] * turn
        by_hash.add(served_by(await chat(client, messages=messages)))
    assert len(by_key) == len(by_header) == len(by_hash) == 1
    assert all("x-turnout-session" not in {k.lower() for k in r.headers} for s in servers for r in s.requests), (
        "turnout's own header never reaches a backend"
    )


async def test_affinity_off_spreads_a_session(clients, make_openai_server) -> None:
    servers = [make_openai_server() for _ in range(3)]
    client = clients(*(backend(s, f"b{i}") for i, s in enumerate(servers)), affinity="off")
    assert len(set(await served(client, 30, user="one-user"))) > 1


async def test_a_session_whose_backend_cools_down_moves_and_nothing_fails(clients, make_openai_server) -> None:
    servers = {f"b{i}": make_openai_server() for i in range(3)}
    client = clients(*(backend(s, n, max_retries=0, allowed_fails=1) for n, s in servers.items()))
    home = served_by(await chat(client, user="u"))
    servers[home].fail(Fault(status=503))
    turns = await served(client, 5, user="u")  # every one answered: the first fails over, the rest follow it
    assert home not in turns and len(set(turns)) == 1, turns
    assert client.router.stats()[home]["state"] == "open"


async def test_sessions_agree_across_processes_with_redis(clients, make_openai_server, redis_server) -> None:
    servers = [make_openai_server() for _ in range(3)]
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    def client() -> turnout.AsyncOpenAI:
        return clients(
            *(backend(s, f"b{i}") for i, s in enumerate(servers)), state=RedisState(redis_server.url, prefix=prefix)
        )

    one, two = client(), client()
    homes = {n: served_by(await chat(one, user=f"u{n}")) for n in range(20)}
    later = {n: served_by(await chat(two, user=f"u{n}")) for n in range(20)}
    assert later == homes, "a router that never saw a session sends it where another router did"
    assert len(set(homes.values())) > 1


def test_a_session_stays_put_between_spawned_processes(workers, make_openai_server, redis_server) -> None:
    servers = [make_openai_server() for _ in range(3)]
    backends = [(f"b{i}", s, {"priority": 0}) for i, s in enumerate(servers)]
    first, second = workers(2, redis_server.url, backends)
    homes = {n: first.ask("chat", {"user": f"u{n}"}) for n in range(15)}
    assert len(set(homes.values())) > 1
    assert {n: second.ask("chat", {"user": f"u{n}"}) for n in range(15)} == homes


# -- hedging -------------------------------------------------------------------------------------------


async def test_a_slow_tail_is_hedged_on_the_next_backend_and_the_loser_disconnected(
    clients, make_openai_server
) -> None:
    tail, other = make_openai_server(), make_openai_server()
    tail.latency = other.latency = 0.02
    hedges: list[RouterEvent] = []

    async def hook(event: RouterEvent) -> None:
        if event.kind == "hedge":
            hedges.append(event)

    client = clients(
        ranked_backend(tail, "tail"),
        ranked_backend(other, "other"),
        hedge_after="p90",
        retry_budget_min=40,
        on_event=hook,
    )

    async def batch() -> list[str]:  # ten at a time: the latency measured is the latency under this load
        return [served_by(r) or "?" for r in await asyncio.gather(*(chat(client) for _ in range(10)))]

    for _ in range(3):  # the percentile is known after 20 answers
        await batch()
    tail.latency = lambda n: 3.0 if n % 10 == 0 else 0.02  # from now on, every 10th request takes 3 s
    tail_before, other_before = len(tail.requests), len(other.requests)
    winners: Counter[str] = Counter()
    gc.collect()  # a full collection now, not in the middle: its pause would stall a whole batch past p90
    for _ in range(10):
        winners.update(await batch())
    assert sum(winners.values()) == 100
    slow = sum(1 for n in range(tail_before + 1, len(tail.requests) + 1) if n % 10 == 0)
    attempts = len(tail.requests) - tail_before + len(other.requests) - other_before
    assert attempts <= 115, f"{attempts} attempts for 100 requests"
    assert all(h.backend == "tail" and h.to == "other" for h in hedges)
    assert len(hedges) >= len(other.requests), "the other backend saw only hedges (some lost before they were sent)"
    assert winners["other"] >= slow, (winners, slow)  # every 3 s answer was beaten
    for server in (tail, other):  # each request was answered, or its client was seen to hang up
        await until(lambda s=server: len(s.requests) == s.answered + s.abandoned, "every loser gone")
    assert tail.abandoned >= slow, "each 3 s request's connection was closed, not waited out"


async def test_a_hedged_stream_is_won_at_its_first_token(clients, make_openai_server) -> None:
    slow, fast = make_openai_server(), make_openai_server()
    slow.latency = 3.0
    client = clients(ranked_backend(slow, "slow"), ranked_backend(fast, "fast"), hedge_after=0.05)
    stream = await chat(client, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: hi" and served_by(stream) == "fast"
    await until(lambda: slow.abandoned == 1, "the slow backend sees its request dropped")


@pytest.mark.parametrize("max_hedges", [1, 2])
async def test_one_hedge_per_request_unless_more_are_allowed(clients, make_openai_server, max_hedges: int) -> None:
    servers = [make_openai_server() for _ in range(3)]
    for server in servers:
        server.latency = 0.4
    client = clients(
        *(ranked_backend(s, f"b{i}") for i, s in enumerate(servers)), hedge_after=0.05, max_hedges=max_hedges
    )
    await served(client, 2)
    assert [len(s.requests) for s in servers] == [2, 2, 2 if max_hedges == 2 else 0]


async def test_a_pinned_call_is_never_hedged(clients, make_openai_server) -> None:
    home, other = make_openai_server(), make_openai_server()
    home.latency = 0.3
    client = clients(ranked_backend(home, "home"), ranked_backend(other, "other"), hedge_after=0.02)
    made = await client.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    assert made.id and served_by(made) == "home"
    assert other.requests == []


async def test_a_responses_call_is_hedged_only_when_it_stores_nothing(clients, make_openai_server) -> None:
    slow, fast = make_openai_server(), make_openai_server()
    slow.latency = 1.0
    client = clients(ranked_backend(slow, "slow"), ranked_backend(fast, "fast"), hedge_after=0.05)
    unstored = await client.responses.create(model="test-model", input="hi", store=False)
    assert unstored.output_text == "echo: hi" and served_by(unstored) == "fast"
    stream = await client.responses.create(model="test-model", input="hi", store=False, stream=True)
    events = [e async for e in stream]
    assert events[-1].type == "response.completed" and served_by(stream) == "fast"
    stored = await client.responses.create(model="test-model", input="hi")
    assert served_by(stored) == "slow", "a stored response is made once, where it will be kept"
    assert len(fast.requests) == 2


async def test_under_a_full_outage_hedges_stop_when_the_budget_is_spent(clients, make_openai_server) -> None:
    first, second = make_openai_server(), make_openai_server()
    first.latency = second.latency = 0.25  # everything slow
    client = clients(
        ranked_backend(first, "first"),
        ranked_backend(second, "second"),
        hedge_after=0.02,
        retry_budget=0.0,
        retry_budget_min=3,
    )
    winners = await served(client, 10)
    assert len(winners) == 10
    assert len(second.requests) == 3, "three hedges (the budget), then none"
    assert len(first.requests) == 10


# -- settings ------------------------------------------------------------------------------------------


def test_the_variables_reach_the_router(monkeypatch: pytest.MonkeyPatch, make_openai_server) -> None:
    from turnout.settings import from_env

    server = make_openai_server()
    monkeypatch.setenv("TURNOUT_BACKENDS", "local")
    monkeypatch.setenv("TURNOUT_BACKEND__LOCAL__PROVIDER", "vllm")
    monkeypatch.setenv("TURNOUT_BACKEND__LOCAL__BASE_URL", server.base_url)
    monkeypatch.setenv("TURNOUT_STRATEGY", "least-busy")
    monkeypatch.setenv("TURNOUT_AFFINITY", "off")
    monkeypatch.setenv("TURNOUT_HEDGE_AFTER", "p95")
    monkeypatch.setenv("TURNOUT_MAX_HEDGES", "2")
    router = from_env(_env_file=None)
    assert router.select.strategy == "least-busy" and router._affinity is None
    assert router._hedge is not None and (router._hedge.percentile, router._hedge.max_hedges) == (95.0, 2)
    monkeypatch.setenv("TURNOUT_HEDGE_AFTER", "0.25")
    assert from_env(_env_file=None)._hedge.seconds == 0.25


@pytest.mark.parametrize(
    ("variable", "value", "accepts"),
    [
        ("TURNOUT_STRATEGY", "fastest", "weighted (by weight, the default), latency"),
        ("TURNOUT_HEDGE_AFTER", "soon", "or a percentile of the backend's recent latency, like p95"),
        ("TURNOUT_AFFINITY", "sticky", "off, or hash"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_accepts(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, accepts: str
) -> None:
    from turnout import ConfigError
    from turnout.settings import TurnoutSettings

    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        TurnoutSettings(_env_file=None)
    assert variable in str(caught.value) and accepts in str(caught.value)
