"""The openai SDK's constructor arguments under turnout, each through the real SDK against loopback servers.

``http_client`` (the caller's proxy, transport and closing), a proxy per backend,
``admin_api_key`` and the admin endpoints, a callable ``api_key``, ``data_residency``,
``model`` left out where the SDK allows it, ``max_retries`` against the breaker and per
call, ``max_retries=None``, ``timeout=0``, and the router's own ``models.list`` answer.
"""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any

import httpx2
import openai
import pytest

import turnout
from tests.router.test_router import sleeps  # noqa: F401  (the fixture: backoff's waits recorded and skipped)
from tests.support.loopback import Fault, OpenAIServer
from turnout.client import PLACEHOLDER_KEY

MSG = [{"role": "user", "content": "hi"}]
SDK_HAS_DATA_RESIDENCY = "data_residency" in inspect.signature(openai.AsyncOpenAI).parameters
SDK_HAS_X509 = importlib.util.find_spec("openai.auth._x509") is not None  # both came after openai 3.0.0
NOWHERE = "http://backend.invalid/v1"  # resolvable by no resolver: only a proxy can reach it


def env(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def proxied(server: OpenAIServer) -> list[str]:
    """The absolute URLs a server acting as a forward proxy was asked for."""
    return [r.path for r in server.requests if r.path.startswith("http://")]


# -- http_client ------------------------------------------------------------------------


async def test_an_async_http_clients_proxy_carries_every_request(openai_server: OpenAIServer) -> None:
    caller = openai.DefaultAsyncHttpxClient(proxy=f"http://127.0.0.1:{openai_server.port}")
    async with turnout.AsyncOpenAI(base_url=NOWHERE, api_key="sk-test", http_client=caller) as client:
        reply = await client.chat.completions.create(model="test-model", messages=MSG)
    assert reply.choices[0].message.content == "echo: hi"
    assert proxied(openai_server) == [NOWHERE + "/chat/completions"]
    assert caller.is_closed, "closing the turnout client closes the caller's http_client, as the SDK does"


def test_a_sync_http_clients_proxy_carries_every_request(openai_server: OpenAIServer) -> None:
    caller = openai.DefaultHttpxClient(proxy=f"http://127.0.0.1:{openai_server.port}")
    with turnout.OpenAI(base_url=NOWHERE, api_key="sk-test", http_client=caller) as client:
        reply = client.chat.completions.create(model="test-model", messages=MSG)
        chunks = [
            c.choices[0].delta.content
            for c in client.chat.completions.create(model="test-model", messages=MSG, stream=True)
            if c.choices
        ]
    assert reply.choices[0].message.content == "echo: hi" and "".join(c or "" for c in chunks) == "echo: hi"
    assert proxied(openai_server) == [NOWHERE + "/chat/completions"] * 2
    assert caller.is_closed


async def test_the_callers_transport_serves_every_backend_but_its_headers_reach_none(
    make_openai_server, monkeypatch
) -> None:
    first, second = make_openai_server(), make_openai_server()
    sent: list[str] = []

    class Counting(httpx2.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            sent.append(str(request.url.host) + ":" + str(request.url.port))
            return await super().handle_async_request(request)

    first.fail(Fault(status=500))
    caller = httpx2.AsyncClient(
        transport=Counting(), headers={"Authorization": "Bearer caller-secret", "X-Caller": "only-mine"}
    )
    async with turnout.AsyncOpenAI(
        http_client=caller,
        max_retries=0,
        backends=["first", "second"],
        backend={
            "first": {"provider": "vllm", "base_url": first.base_url},
            "second": {"provider": "vllm", "base_url": second.base_url},
        },
    ) as client:
        await client.chat.completions.create(model="test-model", messages=MSG)
    assert sent == [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"]
    for request in first.requests + second.requests:
        assert "caller-secret" not in str(request.headers) and request.header("X-Caller") is None


async def test_a_backend_closing_leaves_the_callers_transport_to_the_caller(openai_server: OpenAIServer) -> None:
    caller = openai.DefaultAsyncHttpxClient()
    client = turnout.AsyncOpenAI(
        http_client=caller,
        backends=["local"],
        backend={"local": {"provider": "vllm", "base_url": openai_server.base_url}},
    )
    await client.router.primary.adapter.aclose()
    assert not caller.is_closed
    assert (await caller.get(openai_server.base_url + "/models")).status_code == 200
    await client.close()
    assert caller.is_closed


async def test_a_backends_own_proxy(openai_server: OpenAIServer, make_openai_server, monkeypatch) -> None:
    direct = make_openai_server()
    env(
        monkeypatch,
        TURNOUT_BACKENDS="far,near",
        TURNOUT_MAX_RETRIES="0",
        TURNOUT_BACKEND__FAR__PROVIDER="vllm",
        TURNOUT_BACKEND__FAR__BASE_URL=NOWHERE,
        TURNOUT_BACKEND__FAR__PROXY=f"http://127.0.0.1:{openai_server.port}",
        TURNOUT_BACKEND__NEAR__PROVIDER="vllm",
        TURNOUT_BACKEND__NEAR__BASE_URL=direct.base_url,
    )
    async with turnout.AsyncOpenAI() as client:
        reply = await client.chat.completions.create(model="test-model", messages=MSG)
    assert turnout.served_by(reply) == "far" and proxied(openai_server) == [NOWHERE + "/chat/completions"]
    assert direct.requests == []


def test_a_bad_proxy_names_its_variable(monkeypatch) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_BACKEND__VLLM__PROXY="ftp://proxy")
    with pytest.raises(turnout.ConfigError, match="TURNOUT_BACKEND__VLLM__PROXY.*http, https or socks5"):
        turnout.AsyncOpenAI()


# -- admin_api_key --------------------------------------------------------------------------


async def test_admin_endpoints_carry_the_admin_key(openai_server: OpenAIServer) -> None:
    async with turnout.AsyncOpenAI(
        base_url=openai_server.base_url, api_key="sk-plain", admin_api_key="sk-admin-key"
    ) as client:
        await client.admin.organization.admin_api_keys.list()
        await client.chat.completions.create(model="test-model", messages=MSG)
    admin, chat = openai_server.requests
    assert admin.header("Authorization") == "Bearer sk-admin-key"
    assert chat.header("Authorization") == "Bearer sk-plain"


async def test_admin_endpoints_go_to_the_openai_backend_only(make_openai_server, monkeypatch) -> None:
    groq, openai_ = make_openai_server(), make_openai_server()
    env(
        monkeypatch,
        TURNOUT_BACKENDS="groq,openai",
        GROQ_API_KEY="gsk-groq",
        TURNOUT_BACKEND__GROQ__BASE_URL=groq.base_url,
        OPENAI_API_KEY="sk-openai",
        OPENAI_BASE_URL=openai_.base_url,
        OPENAI_ADMIN_KEY="sk-admin-env",
    )
    async with turnout.AsyncOpenAI() as client:
        page = await client.admin.organization.admin_api_keys.list()
    assert turnout.served_by(page) == "openai" and groq.requests == []
    assert openai_.requests[0].header("Authorization") == "Bearer sk-admin-env"


async def test_admin_endpoints_without_an_admin_key_say_what_to_set(openai_server: OpenAIServer) -> None:
    async with turnout.AsyncOpenAI(base_url=openai_server.base_url, api_key="sk-plain") as client:
        with pytest.raises(TypeError, match="OPENAI_ADMIN_KEY"):
            await client.admin.organization.admin_api_keys.list()
    assert openai_server.requests == []


# -- a callable api_key, data_residency ---------------------------------------------------------


async def test_a_key_function_is_asked_before_each_request(openai_server: OpenAIServer) -> None:
    tokens = iter(["token-1", "token-2"])

    async def fresh() -> str:
        return next(tokens)

    async with turnout.AsyncOpenAI(base_url=openai_server.base_url, api_key=fresh) as client:
        for _ in range(2):
            await client.chat.completions.create(model="test-model", messages=MSG)
        assert client.api_key == PLACEHOLDER_KEY
    assert [r.header("Authorization") for r in openai_server.requests] == ["Bearer token-1", "Bearer token-2"]


def test_a_sync_key_function_too(openai_server: OpenAIServer) -> None:
    calls: list[int] = []

    def fresh() -> str:
        calls.append(1)
        return f"token-{len(calls)}"

    with turnout.OpenAI(base_url=openai_server.base_url, api_key=fresh) as client:
        client.chat.completions.create(model="test-model", messages=MSG)
    assert openai_server.requests[0].header("Authorization") == "Bearer token-1"


def test_a_key_function_as_a_setting_is_shown_masked(openai_server: OpenAIServer) -> None:
    from turnout.settings import TurnoutSettings, resolve

    config = resolve(
        TurnoutSettings(
            backends=["box"],
            backend={"box": {"provider": "vllm", "base_url": openai_server.base_url, "api_key": lambda: "token"}},
        )
    )
    assert config.describe()["backends"][0]["fields"]["api_key"]["value"] == "(a function)"


@pytest.mark.skipif(not SDK_HAS_DATA_RESIDENCY, reason="this openai SDK has no data_residency")
async def test_data_residency_is_openais_regional_address(monkeypatch) -> None:
    env(monkeypatch, OPENAI_API_KEY="sk-openai")
    async with turnout.AsyncOpenAI(data_residency="eu") as client:
        assert client.router.primary.adapter.preset.name == "openai"
        assert str(client.base_url).startswith("https://eu.api.openai.com/")
    with pytest.raises(ValueError, match="mutually exclusive"):
        turnout.AsyncOpenAI(data_residency="eu", base_url="http://127.0.0.1:1/v1")


# -- model, where the SDK lets it be left out ------------------------------------------------------


async def test_moderations_and_images_without_a_model_go_by_priority(make_openai_server) -> None:
    first, second = make_openai_server(disabled={"moderations"}), make_openai_server()
    async with turnout.AsyncOpenAI(
        backends=["first", "second"],
        backend={
            "first": {"provider": "openai_compat", "base_url": first.base_url},
            "second": {"provider": "openai_compat", "base_url": second.base_url},
        },
    ) as client:
        moderation = await client.moderations.create(input="hello")
        image = await client.images.generate(prompt="a cat")
    assert turnout.served_by(moderation) == "second", "the first cannot moderate: failed over, unknown then no"
    assert turnout.served_by(image) == "first"
    assert all("model" not in (r.json or {}) for r in first.requests + second.requests)


async def test_chat_without_a_model_names_what_is_missing(openai_server: OpenAIServer) -> None:
    async with turnout.AsyncOpenAI(base_url=openai_server.base_url, api_key="sk-test") as client:
        with pytest.raises(TypeError, match="model is required for chat") as caught:
            await client.chat.completions.create(messages=MSG, extra_body={}, model=openai.omit)  # type: ignore[arg-type]
    assert "as with the openai SDK" not in str(caught.value)


# -- max_retries -------------------------------------------------------------------------------


async def test_max_retries_above_allowed_fails_is_kept(openai_server: OpenAIServer, sleeps) -> None:
    openai_server.fail(Fault(status=503), times=4)
    async with turnout.AsyncOpenAI(base_url=openai_server.base_url, api_key="sk-test", max_retries=4) as client:
        reply = await client.chat.completions.create(model="test-model", messages=MSG)
    assert reply.choices[0].message.content == "echo: hi" and len(openai_server.requests) == 5


async def test_a_per_call_max_retries_counts_for_that_call(openai_server: OpenAIServer, sleeps) -> None:
    openai_server.fail(Fault(status=503))
    async with turnout.AsyncOpenAI(base_url=openai_server.base_url, api_key="sk-test", max_retries=2) as client:
        with pytest.raises(openai.InternalServerError):
            await client.with_options(max_retries=0).chat.completions.create(model="test-model", messages=MSG)
        assert len(openai_server.requests) == 1
        openai_server.heal()
        openai_server.fail(Fault(status=503), times=2)
        await client.chat.completions.create(model="test-model", messages=MSG)
    assert len(openai_server.requests) == 4, "the client's own max_retries=2 again"


def test_max_retries_none_is_refused_as_by_the_sdk(openai_server: OpenAIServer) -> None:
    with pytest.raises(TypeError, match="max_retries cannot be None"):
        turnout.OpenAI(base_url=openai_server.base_url, api_key="sk-test", max_retries=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, httpx2.Timeout(0)])
def test_a_zero_timeout_is_accepted(openai_server: OpenAIServer, timeout: Any) -> None:
    with turnout.OpenAI(base_url=openai_server.base_url, api_key="sk-test", timeout=timeout) as client:
        assert client.timeout == timeout
        assert client.router.primary.adapter.timeout == 0


# -- the router's own answer --------------------------------------------------------------------


def test_the_model_lists_raw_response_is_closed_and_carries_the_sdks_headers(openai_server: OpenAIServer) -> None:
    with turnout.OpenAI(base_url=openai_server.base_url, api_key="sk-test") as client:
        raw = client.models.with_raw_response.list()
        assert raw.is_closed
        assert raw.http_request.headers.get("X-Stainless-Lang") == "python"
        assert [m.id for m in raw.parse().data] == ["test-model"]


async def test_organization_project_and_default_query_reach_the_backend(openai_server: OpenAIServer) -> None:
    async with turnout.AsyncOpenAI(
        base_url=openai_server.base_url,
        api_key="sk-test",
        organization="org-1",
        project="proj-1",
        default_query={"api-version": "2025-01"},
    ) as client:
        await client.chat.completions.create(model="test-model", messages=MSG)
        assert (client.organization, client.project) == ("org-1", "proj-1")
    sent = openai_server.requests[0]
    assert (sent.header("OpenAI-Organization"), sent.header("OpenAI-Project")) == ("org-1", "proj-1")
    assert sent.query == {"api-version": "2025-01"}


async def test_the_openai_account_stays_off_other_providers(make_openai_server, monkeypatch) -> None:
    groq, openai_ = make_openai_server(), make_openai_server()
    groq.fail(Fault(status=503))
    env(
        monkeypatch,
        TURNOUT_BACKENDS="groq,openai",
        GROQ_API_KEY="gsk-groq",
        TURNOUT_BACKEND__GROQ__BASE_URL=groq.base_url,
        OPENAI_API_KEY="sk-openai",
        OPENAI_BASE_URL=openai_.base_url,
        TURNOUT_MAX_RETRIES="0",
    )
    async with turnout.AsyncOpenAI(organization="org-1", admin_api_key="sk-admin") as client:
        await client.chat.completions.create(model="test-model", messages=MSG)
    assert groq.requests[0].header("OpenAI-Organization") is None
    assert openai_.requests[0].header("OpenAI-Organization") == "org-1"


def test_an_http_client_of_the_other_kind_is_refused_as_by_the_sdk(openai_server: OpenAIServer) -> None:
    with httpx2.Client() as sync_client, pytest.raises(TypeError, match="Invalid `http_client` argument"):
        turnout.AsyncOpenAI(base_url=openai_server.base_url, api_key="sk-test", http_client=sync_client)  # type: ignore[arg-type]


async def test_a_copys_default_query_reaches_the_backend(openai_server: OpenAIServer) -> None:
    async with turnout.AsyncOpenAI(
        base_url=openai_server.base_url, api_key="sk-test", default_query={"a": "1"}
    ) as client:
        await client.copy(default_query={"b": "2"}).chat.completions.create(model="test-model", messages=MSG)
        await client.copy(set_default_query={"c": "3"}).chat.completions.create(model="test-model", messages=MSG)
    assert [r.query for r in openai_server.requests] == [{"a": "1", "b": "2"}, {"c": "3"}]


def test_workload_identity_beside_an_api_key_is_refused_as_by_the_sdk() -> None:
    with pytest.raises(openai.OpenAIError, match="mutually exclusive"):
        turnout.OpenAI(api_key="sk-test", workload_identity={"provider": "gcp"})  # type: ignore[typeddict-item]


async def test_a_provider_builds_the_one_backend_and_refuses_top_level_logins() -> None:
    from openai.providers import bedrock

    async with turnout.AsyncOpenAI(provider=bedrock(region="us-east-1", api_key="bedrock-token")) as client:
        assert client.router.primary.adapter.base_url.startswith("https://")
        assert "us-east-1" in client.router.primary.adapter.base_url
        assert client.api_key == PLACEHOLDER_KEY
    with pytest.raises(openai.OpenAIError, match="cannot be combined with top-level `api_key`"):
        turnout.AsyncOpenAI(provider=bedrock(region="us-east-1", api_key="bedrock-token"), api_key="sk-test")


def test_a_proxys_password_is_never_shown(monkeypatch) -> None:
    from turnout.settings import TurnoutSettings, resolve

    env(
        monkeypatch,
        TURNOUT_BACKENDS="vllm",
        TURNOUT_BACKEND__VLLM__PROXY="http://me:hunter2-secret@proxy.internal:3128",
    )
    shown = str(resolve(TurnoutSettings()).describe())
    assert "proxy.internal:3128" in shown and "hunter2-secret" not in shown


async def test_a_response_from_a_stored_prompt_needs_no_model(make_openai_server) -> None:
    down, up = make_openai_server(), make_openai_server()
    down.fail(Fault(status=503))
    async with turnout.AsyncOpenAI(
        max_retries=0,
        backends=["down", "up"],
        backend={
            "down": {"provider": "openai_compat", "base_url": down.base_url},
            "up": {"provider": "openai_compat", "base_url": up.base_url},
        },
    ) as client:
        response = await client.responses.create(prompt={"id": "pmpt_loopback", "variables": {"city": "Oslo"}})
    assert turnout.served_by(response) == "up" and response.output_text == "echo: from a stored prompt"
    assert "model" not in (up.requests[0].json or {}) and len(down.requests) == 1, "priority order, then failover"


@pytest.mark.skipif(not SDK_HAS_X509, reason="this openai SDK has no X.509 workload identity")
async def test_an_x509_identity_goes_to_openais_mtls_address_as_in_the_sdk() -> None:
    from openai.auth import x509_workload_identity

    identity = x509_workload_identity(identity_provider_id="idp_1", service_account_id="svc_1")
    async with turnout.AsyncOpenAI(workload_identity=identity) as client:
        assert client.router.primary.adapter.base_url == "https://mtls.api.openai.com/v1"
        assert client.router.primary.adapter.preset.name == "openai"


async def test_the_sdks_aiohttp_client_carries_every_backends_requests(make_openai_server) -> None:
    down, up = make_openai_server(), make_openai_server()
    down.fail(Fault(status=503))
    caller = openai.DefaultAioHttpClient()
    async with turnout.AsyncOpenAI(
        http_client=caller,
        max_retries=0,
        backends=["down", "up"],
        backend={
            "down": {"provider": "vllm", "base_url": down.base_url},
            "up": {"provider": "vllm", "base_url": up.base_url},
        },
    ) as client:
        reply = await client.chat.completions.create(model="test-model", messages=MSG)
        chunks = [c async for c in await client.chat.completions.create(model="test-model", messages=MSG, stream=True)]
    assert (
        turnout.served_by(reply) == "up"
        and "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hi"
    )
    assert len(down.requests) == 2 and len(up.requests) == 2
    assert caller.is_closed


# -- the one backend: the caller's http_client whole, copy() as the SDK's, its own models --------------------


async def test_the_one_backend_gets_the_callers_http_client_whole(openai_server: OpenAIServer) -> None:
    hooked: list[str] = []

    async def hook(request: httpx2.Request) -> None:
        hooked.append(request.url.path)

    caller = httpx2.AsyncClient(headers={"X-Caller": "mine"}, event_hooks={"request": [hook]})
    async with turnout.AsyncOpenAI(base_url=openai_server.base_url, api_key="sk-test", http_client=caller) as client:
        await client.chat.completions.create(model="test-model", messages=MSG)
    assert openai_server.requests[-1].header("X-Caller") == "mine", "its headers reach the one host it was made for"
    assert hooked == ["/v1/chat/completions"] and caller.is_closed


def test_a_sync_http_client_carries_the_one_backend_whole(openai_server: OpenAIServer) -> None:
    hooked: list[str] = []
    caller = httpx2.Client(headers={"X-Caller": "mine"}, event_hooks={"request": [lambda r: hooked.append(r.url.path)]})
    with turnout.OpenAI(base_url=openai_server.base_url, api_key="sk-test", http_client=caller) as client:
        reply = client.chat.completions.create(model="test-model", messages=MSG)
        streamed = [
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model="test-model", messages=MSG, stream=True)
            if c.choices
        ]
        models = client.models.list()
    assert reply.choices[0].message.content == "echo: hi" and "".join(streamed) == "echo: hi"
    assert [m.id for m in models] == ["test-model"]
    assert {r.header("X-Caller") for r in openai_server.requests} == {"mine"}
    assert hooked == ["/v1/chat/completions", "/v1/chat/completions", "/v1/models"] and caller.is_closed


