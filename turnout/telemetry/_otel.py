"""OpenTelemetry spans and GenAI client metrics, by the GenAI semantic conventions, through opentelemetry-api only.

Nothing is recorded unless the application configured a tracer (meter) provider: turnout never sets
up an exporter. Request and response text is recorded only when
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is true, as the conventions' instrumentations do.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Optional

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["Tracing", "GenAIMetrics", "epoch_ns", "capture_content"]

_SCOPE = "turnout"
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
_OFFSET_NS = time.time_ns() - time.monotonic_ns()


def epoch_ns(monotonic: float) -> int:
    """A router event's time (``time.monotonic()``) as the epoch nanoseconds spans take."""
    return int(monotonic * 1e9) + _OFFSET_NS


def capture_content() -> bool:
    return os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower() in ("true", "1")


def _configured(provider: object) -> bool:
    return type(provider).__name__ not in (
        "ProxyTracerProvider",
        "NoOpTracerProvider",
        "_ProxyMeterProvider",
        "NoOpMeterProvider",
    )


class Tracing:
    """Spans: one per request (``chat gpt-4o``), one child per attempt on a backend."""

    def __init__(self) -> None:
        self._provider: object = None
        self._tracer: Optional[trace.Tracer] = None
        self.capture = capture_content()

    def tracer(self) -> Optional[trace.Tracer]:
        """The tracer of the application's provider, or ``None`` while it has configured none."""
        provider = trace.get_tracer_provider()
        if provider is not self._provider:
            self._provider = provider
            self._tracer = provider.get_tracer(_SCOPE) if _configured(provider) else None
        return self._tracer

    @staticmethod
    def start(tracer: trace.Tracer, name: str, start: float, attributes: dict[str, Any], parent: Any = None) -> Any:
        """A span started on ``tracer`` (under ``parent``, a context), or ``None`` where the sampler dropped it:
        nothing is built for a span that records nothing."""
        span = tracer.start_span(
            name, context=parent, kind=SpanKind.CLIENT, attributes=attributes, start_time=epoch_ns(start)
        )
        return span if span.is_recording() else None

    @staticmethod
    def context_of(span: Any) -> Any:
        """The context a child of ``span`` starts in."""
        return trace.set_span_in_context(span)

    @staticmethod
    def end(span: Any, end: float, error: Optional[str] = None, message: Optional[str] = None) -> None:
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, message))
        span.end(end_time=epoch_ns(end))

    @staticmethod
    def inside_genai_span() -> bool:
        """Is the caller's current span another instrumentation's GenAI operation (openai-v2's, logfire's)? Then
        that one measures this operation: turnout's spans nest beneath it, its metrics are not recorded twice."""
        attributes = getattr(trace.get_current_span(), "attributes", None)
        return attributes is not None and "gen_ai.operation.name" in attributes

    @staticmethod
    def note(span: Any, name: str, attributes: dict[str, Any]) -> None:
        if span is not None:
            span.add_event(name, {k: v for k, v in attributes.items() if v is not None})

    @staticmethod
    def messages(body: dict[str, Any]) -> Optional[str]:
        """The request's messages (opt-in only), as the conventions' ``gen_ai.input.messages`` JSON."""
        messages = body.get("messages", body.get("input"))
        return json.dumps(messages, default=str) if messages is not None else None

    @staticmethod
    def answer_messages(content: bytes) -> str:
        """The answer's messages (opt-in only): each choice's message, or a Response's output items."""
        try:
            body = json.loads(content)
        except ValueError:
            return "[]"
        if not isinstance(body, dict):
            return "[]"
        output = [c.get("message") for c in body.get("choices") or () if isinstance(c, dict)] or body.get("output")
        return json.dumps(output or [], default=str)


class GenAIMetrics:
    """``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage`` and, for streams,
    ``gen_ai.client.operation.time_to_first_chunk``, on the application's meter provider."""

    def __init__(self) -> None:
        self._provider: object = None
        self._instruments: Optional[tuple[Any, Any, Any]] = None

    def instruments(self) -> Optional[tuple[Any, Any, Any]]:
        provider = metrics.get_meter_provider()
        if provider is not self._provider:
            self._provider = provider
            self._instruments = None
            if _configured(provider):
                meter = provider.get_meter(_SCOPE)
                self._instruments = (
                    meter.create_histogram(
                        "gen_ai.client.operation.duration",
                        unit="s",
                        description="GenAI operation duration.",
                        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
                    ),
                    meter.create_histogram(
                        "gen_ai.client.token.usage",
                        unit="{token}",
                        description="Number of input and output tokens used.",
                        explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
                    ),
                    meter.create_histogram(
                        "gen_ai.client.operation.time_to_first_chunk",
                        unit="s",
                        description="Time to receive the first chunk of a streamed answer.",
                        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
                    ),
                )
        return self._instruments

    def record(
        self,
        instruments: tuple[Any, Any, Any],
        attributes: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
        duration: float,
        first: Optional[float],
        input_tokens: Optional[int],
        output_tokens: Optional[int],
    ) -> None:
        """One operation; ``attributes``: the operation's, then with ``gen_ai.token.type`` input and output."""
        duration_h, tokens_h, first_h = instruments
        duration_h.record(duration, attributes[0])
        if first is not None:
            first_h.record(first, attributes[0])
        if input_tokens is not None:
            tokens_h.record(input_tokens, attributes[1])
        if output_tokens is not None:
            tokens_h.record(output_tokens, attributes[2])
