"""Spans and GenAI metrics through the real client against loopback servers, read with the OpenTelemetry SDK's
in-memory exporter and metric reader; and each answer's cost.

The clients are built as users build them (settings), so telemetry is subscribed as it is for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
from opentelemetry import metrics, trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

import turnout  # noqa: E402
from tests.router.test_router import MSG, sleeps  # noqa: E402,F401  (backoff's waits, skipped)
from tests.settings.test_settings import env, isolated  # noqa: E402,F401  (autouse: no TURNOUT_ from the shell, no .env)
from tests.support.loopback import Fault  # noqa: E402

KEY = "sk-test.telemetry.secret-0123456789"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The application's tracer provider, exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    yield exporter
    provider.shutdown()


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    """The application's meter provider, read in memory."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: provider)
    yield reader
    provider.shutdown()


def client_for(*servers: tuple[str, str], provider: str = "vllm", **backend: Any) -> turnout.AsyncOpenAI:
    """A client over ``(name, base_url)`` backends, in that order, configured as settings."""
    return turnout.AsyncOpenAI(
        backends=[name for name, _ in servers],
        max_retries=0,
        backend={name: {"provider": provider, "base_url": url, **backend} for name, url in servers},
    )


def by_name(exported: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exported:
        found.setdefault(span.name, []).append(span)
    return found


def children(exported: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[ReadableSpan]:
    return sorted(
        (s for s in exported if s.parent is not None and s.parent.span_id == parent.context.span_id),
        key=lambda s: s.start_time,
    )


# -- traces --------------------------------------------------------------------------


async def test_a_failover_is_one_request_span_with_an_attempt_span_per_backend(
    spans, openai_server, free_port, sleeps
) -> None:
    client = client_for(("dead", f"http://127.0.0.1:{free_port}/v1"), ("live", openai_server.base_url), api_key=KEY)
    answer = await client.chat.completions.create(model="test-model", messages=MSG)
    await client.close()
    exported = spans.get_finished_spans()
    request = by_name(exported)["chat test-model"]
    assert len(request) == 1
    request_span = request[0]
    dead, live = children(exported, request_span)
    assert dead.name == "chat dead" and live.name == "chat live"
    assert dead.status.status_code is StatusCode.ERROR and dead.attributes["error.type"] == "APIConnectionError"
    assert dead.attributes["server.port"] == free_port and dead.attributes["turnout.attempt"] == 1
    assert live.status.status_code is StatusCode.UNSET and "error.type" not in live.attributes
    assert live.attributes["server.address"] == "127.0.0.1" and live.attributes["gen_ai.provider.name"] == "vllm"
    attrs = request_span.attributes
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.request.model"] == "test-model"
    assert attrs["turnout.backend"] == "live" and attrs["gen_ai.response.id"] == answer.id
    assert attrs["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert tuple(attrs["gen_ai.response.finish_reasons"]) == ("stop",)
    assert (
        request_span.start_time
        <= dead.start_time
        < dead.end_time
        <= live.start_time
        < live.end_time
        <= request_span.end_time
    )
    assert [e.name for e in request_span.events] == ["turnout.failover"]
    assert request_span.events[0].attributes == {"turnout.failover.from": "dead", "turnout.failover.to": "live"}
    text = repr([dict(s.attributes) for s in exported]) + repr([e.attributes for s in exported for e in s.events])
    assert KEY not in text and "hi" not in text  # no key, and no prompt unless opted in


async def test_a_stream_span_ends_with_the_stream_with_its_first_chunk_time_and_usage(spans, openai_server) -> None:
    openai_server.stream_chunks = 4
    client = client_for(("live", openai_server.base_url))
    stream = await client.chat.completions.create(model="test-model", messages=MSG, stream=True)
    assert spans.get_finished_spans() == ()  # still open: the stream has not ended
    chunks = [c async for c in stream]
    await client.close()
    request_span = by_name(spans.get_finished_spans())["chat test-model"][0]
    attrs = request_span.attributes
    assert 0 < attrs["gen_ai.response.time_to_first_chunk"] < (request_span.end_time - request_span.start_time) / 1e9
    assert attrs["gen_ai.usage.output_tokens"] > 0  # asked for by turnout...
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)  # ...and taken back out
    assert tuple(attrs["gen_ai.response.finish_reasons"]) == ("stop",)
    assert openai_server.chat_requests()[-1].json["stream_options"] == {"include_usage": True}


async def test_a_stream_closed_early_still_ends_its_spans(spans, openai_server) -> None:
    openai_server.stream_chunks = 6
    client = client_for(("live", openai_server.base_url))
    stream = await client.chat.completions.create(model="test-model", messages=MSG, stream=True)
    async for _ in stream:
        break
    await stream.close()
    await client.close()
    exported = by_name(spans.get_finished_spans())
    assert exported["chat test-model"][0].attributes["turnout.stream.closed"] is True
    assert len(exported["chat live"]) == 1


async def test_a_broken_stream_ends_its_spans_with_an_error(spans, openai_server) -> None:
    openai_server.stream_chunks = 6
    openai_server.fail(Fault(cut_after=3))
    client = client_for(("live", openai_server.base_url))
    stream = await client.chat.completions.create(model="test-model", messages=MSG, stream=True)
    with pytest.raises(turnout.BrokenStreamError):
        async for _ in stream:
            pass
    await client.close()
    exported = by_name(spans.get_finished_spans())
    request_span = exported["chat test-model"][0]
    assert request_span.status.status_code is StatusCode.ERROR
    assert request_span.attributes["error.type"] == "BrokenStreamError"


async def test_embeddings_are_an_embeddings_span(spans, openai_server) -> None:
    client = client_for(("live", openai_server.base_url))
    await client.embeddings.create(model="test-model", input="hello")
    await client.close()
    request_span = by_name(spans.get_finished_spans())["embeddings test-model"][0]
    assert request_span.attributes["gen_ai.operation.name"] == "embeddings"
    assert request_span.attributes["gen_ai.usage.input_tokens"] > 0


async def test_concurrent_requests_keep_their_spans_apart(spans, make_openai_server) -> None:
    a, b = make_openai_server(), make_openai_server()
    a.fail(Fault(status=503, delay=0.02))
    client = client_for(("a", a.base_url), ("b", b.base_url))
    answers = await asyncio.gather(
        *(
            client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": f"n{i}"}])
            for i in range(6)
        )
    )
    await client.close()
    exported = spans.get_finished_spans()
    requests = by_name(exported)["chat test-model"]
    assert sorted(s.attributes["gen_ai.response.id"] for s in requests) == sorted(x.id for x in answers)
    for request_span in requests:
        assert [s.name for s in children(exported, request_span)] == ["chat a", "chat b"]
        assert all(s.context.trace_id == request_span.context.trace_id for s in children(exported, request_span))


async def test_spans_nest_under_the_callers_span(spans, openai_server) -> None:
    client = client_for(("live", openai_server.base_url))
    tracer = trace.get_tracer_provider().get_tracer("app")
    with tracer.start_as_current_span("handler") as handler:
        await client.chat.completions.create(model="test-model", messages=MSG)
    await client.close()
    request_span = by_name(spans.get_finished_spans())["chat test-model"][0]
    assert request_span.parent is not None and request_span.parent.span_id == handler.get_span_context().span_id


async def test_without_a_configured_provider_no_span_is_started(openai_server, monkeypatch) -> None:
    started: list[str] = []
    noop = trace.NoOpTracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: noop)
    monkeypatch.setattr(trace.NoOpTracer, "start_span", lambda self, name, *a, **k: started.append(name))
    client = client_for(("live", openai_server.base_url))
    await client.chat.completions.create(model="test-model", messages=MSG)
    await client.close()
    assert started == []


async def test_prompts_are_recorded_only_when_opted_in(spans, openai_server, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    client = client_for(("live", openai_server.base_url))
    await client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "the prompt"}])
    await client.close()
    request_span = by_name(spans.get_finished_spans())["chat test-model"][0]
    assert "the prompt" in request_span.attributes["gen_ai.input.messages"]
    assert "the prompt" in request_span.attributes["gen_ai.output.messages"]  # the loopback server echoes it