@pytest.mark.skipif(not SDK_HAS_X509, reason="X.509 workload identities came after openai 3.0.0")
@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_the_sdks_workload_identity_guards_run_on_the_callers_http_client(kind: str) -> None:
    """A key the caller's http_client would add beside an X.509 identity is refused before any token exchange."""
    from openai.auth import x509_workload_identity

    identity = x509_workload_identity(identity_provider_id="idp", service_account_id="svc")
    if kind == "async":
        caller: Any = httpx2.AsyncClient(headers={"api-key": "another-providers-key"})
        async with turnout.AsyncOpenAI(workload_identity=identity, http_client=caller) as client:
            with pytest.raises(openai.OpenAIError, match="API.key"):
                await client.models.list()
            assert client._workload_identity_auth is not None  # the one backend's, shown as the SDK shows its own
    else:
        caller = httpx2.Client(headers={"api-key": "another-providers-key"})
        with turnout.OpenAI(workload_identity=identity, http_client=caller) as sync_client:
            with pytest.raises(openai.OpenAIError, match="API.key"):
                sync_client.models.list()


async def test_a_copy_with_another_login_is_another_one_backend_client(make_openai_server) -> None:
    first, second = make_openai_server(), make_openai_server()
    async with turnout.AsyncOpenAI(base_url=first.base_url, api_key="sk-first", organization="org-1") as client:
        other = client.with_options(base_url=second.base_url, api_key="sk-second")
        same = client.with_options(api_key="sk-renewed")
        await other.chat.completions.create(model="test-model", messages=MSG)
        await same.chat.completions.create(model="test-model", messages=MSG)
        await client.chat.completions.create(model="test-model", messages=MSG)
        assert other.router is not client.router and other.max_retries == client.max_retries
        await other.close()
        await same.close()
    assert [r.header("Authorization") for r in second.requests] == ["Bearer sk-second"]
    assert [r.header("Authorization") for r in first.requests] == ["Bearer sk-renewed", "Bearer sk-first"]
    assert second.requests[0].header("OpenAI-Organization") == "org-1", "what the copy does not change, it keeps"


