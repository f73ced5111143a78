"""``GET /metrics`` of ``turnout serve`` run as a subprocess, scraped and read with prometheus-client's own parser."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import openai
import pytest

from tests.cli.test_cli import backend, backends
from tests.serve.test_serve import MESSAGES, SERVE_KEY, Served, closed_port
from tests.support.loopback import Fault, OpenAIServer

parser = pytest.importorskip("prometheus_client.parser")
pytest.importorskip("uvicorn", reason="turnout serve needs the serve extra: pip install -e '.[serve]'")

AUTH = {"Authorization": f"Bearer {SERVE_KEY}"}


def scrape(
    server: Served, headers: dict[str, str] | None = None
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Each sample's value by name and labels."""
    answer = httpx2.get(f"{server.url}/metrics", headers=headers if headers is not None else AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for key, v in samples.get(name, {}).items() if set(labels.items()) <= set(key))


def chat(server: Served, model: str = "test-model", **extra: Any) -> httpx2.Response:
    return httpx2.post(
        f"{server.url}/v1/chat/completions",
        headers=AUTH,
        timeout=10,
        json={"model": model, "messages": MESSAGES, **extra},
    )


@pytest.fixture(scope="module")
def good() -> Iterator[OpenAIServer]:
    with OpenAIServer(models=["test-model"]) as server:
        yield server


def serving(tmp_path_factory: pytest.TempPathFactory, good: OpenAIServer, *args: str, **env: str) -> Served:
    config = backends(
        ("dead", backend("dead", f"http://127.0.0.1:{closed_port()}/v1", provider="openai_compat")),
        ("good", backend("good", good.base_url, provider="openai_compat", price="1,2")),
        TURNOUT_MAX_RETRIES="0",
        TURNOUT_COOLDOWN="0",
        TURNOUT_SERVE_API_KEYS=SERVE_KEY,
        **env,
    )
    return Served(config, tmp_path_factory.mktemp("serve"), *args)


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory, good: OpenAIServer) -> Iterator[Served]:
    served = serving(tmp_path_factory, good)
    yield served
    assert served.stop() == 0, served.log
    assert "Traceback" not in served.log


def test_metrics_need_the_key_unless_opted_open(one: Served, tmp_path_factory, good) -> None:
    assert httpx2.get(f"{one.url}/metrics", timeout=10).status_code == 401
    opened = serving(tmp_path_factory, good, TURNOUT_SERVE_METRICS_OPEN="1")
    try:
        scrape(opened, headers={})
        assert httpx2.post(f"{opened.url}/v1/chat/completions", json={}, timeout=10).status_code == 401
    finally:
        assert opened.stop() == 0


def test_a_failover_is_counted_with_its_tokens_cost_and_times(one: Served) -> None:
    before = scrape(one)
    answer = chat(one)
    stream = chat(one, stream=True)
    assert answer.status_code == 200 and stream.status_code == 200
    usage = answer.json()["usage"]
    cost = (usage["prompt_tokens"] * 1 + usage["completion_tokens"] * 2) / 1e6
    assert float(answer.headers["x-turnout-cost"]) == pytest.approx(cost)
    assert "usage" not in stream.text  # asked for by turnout, not by this caller: not relayed
    after = scrape(one)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("turnout_requests_total", backend="good", model="test-model", endpoint="chat", outcome="ok") == 2
    assert grew("turnout_attempts_total", backend="dead", outcome="error") == 2
    assert grew("turnout_failovers_total", **{"from": "dead", "to": "good"}) == 2
    assert grew("turnout_tokens_total", backend="good", type="input") == 2 * usage["prompt_tokens"]
    assert grew("turnout_cost_usd_total", backend="good") == pytest.approx(2 * cost)
    assert grew("turnout_request_duration_seconds_count", backend="good") == 2
    assert grew("turnout_time_to_first_token_seconds_count", backend="good") == 1
    assert value(after, "turnout_breaker_open", backend="good") == 0
    assert value(after, "turnout_in_flight", backend="good") == 0
    one.wait_for(f"{answer.headers['x-turnout-cost']}")
    assert any("$" in line for line in one.access_lines("/v1/chat/completions"))


def priced(usage: Any) -> float:
    """The cost of ``usage`` at the good backend's set price: $1 in, $2 out per million tokens."""
    return (usage.prompt_tokens * 1 + usage.completion_tokens * 2) / 1e6


