"""Rate limits in one process: RPM/TPM windows, the limits providers announce in their headers, waiting for
room when every candidate is full, and the 429 the router raises when waiting would pass the deadline.

Sharing these between processes is tests/state/test_shared_state.py and tests/state/test_many_processes.py.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import openai
import pytest

import turnout
from tests.router.test_router import backend, chat
from tests.support.loopback import Fault
from turnout import served_by
from turnout.router._quota import estimate_tokens, reset_seconds

# -- what providers announce ---------------------------------------------------------------------

IN_45_S = "<Unix milliseconds 45 s from now>"  # filled in when the test runs, not when it is collected


PROVIDERS = [  # headers as each provider sends them (see turnout/router/_quota.py), and what they mean
    pytest.param(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-requests": "6m0s",
            "x-ratelimit-reset-tokens": "6ms",
        },
        "requests",
        360,
        id="openai-requests",
    ),
    pytest.param(
        {
            "x-ratelimit-limit-requests": "5000",
            "x-ratelimit-limit-tokens": "40000",
            "x-ratelimit-remaining-requests": "4999",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-requests": "12ms",
            "x-ratelimit-reset-tokens": "1m30.5s",
        },
        "tokens",
        90.5,
        id="openai-tokens",
    ),
    pytest.param(
        {
            "x-ratelimit-limit-requests": "14400",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "2m59.56s",
            "x-ratelimit-remaining-tokens": "5000",
            "x-ratelimit-reset-tokens": "7.66s",
            "retry-after": "2",
        },
        "requests",
        179.56,
        id="groq",
    ),
    pytest.param(
        {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": IN_45_S},
        "requests",
        45,
        id="openrouter",
    ),
    pytest.param(
        {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "30"},
        "requests",
        30,
        id="together-requests",
    ),
    pytest.param(
        {
            "x-ratelimit-limit": "10",
            "x-ratelimit-remaining": "9",
            "x-ratelimit-reset": "20",
            "x-tokenlimit-limit": "2000",
            "x-tokenlimit-remaining": "0",
        },
        "tokens",
        20,
        id="together-tokens",
    ),
]


@pytest.mark.parametrize(("headers", "what", "seconds"), PROVIDERS)
async def test_a_provider_announcing_a_used_up_limit_is_skipped_until_it_resets(
    clients, make_openai_server, headers: dict[str, str], what: str, seconds: float
) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    client = clients(backend(primary, "primary"), backend(backup, "backup"))
    in_45_s = str(int((time.time() + 45) * 1000))
    primary.fail(Fault(headers={k: in_45_s if v == IN_45_S else v for k, v in headers.items()}), times=1)
    assert served_by(await chat(client)) == "primary", "the answer that announced it is delivered"
    assert served_by(await chat(client)) == "backup"
    assert len(primary.chat_requests()) == 1
    limit = client.router.stats()["primary"]["provider_limit"]
    assert limit["limit"] == what and seconds - 5 < limit["remaining"] <= seconds


async def test_limits_with_room_left_change_nothing(clients, make_openai_server) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    client = clients(backend(primary, "primary"), backend(backup, "backup"))
    primary.fail(
        Fault(
            headers={
                "x-ratelimit-remaining-requests": "3",
                "x-ratelimit-reset-requests": "6m0s",
                "x-ratelimit-remaining": "1",
                "x-ratelimit-reset": "30",
            }
        ),
        times=1,
    )
    assert [served_by(await chat(client)) for _ in range(2)] == ["primary", "primary"]
    assert client.router.stats()["primary"]["provider_limit"] is None


async def test_a_429_announcing_its_limit_skips_the_backend(clients, make_openai_server) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    client = clients(backend(primary, "primary", max_retries=0), backend(backup, "backup"))
    primary.fail(
        Fault(status=429, headers={"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "50s"}), times=1
    )
    assert served_by(await chat(client)) == "backup"
    assert served_by(await chat(client)) == "backup"
    assert len(primary.chat_requests()) == 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1.5s", 1.5),
        ("20ms", 0.02),
        ("2m59.56s", 179.56),
        ("1h2m3s", 3723.0),
        ("250us", 0.00025),
        ("7", 7.0),
        ("0.5", 0.5),
    ],
)
def test_reset_durations_in_every_form_providers_send(text: str, seconds: float) -> None:
    assert reset_seconds(text) == pytest.approx(seconds)


def test_reset_times_as_unix_seconds_milliseconds_or_an_http_date() -> None:
    soon = time.time() + 100
    assert reset_seconds(str(int(soon * 1000))) == pytest.approx(100, abs=2)
    assert reset_seconds(str(int(soon))) == pytest.approx(100, abs=2)
    assert reset_seconds(email.utils.formatdate(soon, usegmt=True)) == pytest.approx(100, abs=2)
    assert reset_seconds(str(int((time.time() - 100) * 1000))) == 0.0, "a reset in the past is now"
    assert reset_seconds("soon") is None and reset_seconds("") is None and reset_seconds(None) is None


# -- the router's own windows --------------------------------------------------------------------


async def test_an_rpm_window_sends_the_rest_to_the_next_backend(clients, make_openai_server) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    client = clients(backend(primary, "primary", rpm=3), backend(backup, "backup"))
    assert [served_by(await chat(client)) for _ in range(5)] == ["primary"] * 3 + ["backup"] * 2
    window = client.router.stats()["primary"]["window"]
    assert (window["rpm"], window["rpm_limit"]) == (3, 3)


async def test_a_retry_needs_room_in_the_window_too(clients, make_openai_server) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    primary.fail(Fault(status=500), times=1)
    client = clients(backend(primary, "primary", rpm=1, max_retries=2, backoff_max=0), backend(backup, "backup"))
    assert served_by(await chat(client)) == "backup"
    assert len(primary.chat_requests()) == 1, "the retry would have been a second request this minute"
    stats = client.router.stats()["primary"]
    assert stats["state"] == "closed" and stats["retries"] == 0


async def test_when_every_candidate_is_full_the_request_waits_for_the_first_to_have_room(
    clients, make_openai_server
) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    client = clients(backend(primary, "primary"), backend(backup, "backup"))
    primary.fail(Fault(headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "300ms"}), times=1)
    backup.fail(Fault(headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "60s"}), times=1)
    await chat(client)
    await chat(client)  # both full now: primary for 0.3 s, backup for a minute
    assert served_by(await chat(client)) == "primary"
    assert [len(primary.chat_requests()), len(backup.chat_requests())] == [2, 1]


async def test_when_waiting_would_pass_the_deadline_the_429_names_each_limit(clients, make_openai_server) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    client = clients(backend(primary, "primary", rpm=1), backend(backup, "backup"), timeout=5)
    backup.fail(Fault(headers={"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}), times=1)
    await chat(client)  # primary's one request this minute
    await chat(client)  # backup, which announces its tokens are used up
    with pytest.raises(openai.RateLimitError) as caught:
        await chat(client)
    err = caught.value
    assert err.code == "rate_limited_by_turnout" and err.status_code == 429
    assert (
        "primary: RPM 1 (room in " in err.message and "backup: the provider's tokens limit (room in 5m" in err.message
    )
    assert 1 <= int(err.response.headers["retry-after"]) <= 61
    assert [len(primary.chat_requests()), len(backup.chat_requests())] == [1, 1], "nothing was sent"


async def test_a_full_backend_beside_a_failing_one_is_named_in_the_error(clients, make_openai_server) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    backup.fail(Fault(status=503))
    client = clients(backend(primary, "primary", rpm=1), backend(backup, "backup", max_retries=0))
    await chat(client)
    with pytest.raises(turnout.AllBackendsFailedError) as caught:
        await chat(client)
    assert isinstance(caught.value, openai.InternalServerError), "the decisive failure is the one that happened"
    assert list(caught.value.errors) == ["primary", "backup"]
    assert "RPM 1" in str(caught.value.errors["primary"])


def test_the_token_estimate_counts_characters_messages_and_the_completion_allowed() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": "x" * 96}, {"role": "user", "content": "y" * 200}],
        "max_tokens": 50,
        "n": 2,
    }
    # characters / 4 (the role names are strings too: "system" and "user" are 10 more), 4 per message, completion × n
    assert estimate_tokens(body) == -(-(96 + 200 + 10) // 4) + 2 * 4 + 50 * 2
    image = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}],
            }
        ],
    }
    assert estimate_tokens(image) < 1100, "an inline image counts 1,000, not its base64 length"


# -- estimates no caller can bend ------------------------------------------------------------------


async def _after_a_refusal(
    clients: Any, make_openai_server: Any, request: pytest.FixtureRequest, store: str, max_tokens: int
) -> Any:
    """A client whose primary (TPM 1,000) has just refused, with a 400, a request for ``max_tokens``."""
    from turnout.state import MemoryState, RedisState

    state = MemoryState() if store == "memory" else RedisState(request.getfixturevalue("redis_server").url)
    primary, backup = make_openai_server(), make_openai_server()
    primary.fail(Fault(status=400, message="max_tokens is invalid"), times=1)
    client = clients(backend(primary, "primary", tpm=1000), backend(backup, "backup"), state=state)
    with pytest.raises(openai.BadRequestError):
        await chat(client, max_tokens=max_tokens)
    return client


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_negative_max_tokens_does_not_open_a_tpm_window(
    clients, make_openai_server, request, store: str
) -> None:
    """The report: ``max_tokens=-1e9`` (refused by the backend) and then five 600-token requests all passed."""
    client = await _after_a_refusal(clients, make_openai_server, request, store, -(10**9))
    served = []
    for _ in range(5):  # streamed without a usage event: each keeps its estimate
        stream = await chat(client, max_tokens=600, stream=True)
        served.append(served_by(stream))
        assert [c async for c in stream]
    assert served == ["primary"] + ["backup"] * 4, "one 600-token request fits in 1,000 tokens a minute"
    window = (await client.router.shared_stats())["primary"]["window"]
    assert 0 <= window["tpm"] <= 1000


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_request_refused_with_a_4xx_gives_its_estimate_back(
    clients, make_openai_server, request, store: str
) -> None:
    client = await _after_a_refusal(clients, make_openai_server, request, store, 900)
    assert served_by(await chat(client, max_tokens=900)) == "primary", "the refused request left the window"


def test_the_token_estimate_takes_only_sane_counts() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    plain = estimate_tokens(base)
    assert estimate_tokens({**base, "max_tokens": -(10**9)}) == plain
    assert estimate_tokens({**base, "max_tokens": True}) == plain
    assert estimate_tokens({**base, "max_tokens": 100, "n": -5}) == plain + 100
    assert estimate_tokens({**base, "max_tokens": 10**12}) == plain + 1_000_000