async def test_a_copy_to_another_host_needs_its_own_key(make_openai_server) -> None:
    first, second = make_openai_server(), make_openai_server()
    async with turnout.AsyncOpenAI(base_url=first.base_url, api_key="sk-first") as client:
        with pytest.raises(TypeError, match="needs its own api_key") as refused:
            client.copy(base_url=second.base_url)
        assert "sk-first" not in str(refused.value)


async def test_a_copy_of_environment_backends_changing_a_login_is_refused(openai_server: OpenAIServer) -> None:
    async with turnout.AsyncOpenAI(
        backends=["local"], backend={"local": {"provider": "vllm", "base_url": openai_server.base_url}}
    ) as client:
        with pytest.raises(TypeError, match="cannot change api_key"):
            client.copy(api_key="sk-other")


async def test_the_one_backend_answers_models_itself(openai_server: OpenAIServer) -> None:
    async with turnout.AsyncOpenAI(base_url=openai_server.base_url, api_key="sk-test") as client:
        listed = [m async for m in client.models.list()]
        found = await client.models.retrieve("test-model", extra_headers={"X-Asked": "yes"})
    assert [(m.id, m.owned_by) for m in listed] == [("test-model", "loopback")], "the server's own answer"
    assert found.owned_by == "loopback"
    assert openai_server.requests[-1].path == "/v1/models/test-model"
    assert openai_server.requests[-1].header("X-Asked") == "yes"


