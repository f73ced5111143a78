"""Shared state in a highly available Redis: Sentinel (``redis+sentinel://``) and Cluster (``redis+cluster://``),
real redis-server processes on loopback. Requests flow while the primary holding the state is killed:
every one is answered, and the shared state resumes on the promoted replica.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis

from tests.router.test_router import backend, chat
from tests.support.redis_ha import Cluster, SentinelGroup, eventually
from turnout import served_by
from turnout.state import RedisState

KEY = "turnout:backend:{primary}"


async def flowing(client: Any, count: int, midway: Any) -> list[str]:
    """``count`` requests one after another, ``midway()`` run after the first third; who served each."""
    served = []
    for i in range(count):
        if i == count // 3:
            midway()
        served.append(served_by(await chat(client)))
        await asyncio.sleep(0.05)
    return served


async def test_two_routers_share_an_rpm_limit_through_sentinel(
    clients, make_openai_server, sentinel_group: SentinelGroup
) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    a, b = (
        clients(backend(primary, "primary", rpm=3), backend(backup, "backup"), state=RedisState(sentinel_group.url))
        for _ in range(2)
    )
    assert [served_by(await chat(c)) for c in (a, b, a, b)] == ["primary"] * 3 + ["backup"]


async def test_a_sentinel_failover_mid_run_loses_no_request(
    clients, make_openai_server, caplog, sentinel_group: SentinelGroup
) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    state = RedisState(sentinel_group.url)
    client = clients(backend(primary, "primary", rpm=10_000), backend(backup, "backup"), state=state)
    first = sentinel_group.primary_port()
    caplog.set_level(logging.WARNING, logger="turnout")
    served = await flowing(client, 60, lambda: sentinel_group.server_on(first).kill())
    assert served == ["primary"] * 60, "every request answered, by the backend it would have gone to anyway"
    eventually(lambda: sentinel_group.primary_port() != first, "the Sentinel promoted the replica")
    for _ in range(200):  # the state resumes on the new primary by itself
        if not state.down:
            break
        await asyncio.sleep(0.05)
    assert not state.down and "answers again" in caplog.text
    await chat(client)
    await client.router.shared_stats()
    promoted = redis.Redis(port=sentinel_group.primary_port())
    assert promoted.exists(KEY) and int(promoted.hget(KEY, "wr") or 0) >= 1, "counted on the promoted replica"


async def test_a_cluster_holds_every_step_and_stored_value(clients, make_openai_server, cluster: Cluster) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    a, b = (
        clients(backend(primary, "primary", rpm=3), backend(backup, "backup"), state=RedisState(cluster.url))
        for _ in range(2)
    )
    assert [served_by(await chat(c)) for c in (a, b, a, b)] == ["primary"] * 3 + ["backup"]
    await a.router.state.put("response:r1", {"backend": "primary"}, 60)
    assert await b.router.state.get("response:r1") == {"backend": "primary"}
    assert not a.router.state.down and not b.router.state.down


async def test_a_cluster_failover_mid_run_loses_no_request(
    clients, make_openai_server, caplog, cluster: Cluster
) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    state = RedisState(cluster.url)
    client = clients(backend(primary, "primary", rpm=10_000), backend(backup, "backup"), state=state)
    holder = cluster.primary_of(KEY)
    caplog.set_level(logging.WARNING, logger="turnout")
    served = await flowing(client, 60, holder.kill)
    assert served == ["primary"] * 60
    eventually(lambda: cluster.primary_of(KEY) is not holder, "the cluster promoted the replica")
    for _ in range(300):
        if not state.down:
            break
        await asyncio.sleep(0.05)
    assert not state.down
    await chat(client)
    promoted = cluster.primary_of(KEY)
    assert int(redis.Redis(port=promoted.port).hget(KEY, "wr") or 0) >= 1, "counted on the promoted replica"


def test_the_state_url_names_a_sentinel_service_or_cluster_nodes() -> None:
    from turnout import ConfigError
    from turnout.settings import TurnoutSettings

    for url in ("redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster/2", "redis+cluster://127.0.0.1:7000"):
        assert TurnoutSettings(state_url=url, _env_file=None).state_url == url
    with pytest.raises(ConfigError) as caught:
        RedisState("redis+sentinel://127.0.0.1:26379")
    assert "names no service" in str(caught.value) and "TURNOUT_STATE_URL" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        TurnoutSettings(state_url="redis+sentinal://127.0.0.1", _env_file=None)
    assert "state_url" in str(caught.value) and "redis+sentinel://" in str(caught.value)
    assert "pw" not in repr(RedisState("redis+sentinel://:pw@127.0.0.1:26379/mymaster"))