# -- metrics -------------------------------------------------------------------------


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


async def test_the_genai_client_metrics_are_recorded_with_their_buckets(
    reader, openai_server, free_port, sleeps
) -> None:
    client = client_for(("dead", f"http://127.0.0.1:{free_port}/v1"), ("live", openai_server.base_url))
    answer = await client.chat.completions.create(model="test-model", messages=MSG)
    stream = await client.chat.completions.create(model="test-model", messages=MSG, stream=True)
    [c async for c in stream]
    await client.close()
    found = points(reader)
    durations = found["gen_ai.client.operation.duration"]
    assert [p.count for p in durations] == [2]  # one per request, not per attempt
    assert list(durations[0].explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    assert durations[0].attributes["gen_ai.operation.name"] == "chat"
    assert durations[0].attributes["server.address"] == "127.0.0.1"
    tokens = {p.attributes["gen_ai.token.type"]: p for p in found["gen_ai.client.token.usage"]}
    assert tokens["input"].sum == 2 * answer.usage.prompt_tokens and tokens["input"].count == 2
    assert list(tokens["output"].explicit_bounds)[:3] == [1, 4, 16]
    assert [p.count for p in found["gen_ai.client.operation.time_to_first_chunk"]] == [1]


# -- cost ----------------------------------------------------------------------------


async def test_a_known_models_cost_is_genai_prices_own(make_openai_server) -> None:
    genai_prices = pytest.importorskip("genai_prices")
    server = make_openai_server(models=["gpt-4o-mini"])
    client = client_for(("openai", server.base_url), provider="openai", api_key=KEY)
    answer = await client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    await client.close()
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=answer.usage.prompt_tokens, output_tokens=answer.usage.completion_tokens),
        "gpt-4o-mini",
        provider_id="openai",
    ).total_price
    assert turnout.cost_of(answer) == pytest.approx(float(expected)) and expected > 0
    assert client.router.stats()["openai"]["cost_usd"] == pytest.approx(float(expected))


