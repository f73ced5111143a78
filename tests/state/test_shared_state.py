"""Breakers, budgets and rate windows shared through a real Redis server, between routers that share nothing else.

Each router here has its own store object, connection pool and clients, as two processes would
(tests/state/test_many_processes.py runs real processes); a router over this process's memory is the
control: what each would see alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import openai
import pytest

from tests.router.test_router import MSG, backend, chat
from tests.support.loopback import Fault, OpenAIServer
from turnout import served_by
from turnout.adapters import OpenAICompatAdapter
from turnout.router import Backend
from turnout.state import MemoryState, RedisState


async def test_failures_are_counted_across_routers_and_the_cooldown_is_seen_by_all(
    clients, make_openai_server, redis_server
) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    primary.fail(Fault(status=500))
    knobs = dict(max_retries=0, allowed_fails=3, cooldown=60)
    a, b = (
        clients(backend(primary, "primary", **knobs), backend(backup, "backup"), state=RedisState(redis_server.url))
        for _ in range(2)
    )
    for client in (a, b, a, b, a, b):
        assert served_by(await chat(client)) == "backup"
    assert len(primary.chat_requests()) == 3, "the third failure, whoever saw it, opened the breaker for both"
    seen = (await b.router.shared_stats())["primary"]
    assert seen["state"] == "open" and 55 < seen["cooldown_remaining"] <= 60 and seen["cooldowns"] == 1
    assert seen["shared"] is True

    primary.requests.clear()  # the control: each router alone needs its own three failures
    c, d = (
        clients(backend(primary, "primary", **knobs), backend(backup, "backup"), state=MemoryState()) for _ in range(2)
    )
    for client in (c, d, c, d, c, d):
        await chat(client)
    assert len(primary.chat_requests()) == 6


async def test_a_half_open_backend_is_probed_by_one_request_while_the_others_skip_it(
    clients, make_openai_server, redis_server
) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    knobs = dict(max_retries=0, allowed_fails=1, cooldown=0.3)
    a, b = (
        clients(backend(primary, "primary", **knobs), backend(backup, "backup"), state=RedisState(redis_server.url))
        for _ in range(2)
    )
    primary.fail(Fault(status=500), times=1)
    assert served_by(await chat(a)) == "backup"  # opens the breaker
    await asyncio.sleep(0.4)  # the cooldown ends: half-open
    primary.fail(Fault(delay=1.0), times=1)  # the probe takes a while, and succeeds
    probe = asyncio.ensure_future(chat(a))
    while len(primary.chat_requests()) < 2:
        await asyncio.sleep(0.01)
    assert served_by(await chat(b)) == "backup", "another router's request skips the backend being probed"
    assert len(primary.chat_requests()) == 2
    assert served_by(await probe) == "primary"
    assert served_by(await chat(b)) == "primary", "the probe's success closed the breaker for everyone"


async def test_an_rpm_limit_is_one_count_for_every_router(clients, make_openai_server, redis_server) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    a, b = (
        clients(backend(primary, "primary", rpm=5), backend(backup, "backup"), state=RedisState(redis_server.url))
        for _ in range(2)
    )
    served = [served_by(await chat(client)) for client in (a, b) * 5]
    assert served == ["primary"] * 5 + ["backup"] * 5
    assert len(primary.chat_requests()) == 5
    window = (await a.router.shared_stats())["primary"]["window"]
    assert (window["rpm"], window["rpm_limit"]) == (5, 5)


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_tokens_are_estimated_before_and_corrected_from_the_answers_usage(
    clients, make_openai_server, request, store: str
) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    state = MemoryState() if store == "memory" else RedisState(request.getfixturevalue("redis_server").url)
    client = clients(backend(primary, "primary", tpm=200), backend(backup, "backup"), state=state)
    first = await chat(client, max_tokens=150)  # counted as ~152 before it is sent: it fits
    assert served_by(first) == "primary"
    used = first.usage.total_tokens
    assert used < 10
    second = await chat(client, max_tokens=150)  # fits only because the first now counts its real tokens
    assert served_by(second) == "primary"
    assert served_by(await chat(client, max_tokens=195)) == "backup", "195 more would pass 200"
    stats = await client.router.shared_stats()
    assert stats["primary"]["window"]["tpm"] == used + second.usage.total_tokens


async def test_a_stream_corrects_its_tokens_from_its_usage_event(clients, make_openai_server, redis_server) -> None:
    primary = make_openai_server()
    client = clients(backend(primary, "primary", tpm=1000), state=RedisState(redis_server.url))
    stream = await chat(client, max_tokens=500, stream=True, stream_options={"include_usage": True})
    usage = [chunk.usage async for chunk in stream if chunk.usage is not None]
    assert (await client.router.shared_stats())["primary"]["window"]["tpm"] == usage[0].total_tokens


async def test_a_long_retry_after_cools_the_backend_for_every_router(clients, make_openai_server, redis_server) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    primary.fail(Fault(status=429, retry_after="120"), times=1)
    knobs = dict(max_retries=2, backoff_max=5, allowed_fails=3)
    a, b = (
        clients(backend(primary, "primary", **knobs), backend(backup, "backup"), state=RedisState(redis_server.url))
        for _ in range(2)
    )
    assert served_by(await chat(a)) == "backup"
    assert served_by(await chat(b)) == "backup"
    assert len(primary.chat_requests()) == 1, "120 s is past backoff_max: no retry, and a cooldown that long"
    seen = (await b.router.shared_stats())["primary"]
    assert seen["state"] == "open" and 110 < seen["cooldown_remaining"] <= 120


async def test_the_hosts_clocks_do_not_matter(clients, make_openai_server, redis_server, mocker) -> None:
    """Every time in Redis is Redis's own: a router whose clock is a day ahead opens a 60 s cooldown that
    another router sees as 60 s."""
    primary, backup = make_openai_server(), make_openai_server()
    primary.fail(Fault(status=401), times=1)
    knobs = dict(max_retries=0, cooldown=60)
    a, b = (
        clients(backend(primary, "primary", **knobs), backend(backup, "backup"), state=RedisState(redis_server.url))
        for _ in range(2)
    )
    clock = mocker.patch("turnout.state._clock.now", return_value=10**6 + 86400.0)
    assert served_by(await chat(a)) == "backup"
    clock.return_value = 10**6
    seen = (await b.router.shared_stats())["primary"]
    assert seen["state"] == "open" and 55 < seen["cooldown_remaining"] <= 60


async def test_redis_going_away_leaves_requests_flowing_with_one_warning_and_sharing_resumes(
    clients, make_openai_server, make_redis_server, caplog
) -> None:
    redis = make_redis_server()
    primary, backup = make_openai_server(), make_openai_server()
    knobs = dict(max_retries=0, backoff_max=5)
    a, b = (
        clients(backend(primary, "primary", **knobs), backend(backup, "backup"), state=RedisState(redis.url, timeout=2))
        for _ in range(2)
    )
    for client in (a, b):
        assert served_by(await chat(client)) == "primary"
    redis.kill()
    with caplog.at_level(logging.WARNING, logger="turnout"):
        for client in (a, b) * 10:
            assert served_by(await chat(client)) == "primary"
        lost = [r.message for r in caplog.records if "unreachable" in r.message]
        assert len(lost) == 2, "one warning per router (per process), not one per request"
        assert all(f"127.0.0.1:{redis.port}" in m for m in lost)
        redis.start()
        for client in (a, b):
            state = client.router.state
            for _ in range(500):
                if not state.down:
                    break
                await asyncio.sleep(0.01)
            assert not state.down
        assert len([r for r in caplog.records if "resumed" in r.message]) == 2
    primary.fail(Fault(status=429, retry_after="120"), times=1)
    primary.requests.clear()
    assert served_by(await chat(a)) == "backup"
    assert served_by(await chat(b)) == "backup", "the cooldown is shared again"
    assert len(primary.chat_requests()) == 1


async def test_stored_values_live_in_redis_with_their_expiry(redis_server) -> None:
    state, other = RedisState(redis_server.url, prefix="app"), RedisState(redis_server.url, prefix="app")
    try:
        await state.put("resp_1", {"backend": "groq", "items": [1, 2]}, ttl=30)
        assert await other.get("resp_1") == {"backend": "groq", "items": [1, 2]}
        assert 29000 < int(redis_server.command("PTTL", "app:kv:resp_1")[1:]) <= 30000
        assert await other.delete("resp_1") is True
        assert await state.get("resp_1") is None and await state.delete("resp_1") is False
    finally:
        await state.aclose()
        await other.aclose()


async def test_prefixes_keep_apps_apart(clients, make_openai_server, redis_server) -> None:
    primary = make_openai_server()
    a = clients(backend(primary, "primary", rpm=1), state=RedisState(redis_server.url, prefix="one"))
    b = clients(backend(primary, "primary", rpm=1), state=RedisState(redis_server.url, prefix="two"))
    for client in (a, b):
        assert served_by(await chat(client)) == "primary"


async def test_a_bridged_conversation_stored_by_one_router_is_continued_by_another(clients, redis_server) -> None:
    chat_only = OpenAIServer(disabled={"responses"}).start()
    try:
        local = OpenAICompatAdapter("local", preset="openai_compat", base_url=chat_only.base_url, timeout=10)
        a, b = (clients(Backend(local, max_retries=0), state=RedisState(redis_server.url)) for _ in range(2))
        one = await a.responses.create(model="test-model", input="my name is Ada")
        two = await b.responses.create(model="test-model", input="what is my name?", previous_response_id=one.id)
        assert two.previous_response_id == one.id
        messages = chat_only.chat_requests()[-1].json["messages"]
        assert [m["content"] for m in messages] == ["my name is Ada", "echo: my name is Ada", "what is my name?"]
    finally:
        chat_only.stop()


def age(url: str, key: str, seconds: int) -> None:
    """Make a backend's state in Redis ``seconds`` older, as if that much time had passed (Redis's clock
    cannot be moved): every time it holds moves back, and each second's slot to where that second goes."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    fields = client.hgetall(key)
    moved: dict[str, Any] = {f: v for f, v in fields.items() if f[0] not in "srtx" or not f[1:].isdigit()}
    for name in ("open_until", "probe_until", "full_until", "wlo"):
        if name in moved and float(moved[name]):
            moved[name] = float(moved[name]) - seconds
    for i in range(61):
        if f"s{i}" in fields:
            second = int(fields[f"s{i}"]) - seconds
            j = second % 61
            moved.update(
                {f"s{j}": second, f"r{j}": fields[f"r{i}"], f"t{j}": fields[f"t{i}"], f"x{j}": fields[f"x{i}"]}
            )
    client.delete(key)
    client.hset(key, mapping=moved)
    client.close()


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_window_forgets_what_is_older_than_a_minute(
    clients, make_openai_server, request, mocker, store: str
) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    if store == "memory":
        clock = mocker.patch("turnout.state._clock.now", return_value=5000.2)
        state: Any = MemoryState()

        def later(seconds: int) -> None:
            clock.return_value += seconds
    else:
        url = request.getfixturevalue("redis_server").url
        state = RedisState(url)

        def later(seconds: int) -> None:
            age(url, "turnout:backend:{primary}", seconds)

    client = clients(backend(primary, "primary", rpm=3, tpm=1000), backend(backup, "backup"), state=state)
    for _ in range(3):
        assert served_by(await chat(client)) == "primary"
    later(20)
    assert served_by(await chat(client, max_tokens=900)) == "backup", "three requests in the last minute"
    later(20)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="primary/test-model", messages=MSG, timeout=5)
    assert "RPM 3 (room in 21" in caught.value.message or "RPM 3 (room in 20" in caught.value.message
    later(21)  # 61 s after the first three: gone from the window
    assert served_by(await chat(client, max_tokens=900)) == "primary"
    window = (await client.router.shared_stats())["primary"]["window"]
    assert window["rpm"] == 1 and window["tpm"] < 50, "only the last request, its tokens corrected"


