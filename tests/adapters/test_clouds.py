"""Azure OpenAI, Anthropic, Bedrock and Vertex AI: each cloud's variant of the protocol, and credentials that expire.

Every request goes through the real openai SDK to a loopback server speaking that cloud's variant
(Azure's paths, ``api-version`` and ``api-key`` header; Anthropic's error shapes; Bedrock's and
Vertex's OpenAI endpoints with bearer tokens). Tokens come from a fake source whose tokens expire in
seconds on a fake clock, or from stand-ins for azure-identity and google-auth on ``sys.path``.
Nothing here reaches a real cloud.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Callable

import openai
import pytest

import turnout
from tests.support.loopback import Fault, OpenAIServer
from turnout import ConfigError
from turnout.adapters import OpenAICompatAdapter
from turnout.adapters.auth import Token, TokenSource
from turnout.settings import TurnoutSettings, from_env, resolve

CHAT: dict[str, Any] = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
AZURE_KEY = "azure-key-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-0123456789abcdef"
BEDROCK_KEY = "bedrock-api-key-0123456789"


def root(server: OpenAIServer) -> str:
    """The server's address without ``/v1``: where a cloud's own path begins."""
    return server.base_url.removesuffix("/v1")


def backend(adapter: Any, **knobs: Any) -> turnout.Backend:
    return turnout.Backend(adapter, **{"max_retries": 0, "backoff_max": 0, **knobs})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeIssuer:
    """Tokens ``tok-1``, ``tok-2``, … each valid for ``life`` seconds of the fake clock; ``gate`` holds a fetch."""

    def __init__(self, clock: Clock, life: float = 10.0, fail: bool = False) -> None:
        self.clock, self.life, self.fail = clock, life, fail
        self.issued = self.attempts = 0
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self) -> Token:
        self.gate.wait(5)
        self.attempts += 1
        if self.fail:
            raise RuntimeError("refresh failed; client_secret=very-secret-value")
        self.issued += 1
        return Token(f"tok-{self.issued}", self.clock() + self.life)


def source(issuer: FakeIssuer, name: str = "cloud") -> TokenSource:
    return TokenSource(name, "a fake issuer", issuer, clock=issuer.clock)


# -- Azure OpenAI --------------------------------------------------------------------------------


async def test_azure_v1_from_its_variables(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY are all it takes: the v1 API, the key as a bearer."""
    monkeypatch.setenv("TURNOUT_BACKENDS", "azure")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", root(openai_server) + "/")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    async with turnout.AsyncOpenAI(router=from_env(_env_file=None)) as client:
        reply = await client.chat.completions.create(**CHAT)
    assert reply.choices[0].message.content == "echo: hi" and turnout.served_by(reply) == "azure"
    got = openai_server.requests[-1]
    assert got.path == "/openai/v1/chat/completions" and got.header("Authorization") == f"Bearer {AZURE_KEY}"


