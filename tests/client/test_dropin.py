"""Unmodified OpenAI SDK example code, with only its import changed to turnout, configured by env only."""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import pytest

from tests.support.loopback import Fault

SOURCE = (Path(__file__).parents[1] / "support" / "examples" / "sdk_examples.py").read_text()
IMPORT = "from openai import AsyncOpenAI, OpenAI"
EXAMPLES = [
    "chat",
    "streaming",
    "tool_round_trip",
    "json_mode",
    "structured_output",
    "stream_helper",
    "raw_response",
    "streaming_response",
    "legacy_completion",
    "embeddings",
    "list_models",
    "error_handling",
    "sync_chat_and_stream",
    "sync_error_handling",
]


def load(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


SDK = load(SOURCE, "with_openai")
TURNOUT = load(SOURCE.replace(IMPORT, "from turnout import AsyncOpenAI, OpenAI"), "with_turnout")


def test_only_the_import_differs() -> None:
    assert SOURCE.count(IMPORT) == 1
    assert TURNOUT.AsyncOpenAI.__module__.startswith("turnout")


async def run(module: types.ModuleType, name: str):
    fn = getattr(module, name)
    if inspect.iscoroutinefunction(fn):
        return await fn()
    import asyncio

    return await asyncio.to_thread(fn)


@pytest.fixture
def openai_env(openai_server, monkeypatch):
    """Zero config: the SDK's own variables, read by the SDK and by turnout alike."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dropin")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.chdir(Path(__file__).parent)  # no stray .env
    return openai_server


@pytest.mark.parametrize("name", EXAMPLES)
async def test_same_results_as_the_sdk_with_zero_config(openai_env, name) -> None:
    expected = await run(SDK, name)
    assert await run(TURNOUT, name) == expected


@pytest.mark.parametrize("name", EXAMPLES)
async def test_same_results_through_env_configured_failover(
    make_openai_server, free_port, monkeypatch, tmp_path, name
) -> None:
    server = make_openai_server()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dropin")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    expected = await run(SDK, name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_BASE_URL")
    (tmp_path / ".env").write_text(
        "TURNOUT_BACKENDS=dead,local\n"
        "TURNOUT_BACKEND__DEAD__PROVIDER=vllm\n"
        f"TURNOUT_BACKEND__DEAD__BASE_URL=http://127.0.0.1:{free_port}/v1\n"
        "TURNOUT_BACKEND__DEAD__MAX_RETRIES=0\n"
        "TURNOUT_BACKEND__LOCAL__PROVIDER=llamacpp\n"
        f"TURNOUT_BACKEND__LOCAL__BASE_URL={server.base_url}\n"
        "SOME_OTHER_PROGRAM=ignored\n"
    )
    assert await run(TURNOUT, name) == expected


async def test_a_failing_request_fails_as_with_the_sdk(openai_env) -> None:
    import openai

    openai_env.fail(Fault(status=429, message="slow down", retry_after_ms="1"))
    with pytest.raises(openai.RateLimitError) as theirs:
        await SDK.chat()
    sdk_attempts = len(openai_env.requests)
    with pytest.raises(openai.RateLimitError) as ours:
        await TURNOUT.chat()
    assert type(ours.value).__name__ == type(theirs.value).__name__ == "RateLimitError"
    assert ours.value.status_code == 429 and "slow down" in str(ours.value)
    assert len(openai_env.requests) - sdk_attempts == sdk_attempts, "the same retries as the SDK by default"
