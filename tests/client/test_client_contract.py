"""What a library may rely on in turnout's clients, as it would in the SDK's: types, attributes, copies,
deadlines, closing, and the errors it sees. Each test runs with ``turnout.AsyncOpenAI`` and ``turnout.OpenAI``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai
import pytest

import turnout
from tests.client.test_client_surface import MSG, configure, dead_url
from tests.router.test_router import sleeps  # noqa: F401  (backoff's waits, skipped)
from tests.settings.test_settings import env, isolated  # noqa: F401  (autouse: no TURNOUT_ from the shell, no .env)
from tests.support.loopback import Fault, OpenAIServer

GROQ_KEY = "gsk_test.groq.secret"
OPENAI_KEY = "sk-test.openai.secret"
KINDS = {"async": turnout.AsyncOpenAI, "sync": turnout.OpenAI}


async def settle(value: Any) -> Any:
    """A call's answer, whichever client made it."""
    return await value if inspect.isawaitable(value) else value


async def drain(stream: Any, into: list[Any] | None = None) -> list[Any]:
    """A stream's chunks, whichever client made it, kept in ``into`` as they arrive (so a break keeps them)."""
    into = [] if into is None else into
    if hasattr(stream, "__aiter__"):
        async for chunk in stream:
            into.append(chunk)
    else:
        for chunk in stream:
            into.append(chunk)
    return into


@pytest.fixture(params=list(KINDS))
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    """``make(**kwargs)``: a turnout client of this test's kind, from the environment; closed afterwards."""
    made: list[Any] = []

    def build(**kwargs: Any) -> Any:
        made.append(KINDS[request.param](**kwargs))
        return made[-1]

    yield build
    for client in made:
        await settle(client.close())


@pytest.fixture
def pair(
    monkeypatch: pytest.MonkeyPatch, make_openai_server: Callable[..., OpenAIServer]
) -> tuple[OpenAIServer, OpenAIServer]:
    """Two working backends from the environment, ``first`` then ``second``, no retries."""
    first, second = make_openai_server(), make_openai_server()
    configure(monkeypatch, ("first", "vllm", first.base_url), ("second", "vllm", second.base_url))
    return first, second


def chat(client: Any, **kwargs: Any) -> Any:
    return settle(client.chat.completions.create(model="test-model", messages=MSG, **kwargs))


# -- types and attributes --------------------------------------------------------------


def test_the_clients_are_the_sdks_clients() -> None:
    assert issubclass(turnout.AsyncOpenAI, openai.AsyncOpenAI) and issubclass(turnout.OpenAI, openai.OpenAI)


async def test_an_instance_passes_a_librarys_isinstance_check(make: Callable[..., Any], pair: Any) -> None:
    client = make()
    assert isinstance(client, (openai.AsyncOpenAI, openai.OpenAI))
    assert isinstance(client, openai.AsyncOpenAI) == isinstance(client, turnout.AsyncOpenAI)


async def test_base_url_is_the_primary_backends(
    make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, free_port: int, openai_server: OpenAIServer
) -> None:
    configure(monkeypatch, ("dead", "vllm", dead_url(free_port)), ("live", "vllm", openai_server.base_url))
    client = make()
    assert str(client.base_url).rstrip("/") == dead_url(free_port)
    assert isinstance(client.base_url, httpx2.URL)


@pytest.mark.parametrize(
    ("provider", "base_url", "exposed"),
    [
        ("vllm", "http://127.0.0.1:9/v1", turnout.client.PLACEHOLDER_KEY),
        ("openai", "http://127.0.0.1:9/v1", turnout.client.PLACEHOLDER_KEY),  # OpenAI's protocol, not OpenAI's host
        ("openai", None, OPENAI_KEY),
    ],
)
async def test_api_key_is_real_only_when_openai_itself_is_primary(
    make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, provider: str, base_url: str | None, exposed: str
) -> None:
    env(
        monkeypatch,
        TURNOUT_BACKENDS="main",
        TURNOUT_BACKEND__MAIN__PROVIDER=provider,
        TURNOUT_BACKEND__MAIN__API_KEY=OPENAI_KEY,
        **({"TURNOUT_BACKEND__MAIN__BASE_URL": base_url} if base_url else {}),
    )
    client = make()
    assert client.api_key == exposed
    assert client.auth_headers == {"Authorization": f"Bearer {exposed}"}
    assert turnout.client.PLACEHOLDER_KEY == "turnout-routed"


async def test_a_groq_key_is_nowhere_on_the_client(
    make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, openai_server: OpenAIServer
) -> None:
    env(monkeypatch, GROQ_API_KEY=GROQ_KEY)
    configure(
        monkeypatch, ("groq", "groq", "https://api.groq.com/openai/v1"), ("local", "vllm", openai_server.base_url)
    )
    client = make()
    assert client.api_key == turnout.client.PLACEHOLDER_KEY
    assert str(client.base_url).startswith("https://api.groq.com/")
    seen = [
        repr(client),
        str(client),
        repr(vars(client)),
        client.api_key,
        repr(client.default_headers),
        repr(client.auth_headers),
        repr(client.custom_auth),
        repr(client.default_query),
    ]
    seen += [repr(getattr(client, name)) for name in dir(client) if not name.startswith("__")]
    leaks = [text for text in seen if "test.groq" in text]
    assert leaks == []


