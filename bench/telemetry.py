"""Figure 14: what telemetry adds to a request: tracing on (the OpenTelemetry SDK with a no-op exporter) vs off.

Three turnout clients on one backend, taking turns request by request against the same server:
``off`` has no subscriber (what a user without turnout[otel]/turnout[cost] runs), ``idle`` has
telemetry subscribed but no provider configured (turnout[otel] installed, unused), ``on`` has
the SDK's ``TracerProvider`` (default sampler, a ``SimpleSpanProcessor`` into an exporter that
returns at once) and ``MeterProvider`` (an ``InMemoryMetricReader``, not collected during the
run) recording every span and metric. The "raw" column is ``off``. Wall time moves with the
machine's load; CPU time per request is what this process spent on it.

The floor row is the SDK alone doing what ``on`` asks of it per request, with no request and
nothing of turnout's: two spans (a request's, started with 3 attributes and ended with 11; an
attempt's under it, with 7) and three histogram records (duration, input and output tokens).
"""

from __future__ import annotations

import time
from typing import Any


async def fig_telemetry(srv: Any, n: Any, rep: Any) -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from bench import harness as h
    from turnout import Backend
    from turnout.telemetry import instrument

    class Nowhere(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(Nowhere()))
    metering = MeterProvider(metric_readers=[InMemoryMetricReader()])
    off = h.routed(Backend(h.adapter("a", srv.ok)))
    idle = h.routed(Backend(h.adapter("a", srv.ok)))
    on = h.routed(Backend(h.adapter("a", srv.ok)))
    idle_telemetry = instrument(idle.router)
    on_telemetry = instrument(on.router)
    assert idle_telemetry is not None and on_telemetry is not None and idle_telemetry.tracing is not None
    idle_telemetry.tracing.tracer = lambda: None  # type: ignore[method-assign]  # as if no provider were set
    idle_telemetry.metrics.instruments = lambda: None  # type: ignore[union-attr,method-assign]
    tracer = tracing.get_tracer("turnout")  # once: the SDK makes a new Tracer at each call
    on_telemetry.tracing.tracer = lambda: tracer  # type: ignore[method-assign]
    instruments = on_telemetry.metrics.instruments  # type: ignore[union-attr]
    original = metrics.get_meter_provider
    metrics.get_meter_provider = lambda: metering  # type: ignore[assignment]
    try:
        instruments()  # created on the SDK's meter provider, kept
    finally:
        metrics.get_meter_provider = original  # type: ignore[assignment]
    del trace  # the global providers stay untouched: later figures see none
    cpu: dict[str, list[float]] = {}
    s = await h.interleaved(
        {"off": h.chat_call(off), "idle": h.chat_call(idle), "on": h.chat_call(on)}, n.latency_rounds, n.warmup, cpu=cpu
    )
    for label, key in (("subscribed, no provider", "idle"), ("tracing + metrics on, no-op exporter", "on")):
        rep.add(
            "14",
            f"telemetry {label}: latency p50 (raw = off)",
            "µs",
            h.pct(s["off"], 0.5) * 1e6,
            h.pct(s[key], 0.5) * 1e6,
            kind="delta",
            target="≤ +30" if key == "on" else "",
            ok=(lambda d: d <= 30) if key == "on" else None,
        )
        rep.add(
            "14",
            f"telemetry {label}: CPU per request p50 (raw = off)",
            "µs",
            h.pct(cpu["off"], 0.5) * 1e6,
            h.pct(cpu[key], 0.5) * 1e6,
            kind="delta",
        )
    floor = _sdk_floor(tracer, metering.get_meter("floor"), n.latency_rounds, n.warmup)
    rep.add(
        "14",
        "the OpenTelemetry SDK alone, 2 spans + 3 histogram records (the floor of tracing + metrics on): CPU p50",
        "µs",
        None,
        h.pct(floor, 0.5) * 1e6,
        kind="value",
    )
    for client in (off, idle, on):
        await client.close()
    tracing.shutdown()
    metering.shutdown()


def _sdk_floor(tracer: Any, meter: Any, rounds: int, warmup: int) -> list[float]:
    """CPU seconds of each round of the SDK's own work for one traced request (see the module's doc)."""
    from opentelemetry import trace

    operation = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "bench-model"}
    backend = {
        "turnout.backend": "a",
        "gen_ai.provider.name": "openai_compat",
        "server.address": "127.0.0.1",
        "server.port": 8000,
    }
    start = {**operation, "turnout.endpoint": "chat"}
    attempt = {**operation, **backend, "turnout.attempt": 1}
    end = {
        **backend,
        "gen_ai.response.id": "chatcmpl-bench",
        "gen_ai.response.model": "bench-model",
        "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 1,
        "gen_ai.response.finish_reasons": ["stop"],
        "turnout.cost_usd": 0.0,
    }
    metric = {**operation, "gen_ai.response.model": "bench-model", **backend}
    del metric["turnout.backend"]
    tokens_in, tokens_out = {**metric, "gen_ai.token.type": "input"}, {**metric, "gen_ai.token.type": "output"}
    duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    client = trace.SpanKind.CLIENT
    out: list[float] = []
    for i in range(warmup + rounds):
        used = time.process_time()
        span = tracer.start_span("chat bench-model", kind=client, attributes=start)
        child = tracer.start_span("chat a", context=trace.set_span_in_context(span), kind=client, attributes=attempt)
        child.end()
        span.set_attributes(end)
        span.end()
        duration.record(0.0015, metric)
        tokens.record(5, tokens_in)
        tokens.record(1, tokens_out)
        if i >= warmup:
            out.append(time.process_time() - used)
    return out
