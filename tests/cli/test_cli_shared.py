"""``turnout health`` with TURNOUT_STATE_URL: each backend's state as every process sharing Redis sees it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

import turnout
from tests.cli.test_cli import backend, backends, clean_env
from tests.support.loopback import Fault, OpenAIServer
from turnout.adapters import OpenAICompatAdapter
from turnout.router import Backend, Router
from turnout.state import RedisState


def health(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "turnout", "health", *args],
        env=clean_env(**env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )


@pytest.fixture
def seeded(make_openai_server, redis_server) -> tuple[OpenAIServer, OpenAIServer, str]:
    """Another process's doing, in Redis: primary cooled down by a 401, two of backup's 10 RPM used."""
    primary, backup = make_openai_server(), make_openai_server()
    primary.fail(Fault(status=401), times=1)

    async def other_process() -> None:
        router = Router(
            [
                Backend(
                    OpenAICompatAdapter("primary", preset="vllm", base_url=primary.base_url),
                    cooldown=600,
                    max_retries=0,
                ),
                Backend(OpenAICompatAdapter("backup", preset="vllm", base_url=backup.base_url), rpm=10),
            ],
            state=RedisState(redis_server.url),
        )
        async with turnout.AsyncOpenAI(router=router) as client:
            for _ in range(2):
                await client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "x"}])

    asyncio.run(other_process())
    return primary, backup, redis_server.url


def test_health_shows_the_shared_cooldowns_and_windows(tmp_path: Path, seeded) -> None:
    primary, backup, url = seeded
    env = backends(
        ("primary", backend("primary", primary.base_url)),
        ("backup", backend("backup", backup.base_url, rpm="10")),
        TURNOUT_STATE_URL=url,
    )
    done = health(tmp_path, "--json", env=env)
    assert done.returncode == 0, done.stderr
    shared = json.loads(done.stdout)["shared"]
    assert shared["url"] == url and shared["reachable"] is True
    cooled, window = shared["backends"]["primary"], shared["backends"]["backup"]["window"]
    assert cooled["state"] == "open" and 590 < cooled["cooldown_remaining"] <= 600 and cooled["cooldowns"] == 1
    assert (window["rpm"], window["rpm_limit"]) == (2, 10)

    text = health(tmp_path, env=env).stdout
    assert f"shared state in {url} (prefix turnout):" in text
    assert "  primary  open, 59" in text and "s of cooldown left" in text
    assert "  backup   closed; RPM 2/10" in text


def test_health_says_when_the_shared_state_is_unreachable(
    tmp_path: Path, openai_server: OpenAIServer, free_port: int
) -> None:
    env = backends(
        ("only", backend("only", openai_server.base_url)), TURNOUT_STATE_URL=f"redis://127.0.0.1:{free_port}/0"
    )
    done = health(tmp_path, env=env)
    assert done.returncode == 0, "the backends are up: Redis is not a backend"
    assert f"shared state in redis://127.0.0.1:{free_port}/0 (prefix turnout): unreachable" in done.stdout
    assert done.stderr.count("is unreachable") == 1