@pytest.mark.usefixtures("sleeps")
async def test_timeout_max_retries_and_headers_given_to_the_constructor(
    make: Callable[..., Any], pair: tuple[OpenAIServer, OpenAIServer]
) -> None:
    first, second = pair
    first.fail(Fault(status=503))
    client = make(timeout=5, max_retries=1, default_headers={"X-App": "demo"})
    assert (client.timeout, client.max_retries, client.default_headers["X-App"]) == (5, 1, "demo")
    answer = await chat(client)
    assert turnout.served_by(answer) == "second"
    assert len(first.requests) == 2, "max_retries=1: two attempts at the failing backend"
    assert [r.header("X-App") for r in first.requests + second.requests] == ["demo"] * 3


async def test_attributes_say_what_the_environment_configured(
    make: Callable[..., Any], pair: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env(monkeypatch, TURNOUT_TIMEOUT="7", TURNOUT_MAX_RETRIES="1")
    client = make()
    assert client.max_retries == 1
    assert client.timeout == 7, "the per-attempt timeout every backend uses, not the SDK's unused 600 s default"


# -- copy() and with_options() ---------------------------------------------------------------


async def test_copies_share_the_router_and_its_breakers(
    make: Callable[..., Any], pair: tuple[OpenAIServer, OpenAIServer]
) -> None:
    first, _ = pair
    client = make()
    copies = [client.copy(), client.with_options(timeout=5), client.with_options(max_retries=0)]
    assert all(type(c) is type(client) and c.router is client.router for c in copies)
    first.fail(Fault(status=500))
    for copy in copies:
        assert turnout.served_by(await chat(copy)) == "second"
    assert client.router.stats()["first"]["failures"] == 3


@pytest.mark.usefixtures("sleeps")
async def test_with_options_max_retries_sets_every_backends_retries(
    make: Callable[..., Any], pair: tuple[OpenAIServer, OpenAIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = pair
    env(monkeypatch, TURNOUT_MAX_RETRIES="2", TURNOUT_ALLOWED_FAILS="100")  # no cooldown between the rounds
    first.fail(Fault(status=503))
    second.fail(Fault(status=503))
    client = make()
    for retries, attempts in ((None, 3), (0, 1), (1, 2)):
        before = len(first.requests), len(second.requests)
        routed = client if retries is None else client.with_options(max_retries=retries)
        with pytest.raises(openai.InternalServerError):
            await chat(routed)
        assert (len(first.requests) - before[0], len(second.requests) - before[1]) == (attempts, attempts)


async def test_a_per_call_timeout_is_the_whole_requests_deadline(
    make: Callable[..., Any], pair: tuple[OpenAIServer, OpenAIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = pair
    env(monkeypatch, TURNOUT_TIMEOUT="20", TURNOUT_MAX_RETRIES="2")  # unbounded, each attempt could take 20 s
    first.fail(Fault(hang=True))
    second.fail(Fault(hang=True))
    client = make()
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await chat(client, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        await chat(client.with_options(timeout=0.3))
    assert time.monotonic() - start < 10, "bounded by the deadlines, not by 20 s attempts"
    assert (len(first.requests), len(second.requests)) == (2, 0), "no attempt starts after the deadline"


@pytest.mark.parametrize(
    "change", [{"base_url": "http://127.0.0.1:9/v1"}, {"api_key": "sk-other"}, {"organization": "org-other"}]
)
async def test_copies_refuse_to_change_where_requests_go(
    make: Callable[..., Any], pair: Any, change: dict[str, Any]
) -> None:
    client = make()
    with pytest.raises(TypeError, match=f"cannot change {next(iter(change))}"):
        client.copy(**change)
    with pytest.raises(TypeError, match=f"cannot change {next(iter(change))}"):
        client.with_options(**change)
    assert client.api_key == turnout.client.PLACEHOLDER_KEY, "the original is unchanged"


async def test_with_options_default_headers_reach_every_backend(
    make: Callable[..., Any], pair: tuple[OpenAIServer, OpenAIServer]
) -> None:
    first, second = pair
    first.fail(Fault(status=500), times=1)
    client = make()
    answer = await chat(client.with_options(default_headers={"X-Extra": "1"}))
    assert turnout.served_by(answer) == "second"
    await chat(client)
    assert [r.header("X-Extra") for r in first.requests + second.requests] == ["1", None, "1"]


# -- closing ----------------------------------------------------------------------------------


async def test_closing_the_client_closes_its_backends_connections(
    make: Callable[..., Any], pair: tuple[OpenAIServer, OpenAIServer]
) -> None:
    first, second = pair
    first.fail(Fault(status=500), times=1)
    client = make()
    await chat(client)
    await chat(client)
    assert (first.open_connections, second.open_connections) == (1, 1), "kept alive until closed"
    await settle(client.close())
    assert await first.released() and await second.released()


async def test_async_with_closes_the_backends(pair: tuple[OpenAIServer, OpenAIServer]) -> None:
    first, _ = pair
    async with turnout.AsyncOpenAI() as client:
        await chat(client)
        assert first.open_connections == 1
    assert await first.released()


def test_with_closes_the_sync_clients_backends(pair: tuple[OpenAIServer, OpenAIServer]) -> None:
    first, _ = pair
    with turnout.OpenAI() as client:
        client.chat.completions.create(model="test-model", messages=MSG)
        assert first.open_connections == 1
    assert asyncio.run(first.released())


# -- errors ---------------------------------------------------------------------------------------


async def test_when_every_backend_fails_the_error_is_turnouts_and_the_sdks(
    make: Callable[..., Any], pair: tuple[OpenAIServer, OpenAIServer]
) -> None:
    first, second = pair
    first.fail(Fault(status=502, message="bad gateway upstream"))
    second.fail(Fault(status=500, message="boom"))
    with pytest.raises(openai.InternalServerError) as caught:
        await chat(make())
    err = caught.value
    assert isinstance(err, turnout.AllBackendsFailedError) and isinstance(err, openai.APIStatusError)
    assert err.status_code == 500 and set(err.errors) == {"first", "second"}
    assert all(isinstance(e, openai.InternalServerError) for e in err.errors.values())
    assert err.errors["first"].status_code == 502
    assert "first" in str(err) and "second" in str(err) and "bad gateway upstream" in str(err)


async def test_a_bad_request_is_raised_at_once(
    make: Callable[..., Any], pair: tuple[OpenAIServer, OpenAIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = pair
    monkeypatch.setenv("TURNOUT_MAX_RETRIES", "2")
    first.fail(Fault(status=400, message="'temperature' must be at most 2", error_type="invalid_request_error"))
    with pytest.raises(openai.BadRequestError, match="temperature") as caught:
        await chat(make(), temperature=3)
    assert not isinstance(caught.value, turnout.AllBackendsFailedError)
    assert (len(first.requests), len(second.requests)) == (1, 0), "neither retried nor failed over"


async def test_a_stream_broken_after_its_first_chunk_is_not_replayed(
    make: Callable[..., Any], pair: tuple[OpenAIServer, OpenAIServer]
) -> None:
    first, second = pair
    first.fail(Fault(cut_after=2))
    stream = await chat(make(), stream=True)
    assert turnout.served_by(stream) == "first"
    received: list[Any] = []
    with pytest.raises(turnout.BrokenStreamError) as caught:
        await drain(stream, received)
    assert isinstance(caught.value, openai.APIConnectionError)
    assert [c.choices[0].delta.content for c in received] == ["", "echo:"]
    assert second.requests == [], "no other backend's answer is glued on"


async def test_a_stream_broken_before_its_first_chunk_fails_over(
    make: Callable[..., Any], pair: tuple[OpenAIServer, OpenAIServer]
) -> None:
    first, second = pair
    first.fail(Fault(cut_after=0))
    stream = await chat(make(), stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in await drain(stream) if c.choices)
    assert text == "echo: hi there" and turnout.served_by(stream) == "second"
    assert (len(first.requests), len(second.requests)) == (1, 1)


# -- who served what ---------------------------------------------------------------------


async def test_served_by_names_the_backend_of_everything_parsed_from_an_answer(
    make: Callable[..., Any], pair: tuple[OpenAIServer, OpenAIServer]
) -> None:
    first, second = pair
    first.fail(Fault(status=503))
    client = make()
    raw = await settle(client.chat.completions.with_raw_response.create(model="test-model", messages=MSG))
    assert turnout.served_by(raw) == "second" and turnout.served_by(raw.parse()) == "second"
    chunks = await drain(await settle(client.chat.completions.create(model="test-model", messages=MSG, stream=True)))
    assert {turnout.served_by(chunk) for chunk in chunks} == {"second"}
    helper = client.chat.completions.stream(model="test-model", messages=MSG)
    if hasattr(helper, "__aenter__"):
        async with helper as stream:
            await drain(stream)
    else:
        with helper as stream:
            await drain(stream)
    assert turnout.served_by(stream) == "second"


async def test_is_closed_says_whether_the_backends_were_closed(
    make: Callable[..., Any], pair: tuple[OpenAIServer, OpenAIServer]
) -> None:
    client = make()
    await chat(client)
    copy = client.with_options(max_retries=0)
    assert not client.is_closed() and not copy.is_closed()
    await settle(client.close())
    assert client.is_closed() and copy.is_closed(), (
        "a copy shares the original's backends, as the SDK's copies share its http client"
    )
