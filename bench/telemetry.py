"""Figure 14: what telemetry adds to a request: tracing on (the OpenTelemetry SDK with a no-op exporter) vs off.

Three turnout clients on one backend, taking turns request by request against the same server:
``off`` has no subscriber (what a user without turnout[otel]/turnout[cost] runs), ``idle`` has
telemetry subscribed but no provider configured (turnout[otel] installed, unused), ``on`` has
the SDK's tracer and meter providers recording every span and metric, exported nowhere. The
"raw" column is ``off``. Wall time moves with the machine's load; CPU time per request is what
this process spent on it.
"""

from __future__ import annotations

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
    on_telemetry.tracing.tracer = lambda: tracing.get_tracer("turnout")  # type: ignore[method-assign]
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
    for client in (off, idle, on):
        await client.close()
    tracing.shutdown()
    metering.shutdown()