async def test_a_configured_price_wins(openai_server) -> None:
    client = client_for(("box", openai_server.base_url), provider="openai_compat", price="test-model=2/10;*=99/99")
    answer = await client.chat.completions.create(model="test-model", messages=MSG)
    await client.close()
    usage = answer.usage
    assert turnout.cost_of(answer) == pytest.approx((usage.prompt_tokens * 2 + usage.completion_tokens * 10) / 1e6)


async def test_a_local_server_costs_nothing(openai_server) -> None:
    client = client_for(("local", openai_server.base_url), provider="llamacpp")
    answer = await client.chat.completions.create(model="test-model", messages=MSG)
    await client.close()
    assert turnout.cost_of(answer) == 0.0


async def test_an_unknown_price_is_none_and_said_once(openai_server, caplog) -> None:
    client = client_for(("box", openai_server.base_url), provider="openai_compat")
    with caplog.at_level(logging.INFO, logger="turnout"):
        first = await client.chat.completions.create(model="test-model", messages=MSG)
        await client.chat.completions.create(model="test-model", messages=MSG)
    await client.close()
    assert turnout.cost_of(first) is None
    assert client.router.stats()["box"]["cost_usd"] == 0 and client.router.stats()["box"]["cost_unknown"] == 2
    assert caplog.text.count("no price known for model test-model on backend box") == 1
    assert "TURNOUT_BACKEND__BOX__PRICE" in caplog.text


@pytest.mark.parametrize("asked", [False, True])
async def test_a_streams_cost_whether_or_not_the_caller_asked_for_usage(openai_server, asked) -> None:
    openai_server.stream_chunks = 3
    client = client_for(("box", openai_server.base_url), provider="openai_compat", price="1,1")
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if asked else {}
    stream = await client.chat.completions.create(model="test-model", messages=MSG, stream=True, **extra)
    chunks = [c async for c in stream]
    await client.close()
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == (1 if asked else 0)  # the caller sees what it asked for
    cost = turnout.cost_of(stream)
    assert cost is not None and cost > 0
    if asked:
        u = usage_chunks[0].usage
        assert cost == pytest.approx((u.prompt_tokens + u.completion_tokens) / 1e6)
        assert turnout.cost_of(usage_chunks[0]) == pytest.approx(cost)


def test_the_sync_client_reads_the_cost_too(openai_server) -> None:
    client = turnout.OpenAI(
        backends=["box"],
        backend={"box": {"provider": "openai_compat", "price": "1,1", "base_url": openai_server.base_url}},
    )
    answer = client.chat.completions.create(model="test-model", messages=MSG)
    client.close()
    assert turnout.cost_of(answer) == pytest.approx((answer.usage.prompt_tokens + answer.usage.completion_tokens) / 1e6)


def test_a_bad_price_names_the_variable(monkeypatch) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="box", TURNOUT_BACKEND__BOX__PROVIDER="vllm", TURNOUT_BACKEND__BOX__PRICE="cheap")
    with pytest.raises(turnout.ConfigError, match="TURNOUT_BACKEND__BOX__PRICE.*input,output"):
        turnout.AsyncOpenAI()


# -- other backends and APIs ------------------------------------------------------------