async def test_azure_deployment_routes_with_an_api_version(
    make_openai_server: Callable[..., OpenAIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an api-version the SDK's AsyncAzureOpenAI speaks the older routes: the model alias names the
    deployment in the path, api-version rides in the query, the key in the api-key header (no bearer)."""
    server = make_openai_server(models=["my-gpt-deployment"])
    monkeypatch.setenv("TURNOUT_BACKENDS", "azure")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", root(server))
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    monkeypatch.setenv("TURNOUT_BACKEND__AZURE__MODELS", "gpt-4o=my-gpt-deployment")
    async with turnout.AsyncOpenAI(router=from_env(_env_file=None)) as client:
        await client.chat.completions.create(**{**CHAT, "model": "gpt-4o"})
        await client.embeddings.create(model="gpt-4o", input="x")
    chat, embed = server.requests[-2:]
    assert chat.path == "/openai/deployments/my-gpt-deployment/chat/completions"
    assert embed.path == "/openai/deployments/my-gpt-deployment/embeddings"
    assert chat.query == {"api-version": "2024-10-21"} and chat.header("api-key") == AZURE_KEY
    assert chat.header("Authorization") is None


@pytest.mark.parametrize("api_version", [None, "2024-10-21"])
async def test_azure_entra_tokens_are_bearer_tokens(
    openai_server: OpenAIServer, client_over, api_version: str | None
) -> None:
    """An Entra ID token goes as a bearer on both routes (the SDK's azure_ad_token_provider on the old
    one), never in the api-key header."""
    issuer = FakeIssuer(Clock())
    adapter = OpenAICompatAdapter(
        "azure",
        preset="azure",
        base_url=root(openai_server) + "/openai/v1/",
        api_key=source(issuer, "azure"),
        api_version=api_version,
    )
    await client_over(adapter).chat.completions.create(**CHAT)
    got = openai_server.requests[-1]
    assert got.header("Authorization") == "Bearer tok-1" and got.header("api-key") is None
    assert got.path.endswith("/chat/completions") and (api_version is None) == ("/deployments/" not in got.path)


async def test_a_content_filter_refusal_is_raised_unless_failing_over_on_it_is_on(
    make_openai_server: Callable[..., OpenAIServer],
) -> None:
    """Azure's 400 with code content_filter: a bad request by default (no other backend asked, no breaker
    counts it); with TURNOUT_FAILOVER_ON_CONTENT_FILTER the next backend, whose filter may differ, answers."""
    azure, other = make_openai_server(), make_openai_server()
    filtered = Fault(
        status=400,
        error_type="invalid_request_error",
        code="content_filter",
        message="The response was filtered due to the prompt triggering content management policy.",
    )
    azure.fail(filtered)
    for opt_in in (False, True):
        adapters = [
            OpenAICompatAdapter("azure", preset="azure", base_url=azure.base_url, api_key=AZURE_KEY),
            OpenAICompatAdapter("other", preset="openai_compat", base_url=other.base_url),
        ]
        router = turnout.Router([backend(a) for a in adapters], failover_on_content_filter=opt_in)
        async with turnout.AsyncOpenAI(router=router) as client:
            if opt_in:
                reply = await client.chat.completions.create(**CHAT)
                assert turnout.served_by(reply) == "other"
            else:
                with pytest.raises(openai.BadRequestError, match="filtered"):
                    await client.chat.completions.create(**CHAT)
                assert other.chat_requests() == []


async def test_an_answer_a_content_filter_stopped_fails_over_only_when_asked(
    make_openai_server: Callable[..., OpenAIServer],
) -> None:
    """Azure's output filter (and a refusal) ends a 200 with finish_reason content_filter: returned as it is by
    default; with the switch on, the next backend is asked instead."""
    azure, other = make_openai_server(reply="", finish_reason="content_filter"), make_openai_server()
    for opt_in in (False, True):
        adapters = [
            OpenAICompatAdapter("azure", preset="azure", base_url=azure.base_url, api_key=AZURE_KEY),
            OpenAICompatAdapter("other", preset="openai_compat", base_url=other.base_url),
        ]
        router = turnout.Router([backend(a) for a in adapters], failover_on_content_filter=opt_in)
        async with turnout.AsyncOpenAI(router=router) as client:
            reply = await client.chat.completions.create(**CHAT)
        assert (turnout.served_by(reply), reply.choices[0].finish_reason) == (
            ("other", "stop") if opt_in else ("azure", "content_filter")
        )


def test_the_content_filter_switch_is_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_BACKENDS", "vllm")
    assert from_env(_env_file=None).failover_on_content_filter is False
    monkeypatch.setenv("TURNOUT_FAILOVER_ON_CONTENT_FILTER", "yes")
    assert from_env(_env_file=None).failover_on_content_filter is True
    monkeypatch.setenv("TURNOUT_FAILOVER_ON_CONTENT_FILTER", "maybe")
    with pytest.raises(ConfigError, match="TURNOUT_FAILOVER_ON_CONTENT_FILTER"):
        from_env(_env_file=None)


# -- Anthropic -----------------------------------------------------------------------------------


async def test_anthropic_overloaded_is_retried_then_failed_over_and_a_bad_request_is_raised(
    make_openai_server: Callable[..., OpenAIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anthropic's 529 overloaded_error is its server's trouble: retried, then the next backend; its 400
    invalid_request_error is the request's: raised from Anthropic, nobody else asked."""
    anthropic, other = make_openai_server(), make_openai_server()
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    adapters = [
        OpenAICompatAdapter(preset="anthropic", base_url=anthropic.base_url),
        OpenAICompatAdapter("other", preset="openai_compat", base_url=other.base_url),
    ]
    async with turnout.AsyncOpenAI(router=turnout.Router([backend(a, max_retries=1) for a in adapters])) as client:
        anthropic.fail(Fault(status=529, error_type="overloaded_error", message="Overloaded"), times=2)
        reply = await client.chat.completions.create(**CHAT)
        assert turnout.served_by(reply) == "other" and len(anthropic.chat_requests()) == 2
        anthropic.fail(Fault(status=400, error_type="invalid_request_error", message="messages: at least one"), times=1)
        other.requests.clear()
        with pytest.raises(openai.BadRequestError, match="at least one"):
            await client.chat.completions.create(**CHAT)
        assert other.requests == []
    assert anthropic.requests[0].header("Authorization") == f"Bearer {ANTHROPIC_KEY}"


async def test_json_mode_is_not_sent_where_it_would_be_ignored(
    make_openai_server: Callable[..., OpenAIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anthropic's compatibility layer ignores response_format: a JSON-mode request goes to a backend that
    honours it, while plain chat still goes to Anthropic first."""
    anthropic, other = make_openai_server(), make_openai_server()
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    adapters = [
        OpenAICompatAdapter(preset="anthropic", base_url=anthropic.base_url),
        OpenAICompatAdapter("other", preset="openai_compat", base_url=other.base_url),
    ]
    async with turnout.AsyncOpenAI(router=turnout.Router([backend(a) for a in adapters])) as client:
        json_reply = await client.chat.completions.create(**CHAT, response_format={"type": "json_object"})
        plain = await client.chat.completions.create(**CHAT)
    assert (turnout.served_by(json_reply), turnout.served_by(plain)) == ("other", "anthropic")


# -- Bedrock -------------------------------------------------------------------------------------


async def test_bedrock_bearer_key_through_the_sdks_provider_and_its_throttling_is_retried(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_BEARER_TOKEN_BEDROCK as the bearer, AWS_BEDROCK_BASE_URL as the address (the SDK provider's own
    variables); AWS names throttling in x-amzn-errortype, retried here even when sent with a 400."""
    monkeypatch.setenv("TURNOUT_BACKENDS", "bedrock")
    monkeypatch.setenv("TURNOUT_MAX_RETRIES", "1")
    monkeypatch.setenv("TURNOUT_BACKOFF_MAX", "0")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", BEDROCK_KEY)
    monkeypatch.setenv("AWS_BEDROCK_BASE_URL", openai_server.base_url)
    openai_server.fail(
        Fault(
            status=400,
            error_type="ThrottlingException",
            message="Too many requests",
            headers={"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/coral/"},
        ),
        times=1,
    )
    async with turnout.AsyncOpenAI(router=from_env(_env_file=None)) as client:
        reply = await client.chat.completions.create(**CHAT)
    assert turnout.served_by(reply) == "bedrock" and len(openai_server.chat_requests()) == 2
    assert {r.header("Authorization") for r in openai_server.requests} == {f"Bearer {BEDROCK_KEY}"}


async def test_bedrock_takes_a_refreshing_token_through_the_provider(openai_server: OpenAIServer, client_over) -> None:
    adapter = OpenAICompatAdapter(
        preset="bedrock", base_url=openai_server.base_url, api_key=source(FakeIssuer(Clock()), "bedrock")
    )
    await client_over(adapter).chat.completions.create(**CHAT)
    assert openai_server.requests[-1].header("Authorization") == "Bearer tok-1"


@pytest.mark.parametrize(
    ("variables", "url"),
    [
        ({"AWS_REGION": "eu-west-1"}, "https://bedrock-mantle.eu-west-1.api.aws/v1"),
        ({"AWS_DEFAULT_REGION": "us-east-2"}, "https://bedrock-mantle.us-east-2.api.aws/v1"),
        (
            {"GOOGLE_CLOUD_PROJECT": "acme-ml"},
            "https://aiplatform.googleapis.com/v1/projects/acme-ml/locations/global/endpoints/openapi",
        ),
        (
            {"GOOGLE_CLOUD_PROJECT": "acme-ml", "GOOGLE_CLOUD_LOCATION": "europe-west4"},
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-ml/locations/europe-west4/endpoints/openapi",
        ),
        ({"AZURE_OPENAI_ENDPOINT": "https://acme.openai.azure.com/"}, "https://acme.openai.azure.com/openai/v1/"),
    ],
)
def test_the_address_is_filled_from_the_users_variables(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], url: str
) -> None:
    name = {"AWS": "bedrock", "GOOGLE": "vertex", "AZURE": "azure"}[next(iter(variables)).split("_")[0]]
    monkeypatch.setenv("TURNOUT_BACKENDS", name)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", BEDROCK_KEY)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    for var, value in variables.items():
        monkeypatch.setenv(var, value)
    [b] = resolve(TurnoutSettings(_env_file=None)).backends
    assert b.base_url.value == url
    assert all(var in b.base_url.origin.variable for var in variables)  # turnout config says where it came from


def test_a_missing_region_or_project_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_BACKENDS", "bedrock,vertex")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", BEDROCK_KEY)
    with pytest.raises(ConfigError) as caught:
        resolve(TurnoutSettings(_env_file=None))
    assert "AWS_REGION or AWS_DEFAULT_REGION" in str(caught.value) and "GOOGLE_CLOUD_PROJECT" in str(caught.value)


def test_a_cloud_key_makes_a_backend_only_with_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """Discovery: AZURE_OPENAI_API_KEY alone (set for other tools) makes no backend; with the endpoint it does."""
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", BEDROCK_KEY)
    monkeypatch.setenv("GROQ_API_KEY", "gsk-0123456789abcdef")
    assert [b.name for b in resolve(TurnoutSettings(_env_file=None)).backends] == ["groq"]
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://acme.openai.azure.com")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert [b.name for b in resolve(TurnoutSettings(_env_file=None)).backends] == ["groq", "azure", "bedrock"]


def test_a_credential_kind_the_provider_does_not_take_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_BACKENDS", "anthropic")
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("TURNOUT_BACKEND__ANTHROPIC__AUTH", "google")
    with pytest.raises(
        ConfigError,
        match=r"TURNOUT_BACKEND__ANTHROPIC__AUTH='google': provider anthropic does not "
        r"take it; accepted: key",
    ):
        resolve(TurnoutSettings(_env_file=None))


# -- Vertex AI and the token source ----------------------------------------------------------------


async def test_vertex_sends_the_token_as_a_bearer(openai_server: OpenAIServer, client_over) -> None:
    adapter = OpenAICompatAdapter(
        preset="vertex", base_url=openai_server.base_url, api_key=source(FakeIssuer(Clock()), "vertex")
    )
    reply = await client_over(adapter).chat.completions.create(**CHAT)
    assert reply.choices[0].message.content == "echo: hi"
    assert openai_server.requests[-1].header("Authorization") == "Bearer tok-1"


async def test_a_request_after_expiry_gets_a_fresh_token(openai_server: OpenAIServer, client_over) -> None:
    clock = Clock()
    issuer = FakeIssuer(clock, life=2.0)
    client = client_over(OpenAICompatAdapter(preset="vertex", base_url=openai_server.base_url, api_key=source(issuer)))
    await client.chat.completions.create(**CHAT)
    clock.now += 2.5  # the token has expired: the request waits for the next one
    await client.chat.completions.create(**CHAT)
    assert [r.header("Authorization") for r in openai_server.requests] == ["Bearer tok-1", "Bearer tok-2"]
    assert issuer.issued == 2


async def test_ahead_of_expiry_the_refresh_runs_off_the_request_path(openai_server: OpenAIServer, client_over) -> None:
    """In the token's last half-life a request goes on with the valid token while one refresh runs behind it."""
    clock = Clock()
    issuer = FakeIssuer(clock, life=2.0)
    tokens = source(issuer)
    client = client_over(OpenAICompatAdapter(preset="vertex", base_url=openai_server.base_url, api_key=tokens))
    await client.chat.completions.create(**CHAT)
    clock.now += 1.5
    issuer.gate.clear()  # the refresh cannot finish: the requests must not wait for it
    await asyncio.wait_for(asyncio.gather(*(client.chat.completions.create(**CHAT) for _ in range(3))), 5)
    issuer.gate.set()
    for _ in range(100):  # bounded: the background fetch lands within a few event-loop turns
        if issuer.issued == 2:
            break
        await asyncio.sleep(0.01)
    await client.chat.completions.create(**CHAT)
    sent = [r.header("Authorization") for r in openai_server.requests]
    assert sent == ["Bearer tok-1"] * 4 + ["Bearer tok-2"] and issuer.issued == 2 and tokens.fetches == 2


async def test_a_background_refresh_that_fails_leaves_the_valid_token_in_use(
    openai_server: OpenAIServer, client_over
) -> None:
    """No request fails while the token in hand is valid, and a failing identity service is not asked again
    on every request; once the token has expired the failure is the request's."""
    clock = Clock()
    issuer = FakeIssuer(clock, life=100.0)
    client = client_over(OpenAICompatAdapter(preset="vertex", base_url=openai_server.base_url, api_key=source(issuer)))
    await client.chat.completions.create(**CHAT)
    issuer.fail = True
    clock.now += 60
    for _ in range(5):
        await client.chat.completions.create(**CHAT)
        await asyncio.sleep(0.02)
    assert issuer.attempts == 2 and len(openai_server.requests) == 6  # the first fetch, one failed refresh
    clock.now += 50
    with pytest.raises(openai.AuthenticationError, match="could not obtain a token"):
        await client.chat.completions.create(**CHAT)


async def test_concurrent_first_requests_share_one_fetch(openai_server: OpenAIServer, client_over) -> None:
    issuer = FakeIssuer(Clock())
    issuer.gate.clear()
    tokens = source(issuer)
    client = client_over(OpenAICompatAdapter(preset="vertex", base_url=openai_server.base_url, api_key=tokens))
    calls = [asyncio.ensure_future(client.chat.completions.create(**CHAT)) for _ in range(8)]
    await asyncio.sleep(0.05)
    issuer.gate.set()
    await asyncio.wait_for(asyncio.gather(*calls), 10)
    assert issuer.issued == 1 and tokens.fetches == 1
    assert {r.header("Authorization") for r in openai_server.requests} == {"Bearer tok-1"}


async def test_a_failed_refresh_names_backend_and_source_and_fails_over_as_for_a_401(
    make_openai_server: Callable[..., OpenAIServer], caplog: pytest.LogCaptureFixture
) -> None:
    vertex, other = make_openai_server(), make_openai_server()
    caplog.set_level(logging.DEBUG)
    failing = FakeIssuer(Clock(), fail=True)
    adapters = [
        OpenAICompatAdapter(preset="vertex", base_url=vertex.base_url, api_key=source(failing, "vertex")),
        OpenAICompatAdapter("other", preset="openai_compat", base_url=other.base_url),
    ]
    router = turnout.Router([backend(a, max_retries=2) for a in adapters])
    async with turnout.AsyncOpenAI(router=router) as client:
        reply = await client.chat.completions.create(**CHAT)
        assert turnout.served_by(reply) == "other" and vertex.requests == []
        assert router.stats()["vertex"]["cooldowns"] == 1  # cooled down at once, as after a 401
    alone = turnout.Router(
        [backend(OpenAICompatAdapter(preset="vertex", base_url=vertex.base_url, api_key=source(failing, "vertex")))]
    )
    async with turnout.AsyncOpenAI(router=alone) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(**CHAT)
    assert "backend 'vertex': could not obtain a token from a fake issuer: RuntimeError" in str(caught.value)
    assert "very-secret-value" not in str(caught.value) + caplog.text


async def test_health_reports_an_unobtainable_token_by_name(openai_server: OpenAIServer) -> None:
    adapter = OpenAICompatAdapter(
        preset="vertex", base_url=openai_server.base_url, api_key=source(FakeIssuer(Clock(), fail=True), "vertex")
    )
    health = await adapter.health()
    await adapter.aclose()
    assert not health.up and "backend 'vertex': could not obtain a token from a fake issuer" in (health.error or "")


# -- the real libraries' entry points, with stand-ins on sys.path -----------------------------------

AZURE_IDENTITY = """
import time


class _Got:
    def __init__(self, token, expires_on):
        self.token, self.expires_on = token, expires_on

class DefaultAzureCredential:
    def get_token(self, *scopes):
        if scopes != ("https://cognitiveservices.azure.com/.default",):
            raise ValueError(scopes)
        if {fail}:
            raise RuntimeError("EnvironmentCredential: AZURE_CLIENT_SECRET=entra-secret-value rejected")
        return _Got("entra-token-1", int(time.time()) + 3600)
"""


def stand_in(path: Path, monkeypatch: pytest.MonkeyPatch, fail: bool) -> None:
    package = path / "azure" / "identity"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(AZURE_IDENTITY.format(fail=fail)))
    monkeypatch.syspath_prepend(str(path))
    for name in [m for m in sys.modules if m == "azure" or m.startswith("azure.")]:
        monkeypatch.delitem(sys.modules, name)