async def test_a_correction_reaches_the_other_routers_without_a_next_request(
    clients, make_openai_server, redis_server
) -> None:
    """It rides with this router's next admission; with none coming, it goes alone soon after."""
    primary = make_openai_server()
    a, b = (clients(backend(primary, "primary", tpm=1000), state=RedisState(redis_server.url)) for _ in range(2))
    reply = await chat(a, max_tokens=900)
    used = reply.usage.total_tokens
    for _ in range(200):
        window = (await b.router.shared_stats())["primary"]["window"]
        if window["tpm"] == used:
            break
        await asyncio.sleep(0.01)
    assert window["tpm"] == used


async def test_redis_unreachable_from_the_start_serves_from_local_state_and_keeps_its_password(
    clients, make_openai_server, free_port, caplog
) -> None:
    primary = make_openai_server()
    state = RedisState(f"redis://:hunter2-redis-password@127.0.0.1:{free_port}/0")
    client = clients(backend(primary, "primary", rpm=2), state=state)
    with caplog.at_level(logging.WARNING, logger="turnout"):
        assert [served_by(await chat(client)) for _ in range(2)] == ["primary", "primary"]
        with pytest.raises(openai.RateLimitError):  # the limit still holds, counted in this process
            await client.chat.completions.create(model="test-model", messages=MSG, timeout=2)
    assert len([r for r in caplog.records if "unreachable" in r.message]) == 1
    assert "hunter2" not in caplog.text and "hunter2" not in repr(state) and "redis://:****@127.0.0.1" in caplog.text
    assert client.router.stats()["primary"]["shared"] is False, "while Redis is away, the state shown is local"