async def test_ollama_answers_and_streams_are_spans_with_usage(spans, ollama_server, monkeypatch) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    client = client_for(("local", ollama_server.host), provider="ollama")
    answer = await client.chat.completions.create(model="test-model", messages=MSG)
    stream = await client.chat.completions.create(model="test-model", messages=MSG, stream=True)
    chunks = [c async for c in stream]
    await client.close()
    whole, streamed = sorted(by_name(spans.get_finished_spans())["chat test-model"], key=lambda s: s.start_time)
    assert whole.attributes["gen_ai.provider.name"] == "ollama"
    assert whole.attributes["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert whole.attributes["turnout.cost_usd"] == 0.0 and turnout.cost_of(answer) == 0.0  # a local server
    assert "gen_ai.response.time_to_first_chunk" in streamed.attributes
    assert all(c.usage is None for c in chunks)


async def test_the_responses_bridge_is_one_request_span(spans, make_openai_server) -> None:
    server = make_openai_server(disabled={"responses"})  # chat only: answered through the bridge
    client = client_for(("chatty", server.base_url), provider="openai_compat", price="1,1")
    answer = await client.responses.create(model="test-model", input="hello")
    await client.close()
    exported = spans.get_finished_spans()
    request_span = by_name(exported)["chat test-model"][0]
    assert request_span.attributes["turnout.endpoint"] == "responses"
    assert [s.name for s in children(exported, request_span)][-1] == "chat chatty"
    assert request_span.attributes["gen_ai.usage.input_tokens"] == answer.usage.input_tokens
    assert turnout.cost_of(answer) == pytest.approx((answer.usage.input_tokens + answer.usage.output_tokens) / 1e6)


async def test_a_bridged_responses_stream_is_priced_from_its_completed_event(spans, make_openai_server) -> None:
    server = make_openai_server(disabled={"responses"})
    client = client_for(("chatty", server.base_url), provider="openai_compat", price="1,1")
    stream = await client.responses.create(model="test-model", input="hello", stream=True)
    events = [e async for e in stream]
    await client.close()
    usage = events[-1].response.usage
    assert events[-1].type == "response.completed"
    assert turnout.cost_of(stream) == pytest.approx((usage.input_tokens + usage.output_tokens) / 1e6)
    request_span = by_name(spans.get_finished_spans())["chat test-model"][0]
    assert request_span.attributes["gen_ai.usage.output_tokens"] == usage.output_tokens


async def test_turnouts_spans_sit_beneath_the_official_openai_instrumentation(spans, reader, openai_server) -> None:
    instrumentor_module = pytest.importorskip("opentelemetry.instrumentation.openai_v2")
    provider = trace.get_tracer_provider()
    instrumentor = instrumentor_module.OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider, meter_provider=metrics.get_meter_provider())
    try:
        client = client_for(("live", openai_server.base_url))
        await client.chat.completions.create(model="test-model", messages=MSG)
        await client.close()
    finally:
        instrumentor.uninstrument()
    exported = spans.get_finished_spans()
    theirs = [s for s in exported if s.instrumentation_scope.name != "turnout" and s.name == "chat test-model"]
    ours = [s for s in exported if s.instrumentation_scope.name == "turnout" and s.name == "chat test-model"]
    assert len(theirs) == 1 and len(ours) == 1
    assert ours[0].parent is not None and ours[0].parent.span_id == theirs[0].context.span_id
    data = reader.get_metrics_data()
    recorded = [
        (scope.scope.name, point.count)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "gen_ai.client.operation.duration"
        for point in metric.data.data_points
    ]
    assert recorded and all(name != "turnout" for name, _ in recorded)  # counted once: by the outer one


@pytest.mark.parametrize("stream", [False, True])
async def test_a_hedges_loser_is_no_longer_in_flight(make_openai_server, stream) -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    from turnout.telemetry import instrument

    slow, fast = make_openai_server(), make_openai_server()
    slow.latency = 3.0  # the first backend answers late: the hedge on the second wins, the first is cancelled
    client = turnout.AsyncOpenAI(
        backends=["slow", "fast"],
        max_retries=0,
        hedge_after="0.05",
        backend={
            "slow": {"provider": "openai_compat", "base_url": slow.base_url, "priority": 0},
            "fast": {"provider": "openai_compat", "base_url": fast.base_url, "priority": 1},
        },
    )
    telemetry = instrument(client.router, prometheus=True)
    assert telemetry is not None and telemetry.prom is not None
    answer = await client.chat.completions.create(model="test-model", messages=MSG, stream=stream)
    if stream:
        async for _ in answer:
            pass
    assert turnout.served_by(answer) == "fast"
    in_flight = {
        s.labels["backend"]: s.value
        for family in text_string_to_metric_families(telemetry.prom.scrape(client.router.stats()).decode())
        for s in family.samples
        if s.name == "turnout_in_flight"
    }
    await client.close()
    assert in_flight == {"slow": 0, "fast": 0}