def test_build_request_outside_a_call_is_the_sdks(openai_server: OpenAIServer) -> None:
    from turnout._sdk import FinalRequestOptions

    with turnout.OpenAI(base_url=openai_server.base_url, api_key="sk-test", default_headers={"X-Foo": "bar"}) as client:
        request = client._build_request(FinalRequestOptions(method="get", url="/foo"))
    assert str(request.url) == openai_server.base_url + "/foo" and request.headers["X-Foo"] == "bar"
    assert request.headers["Authorization"] == f"Bearer {PLACEHOLDER_KEY}", "the key stays off the caller's client"


@pytest.mark.skipif(not SDK_HAS_X509, reason="X.509 workload identities came after openai 3.0.0")
async def test_a_copy_of_a_workload_identity_client_keeps_its_identity() -> None:
    from openai.auth import x509_workload_identity

    identity = x509_workload_identity(identity_provider_id="idp", service_account_id="svc")
    async with turnout.AsyncOpenAI(workload_identity=identity) as client:
        copied = client.with_options(timeout=5)
        assert copied.router is client.router and copied.workload_identity == client.workload_identity == identity


@pytest.mark.skipif(not SDK_HAS_DATA_RESIDENCY, reason="data_residency came after openai 3.0.0")
def test_data_residency_with_a_websocket_address_is_refused_as_by_the_sdk() -> None:
    with pytest.raises(ValueError, match="`data_residency` and `websocket_base_url`"):
        turnout.OpenAI(api_key="sk-test", data_residency="eu", websocket_base_url="wss://elsewhere.example/v1")