async def test_the_retry_budget_is_spent_by_every_router_together(clients, make_openai_server, redis_server) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    knobs = dict(max_retries=1, backoff_max=0, allowed_fails=10)
    a, b = (
        clients(
            backend(primary, "primary", **knobs),
            backend(backup, "backup"),
            state=RedisState(redis_server.url),
            retry_budget=0,
            retry_budget_min=1,
        )
        for _ in range(2)
    )
    primary.fail(Fault(status=500), times=1)
    assert served_by(await chat(a)) == "primary", "a's 500 was retried: the one retry the budget allows"
    primary.fail(Fault(status=500), times=1)
    assert served_by(await chat(b)) == "backup", "b finds the budget spent by a"
    assert b.router.stats()["primary"]["retries_denied"] == 1
    assert len(primary.chat_requests()) == 3

    c, d = (
        clients(
            backend(primary, "primary", **knobs),
            backend(backup, "backup"),
            state=MemoryState(),
            retry_budget=0,
            retry_budget_min=1,
        )
        for _ in range(2)
    )
    for client in (c, d):  # the control: each router alone has its own retry to spend
        primary.fail(Fault(status=500), times=1)
        assert served_by(await chat(client)) == "primary"


async def test_a_providers_used_up_limit_is_seen_by_every_router(clients, make_openai_server, redis_server) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    a, b = (
        clients(backend(primary, "primary"), backend(backup, "backup"), state=RedisState(redis_server.url))
        for _ in range(2)
    )
    primary.fail(Fault(headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30s"}), times=1)
    assert served_by(await chat(a)) == "primary"
    assert served_by(await chat(b)) == "backup"
    assert len(primary.chat_requests()) == 1
    limit = (await b.router.shared_stats())["primary"]["provider_limit"]
    assert limit["limit"] == "requests" and 85 < limit["remaining"] <= 90