def azure_env(monkeypatch: pytest.MonkeyPatch, server: OpenAIServer) -> None:
    monkeypatch.setenv("TURNOUT_BACKENDS", "azure")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", root(server))
    monkeypatch.setenv("TURNOUT_BACKEND__AZURE__AUTH", "entra")


async def test_entra_tokens_come_from_azure_identity(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stand_in(tmp_path, monkeypatch, fail=False)
    azure_env(monkeypatch, openai_server)
    async with turnout.AsyncOpenAI(router=from_env(_env_file=None)) as client:
        await client.chat.completions.create(**CHAT)
    assert openai_server.requests[-1].header("Authorization") == "Bearer entra-token-1"


def test_health_and_config_name_the_credential_source(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`turnout health` reports the token it could not get by backend and source, never the library's
    message (it may quote a secret); `turnout config` says where each credential comes from, masked."""
    stand_in(tmp_path, monkeypatch, fail=True)
    azure_env(monkeypatch, openai_server)
    monkeypatch.setenv("TURNOUT_BACKENDS", "azure,anthropic")
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("TURNOUT_BACKEND__ANTHROPIC__BASE_URL", openai_server.base_url)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))

    def turnout_command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "turnout", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
        )

    health = turnout_command("health", "--json")
    assert health.returncode == 0, health.stderr  # one of two up
    [azure] = [b for b in json.loads(health.stdout)["backends"] if b["name"] == "azure"]
    assert not azure["up"] and "backend 'azure': could not obtain a token from Microsoft Entra ID" in azure["error"]
    assert "entra-secret-value" not in health.stdout + health.stderr
    text = turnout_command("config").stdout
    assert "entra: Microsoft Entra ID token (azure-identity DefaultAzureCredential)" in text
    assert "TURNOUT_BACKEND__AZURE__AUTH" in text and "none (AUTH=entra)" in text
    assert "sk-…cdef" in text and "environment ANTHROPIC_API_KEY" in text and ANTHROPIC_KEY not in text


@pytest.mark.parametrize(
    ("library", "variables", "message"),
    [
        (
            "google.auth",
            {"TURNOUT_BACKENDS": "vertex", "GOOGLE_CLOUD_PROJECT": "acme-ml"},
            r"backend 'vertex': AUTH=google needs the google-auth package; pip install 'turnout\[google\]'",
        ),
        (
            "botocore",
            {"TURNOUT_BACKENDS": "bedrock", "AWS_REGION": "us-east-1", "TURNOUT_BACKEND__BEDROCK__AUTH": "aws"},
            r"backend 'bedrock': AUTH=aws needs botocore; pip install 'turnout\[aws\]'",
        ),
    ],
)
def test_a_missing_credential_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, library: str, variables: dict[str, str], message: str
) -> None:
    try:
        __import__(library)
        pytest.skip(f"{library} is installed here")
    except ImportError:
        pass
    for var, value in variables.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=message):
        from_env(_env_file=None)


# -- secrets stay home ------------------------------------------------------------------------------


async def test_keys_and_tokens_reach_only_their_own_host_and_no_log_or_repr(
    make_openai_server: Callable[..., OpenAIServer], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Azure (key), Vertex (token), Bedrock (key), Anthropic (key): each fails over to the next; each server
    received its own credential only, and none appears in a log line or a repr."""
    caplog.set_level(logging.DEBUG)
    servers = {name: make_openai_server() for name in ("azure", "vertex", "bedrock", "anthropic")}
    for name in ("azure", "vertex", "bedrock"):
        servers[name].fail(Fault(status=503))
    own = {"azure": AZURE_KEY, "vertex": "tok-1", "bedrock": BEDROCK_KEY, "anthropic": ANTHROPIC_KEY}
    tokens = source(FakeIssuer(Clock()), "vertex")
    adapters = [
        OpenAICompatAdapter(preset="azure", base_url=servers["azure"].base_url, api_key=AZURE_KEY),
        OpenAICompatAdapter(preset="vertex", base_url=servers["vertex"].base_url, api_key=tokens),
        OpenAICompatAdapter(preset="bedrock", base_url=servers["bedrock"].base_url, api_key=BEDROCK_KEY),
        OpenAICompatAdapter(preset="anthropic", base_url=servers["anthropic"].base_url, api_key=ANTHROPIC_KEY),
    ]
    router = turnout.Router([backend(a) for a in adapters])
    async with turnout.AsyncOpenAI(router=router) as client:
        reply = await client.chat.completions.create(**CHAT)
        shown = " ".join([repr(client), repr(router), client.api_key, *map(repr, adapters), repr(tokens)])
    assert turnout.served_by(reply) == "anthropic"
    for name, server in servers.items():
        received = json.dumps([[r.path, r.headers, r.json, r.query] for r in server.requests])
        assert own[name] in received, name
        assert not [other for other, secret in own.items() if other != name and secret in received], name
    for secret in own.values():
        assert secret not in caplog.text and secret not in shown


def test_the_sync_client_gets_its_tokens_from_the_same_source(openai_server: OpenAIServer) -> None:
    """turnout.OpenAI runs the router on its own loop: the token source's fetch and refresh work there too."""
    clock = Clock()
    issuer = FakeIssuer(clock, life=2.0)
    adapter = OpenAICompatAdapter(preset="vertex", base_url=openai_server.base_url, api_key=source(issuer))
    with turnout.OpenAI(router=turnout.Router([backend(adapter)])) as client:
        client.chat.completions.create(**CHAT)
        clock.now += 3
        client.chat.completions.create(**CHAT)
    assert [r.header("Authorization") for r in openai_server.requests] == ["Bearer tok-1", "Bearer tok-2"]