@pytest.mark.parametrize("usage_asked", [True, False])
def test_a_streams_cost_comes_as_an_sse_comment_before_done(one: Served, usage_asked: bool) -> None:
    sdk = openai.OpenAI(base_url=f"{one.url}/v1", api_key=SERVE_KEY, max_retries=0, timeout=10)
    whole = sdk.chat.completions.with_raw_response.create(model="test-model", messages=MESSAGES)  # the same tokens
    cost = whole.headers["x-turnout-cost"]
    usage = whole.parse().usage
    assert usage is not None and float(cost) == pytest.approx(priced(usage))
    logged = stream_lines(one, cost)

    options = {"stream_options": {"include_usage": True}} if usage_asked else {}
    chunks = list(sdk.chat.completions.create(model="test-model", messages=MESSAGES, stream=True, **options))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello there"
    assert [c.usage is not None for c in chunks][-1] is usage_asked  # what the caller asked for, no more
    with httpx2.stream(
        "POST",
        f"{one.url}/v1/chat/completions",
        headers=AUTH,
        timeout=10,
        json={"model": "test-model", "messages": MESSAGES, "stream": True, **options},
    ) as answer:
        assert "x-turnout-cost" not in answer.headers  # sent before the usage came
        lines = [line for line in answer.iter_lines() if line]
    assert lines[-2:] == [f": x-turnout-cost: {cost}", "data: [DONE]"]
    one.wait_until(lambda: stream_lines(one, cost) >= logged + 2)  # both streams' access lines, with the cost


def stream_lines(server: Served, cost: str) -> int:
    return sum(line.rstrip().endswith(f" ${cost} stream") for line in server.access_lines("/v1/chat/completions"))


def test_a_responses_streams_cost_comes_at_its_end(one: Served) -> None:
    sdk = openai.OpenAI(base_url=f"{one.url}/v1", api_key=SERVE_KEY, max_retries=0, timeout=10)
    events = list(sdk.responses.create(model="test-model", input="hello there", stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.usage is not None
    usage = events[-1].response.usage
    with httpx2.stream(
        "POST",
        f"{one.url}/v1/responses",
        headers=AUTH,
        timeout=10,
        json={"model": "test-model", "input": "hello there", "stream": True},
    ) as answer:
        lines = [line for line in answer.iter_lines() if line]
    assert '"response.completed"' in lines[-2]
    label, _, cost = lines[-1].rpartition(": ")
    assert label == ": x-turnout-cost"
    assert float(cost) == pytest.approx((usage.input_tokens * 1 + usage.output_tokens * 2) / 1e6)


def test_label_values_stay_bounded_under_random_model_names(one: Served) -> None:
    names = ["".join(random.choices(string.ascii_lowercase, k=12)) for _ in range(1000)]
    with httpx2.Client(headers=AUTH, timeout=10) as http, ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(
            pool.map(
                lambda name: (
                    http.post(f"{one.url}/v1/chat/completions", json={"model": name, "messages": MESSAGES}).status_code
                ),
                names,
            )
        )
    assert all(status >= 400 for status in statuses)  # no backend serves them...
    samples = scrape(one)
    models = {dict(key).get("model") for key in samples["turnout_requests_total"]}
    assert len(models) <= 52 and not set(names[-100:]) & models  # ...and they cannot grow the series


def test_with_two_workers_a_scrape_sums_every_worker(tmp_path_factory, good) -> None:
    served = serving(tmp_path_factory, good, "--workers", "2")
    try:
        for _ in range(20):  # a new connection each: the workers share them
            assert chat(served).status_code == 200
        for _ in range(4):  # whichever worker answers the scrape
            assert value(scrape(served), "turnout_requests_total", backend="good", outcome="ok") == 20
    finally:
        assert served.stop() == 0, served.log


async def test_with_redis_state_the_gauges_read_what_every_router_did(
    clients, make_openai_server, redis_server
) -> None:
    from tests.router.test_router import backend as routed_backend
    from tests.router.test_router import chat as routed_chat
    from turnout.state import RedisState
    from turnout.telemetry import instrument

    primary, backup = make_openai_server(), make_openai_server()
    primary.fail(Fault(status=500))
    knobs = dict(max_retries=0, allowed_fails=1, cooldown=60, rpm=100)
    failing, scraped = (
        clients(
            routed_backend(primary, "primary", **knobs),
            routed_backend(backup, "backup"),
            state=RedisState(redis_server.url, timeout=5),
        )
        for _ in range(2)
    )
    telemetry = instrument(scraped.router, prometheus=True)
    assert telemetry is not None and telemetry.prom is not None
    await routed_chat(failing)  # another router (process) opens the primary's breaker
    samples = parse(telemetry.prom.scrape(await scraped.router.shared_stats()).decode())
    assert value(samples, "turnout_breaker_open", backend="primary") == 1
    assert value(samples, "turnout_breaker_open", backend="backup") == 0
    assert value(samples, "turnout_rate_limit_remaining", backend="primary", limit="rpm") == 99  # the one request
