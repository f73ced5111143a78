"""The Router that settings build: backends in order with their knobs, answering over loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import turnout
from tests.settings.test_settings import GROQ_KEY, OPENAI_KEY, dotenv, env, isolated  # noqa: F401  (autouse fixture)
from tests.support.loopback import OpenAIServer
from turnout.adapters import OpenAICompatAdapter
from turnout.router import Backend, Router
from turnout.settings import TurnoutSettings, _build, build_router, from_env, resolve
from turnout.state import MemoryState

MESSAGES = [{"role": "user", "content": "hello there"}]


def test_the_router_has_the_backends_in_order_with_their_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    env(
        monkeypatch,
        TURNOUT_BACKENDS="primary,groq,ollama",
        GROQ_API_KEY=GROQ_KEY,
        TURNOUT_BACKEND__PRIMARY__PROVIDER="vllm",
        TURNOUT_BACKEND__PRIMARY__BASE_URL="http://10.0.0.5:8000/v1",
        TURNOUT_BACKEND__PRIMARY__MODELS="fast=meta-llama/Llama-3.1-8B-Instruct",
        TURNOUT_BACKEND__PRIMARY__PRIORITY="1",
        TURNOUT_BACKEND__PRIMARY__WEIGHT="3",
        TURNOUT_BACKEND__PRIMARY__MAX_RETRIES="0",
        TURNOUT_BACKEND__GROQ__COOLDOWN="90",
        TURNOUT_BACKEND__GROQ__TIMEOUT="7",
        TURNOUT_MAX_RETRIES="4",
        TURNOUT_BACKOFF_BASE="1.5",
        TURNOUT_BACKOFF_MAX="8",
        TURNOUT_ALLOWED_FAILS="5",
        TURNOUT_DEADLINE="45",
        TURNOUT_RETRY_BUDGET="0.3",
        TURNOUT_RETRY_BUDGET_MIN="4",
        TURNOUT_RESPONSES_TTL="120",
        OLLAMA_HOST="http://gpu-box:11434",
        TURNOUT_RPM="100",
        TURNOUT_BACKEND__GROQ__RPM="30",
        TURNOUT_BACKEND__GROQ__TPM="6000",
    )
    router_options: dict[str, object] = {}

    def spy(backends: list[Backend], **options: object) -> Router:
        router_options.update(options)
        return Router(backends, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(_build, "Router", spy)
    router = from_env()
    assert isinstance(router, Router)
    assert [b.name for b in router.backends] == ["primary", "groq", "ollama"]
    state = router_options.pop("state")
    assert router_options == {
        "timeout": 45.0,
        "retry_budget": 0.3,
        "retry_budget_min": 4,
        "stateful_backend": None,
        "responses_ttl": 120.0,
        "on_event": None,
        "aggregate_models": True,  # every backend's models: the environment's backends
        "failover_on_content_filter": False,
        "strategy": "weighted",
        "affinity": "on",
        "affinity_ttl": 3600.0,
        "hedge_after": None,
        "max_hedges": 1,
    }
    assert isinstance(state, MemoryState), "without TURNOUT_STATE_URL, this process's memory"
    primary, groq, ollama = router.backends
    assert (primary.rpm, primary.tpm, groq.rpm, groq.tpm) == (100, None, 30, 6000), (
        "TURNOUT_RPM is every backend's default"
    )
    assert primary.models == {"fast": "meta-llama/Llama-3.1-8B-Instruct"}
    assert (primary.priority, primary.weight, primary.max_retries) == (1, 3.0, 0)
    assert (groq.max_retries, groq.backoff_base, groq.backoff_max, groq.allowed_fails, groq.cooldown) == (
        4,
        1.5,
        8.0,
        5,
        90.0,
    )
    assert groq.priority is None and groq.models is None
    assert isinstance(primary.adapter, OpenAICompatAdapter) and primary.adapter.base_url == "http://10.0.0.5:8000/v1"
    assert groq.adapter._client.timeout == 7.0 and groq.adapter._client.max_retries == 0  # type: ignore[attr-defined]
    assert type(ollama.adapter).__name__ == "OllamaAdapter" and ollama.adapter.host == "http://gpu-box:11434"  # type: ignore[attr-defined]


def test_capability_overrides_reach_the_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_BACKEND__VLLM__CAPABILITIES="vision=false")
    [backend] = from_env().backends
    assert backend.adapter.capabilities.vision is False and backend.adapter.capabilities.embeddings is True


def test_build_router_takes_settings_or_a_resolved_config() -> None:
    settings = TurnoutSettings(_env_file=None, backends="vllm,tgi", deadline=3)
    for source in (settings, resolve(settings)):
        router = build_router(source)
        assert [b.name for b in router.backends] == ["vllm", "tgi"] and router.timeout == 3


async def test_a_backend_from_env_answers(monkeypatch: pytest.MonkeyPatch, openai_server: OpenAIServer) -> None:
    env(
        monkeypatch,
        TURNOUT_BACKENDS="local",
        TURNOUT_BACKEND__LOCAL__PROVIDER="vllm",
        TURNOUT_BACKEND__LOCAL__BASE_URL=openai_server.base_url,
        TURNOUT_BACKEND__LOCAL__TIMEOUT="5",
        TURNOUT_BACKEND__LOCAL__HEADERS='{"X-Title": "turnout tests"}',
    )
    async with turnout.AsyncOpenAI(router=from_env()) as client:
        reply = await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert reply.choices[0].message.content == "echo: hello there" and turnout.served_by(reply) == "local"
    sent = openai_server.chat_requests()[-1]
    assert sent.header("X-Title") == "turnout tests"
    assert sent.header("Authorization") == "Bearer sk-no-key-required"


async def test_zero_config_openai_with_base_url_answers_with_its_own_key(
    monkeypatch: pytest.MonkeyPatch, openai_server: OpenAIServer
) -> None:
    env(monkeypatch, OPENAI_API_KEY=OPENAI_KEY, OPENAI_BASE_URL=openai_server.base_url)
    async with turnout.AsyncOpenAI(router=from_env()) as client:
        await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert openai_server.chat_requests()[-1].header("Authorization") == f"Bearer {OPENAI_KEY}"


async def test_keys_from_dotenv_reach_their_own_backend_only(
    monkeypatch: pytest.MonkeyPatch,
    isolated: Path,  # noqa: F811
    make_openai_server,
) -> None:
    groq_box, or_box = make_openai_server(), make_openai_server()
    dotenv(
        isolated,
        f"GROQ_API_KEY={GROQ_KEY}\nMY_OR_KEY=or-secret-0123456789abcdef\nOPENAI_API_KEY={OPENAI_KEY}\n"
        f"TURNOUT_BACKENDS=groq,backup\nTURNOUT_BACKEND__GROQ__BASE_URL={groq_box.base_url}\n",
    )
    env(
        monkeypatch,
        TURNOUT_BACKEND__BACKUP__PROVIDER="openrouter",
        TURNOUT_BACKEND__BACKUP__API_KEY_ENV="MY_OR_KEY",
        TURNOUT_BACKEND__BACKUP__BASE_URL=or_box.base_url,
    )
    async with turnout.AsyncOpenAI(router=from_env()) as client:
        for name in ("groq", "backup"):
            await client.chat.completions.create(model=f"{name}/test-model", messages=MESSAGES)
    assert len(groq_box.chat_requests()) == len(or_box.chat_requests()) == 1
    assert groq_box.chat_requests()[-1].header("Authorization") == f"Bearer {GROQ_KEY}"
    assert or_box.chat_requests()[-1].header("Authorization") == "Bearer or-secret-0123456789abcdef"


async def test_an_ollama_backend_from_env_answers(monkeypatch: pytest.MonkeyPatch, ollama_server) -> None:
    env(monkeypatch, OLLAMA_HOST=ollama_server.host)
    async with turnout.AsyncOpenAI(router=from_env()) as client:
        reply = await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert reply.choices[0].message.content and turnout.served_by(reply) == "ollama"


def test_importing_turnout_and_its_settings_loads_no_ollama_sdk() -> None:
    code = (
        "import sys, turnout, turnout.settings; from turnout.settings import from_env; "
        "r = from_env(_env_file=None, backends='vllm'); assert 'ollama' not in sys.modules, 'ollama imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr
