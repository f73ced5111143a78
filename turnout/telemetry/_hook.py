"""The subscriber to a router's events that turns them into spans, metrics and cost.

It measures nothing itself: every time comes from the router's events (``turnout.router._events``).
A stream's answer is read on its way to the caller for its usage and finish reasons; where the
caller did not ask for usage, it is asked for and its chunk taken back out.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

import httpx2

from ..adapters import Adapter
from ..router import RequestInfo, Router, RouterEvent
from . import COST_HEADER
from ._cost import PROVIDER_IDS, Price, Pricer
from ._facts import Facts, StreamWatch, facts_of

if TYPE_CHECKING:
    from ._otel import Tracing

__all__ = ["Telemetry", "OTHER"]

log = logging.getLogger("turnout")


OTHER = "other"
"""The model label of a model name outside the configured ones (past the first few seen)."""

_KEY = "turnout.telemetry"
_MAX_FREE_MODELS = 50
_MAX_METRIC_ATTRIBUTES = 4096
_OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings", "responses": "chat"}
_SEMCONV_PROVIDERS = {
    "openai": "openai",
    "groq": "groq",
    "xai": "x_ai",
    "deepseek": "deepseek",
    "mistral": "mistral_ai",
    "perplexity": "perplexity",
    "gemini": "gcp.gemini",
}
_STREAM_USAGE = ("chat", "completions")


@dataclass(slots=True)
class _Request:
    span: Any = None
    """The request's span, while it records (``None``: no tracer, or sampled out)."""
    tracer: Any = None
    instruments: Optional[tuple[Any, Any, Any]] = None
    """The GenAI metrics' instruments, where a meter provider was configured when the request came."""
    parent: Any = None
    """The context its attempts' spans start in, made at the first."""
    common: dict[str, Any] = field(default_factory=dict)
    """Attributes of the request's span and each attempt's: the operation and the requested model."""
    attempt_span: Any = None
    attempt_backend: Optional[str] = None
    in_flight: list[str] = field(default_factory=list)
    """The backends of its attempts under way (two while a hedge races the first)."""
    first: Optional[float] = None
    facts: Facts = field(default_factory=Facts)
    strip_usage: bool = False
    cost: Optional[float] = None
    backend: str = ""
    response: Optional[httpx2.Response] = None
    watching: bool = False
    ended: Optional[RouterEvent] = None
    nested: bool = False
    """Inside another instrumentation's GenAI span, which records the GenAI metrics of this operation."""


class Telemetry:
    """What a router's events become: OpenTelemetry spans and metrics (when the application configured
    providers), Prometheus metrics (``prom``), and each answer's cost (in ``stats()`` as ``cost_usd``)."""

    def __init__(
        self,
        router: Router,
        *,
        prices: Mapping[str, Mapping[str, Price]] | None = None,
        prom: Any = None,
        otel: bool = True,
    ) -> None:
        self._backend_attributes = {b.name: _backend_attributes(b.name, b.adapter) for b in router.backends}
        """Each backend's constant span and metric attributes (name, provider, address, port), built once."""
        self._metric_attributes: dict[tuple[Any, ...], tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {}
        presets = {b.name: b.adapter.provider for b in router.backends}
        local = {b.name: bool(getattr(getattr(b.adapter, "preset", None), "local", False)) for b in router.backends}
        self.pricer = Pricer(prices or {}, local, {n: PROVIDER_IDS.get(p) for n, p in presets.items()})
        self._known_models = {m for b in router.backends for pair in (b.models or {}).items() for m in pair}
        self._free_models: set[str] = set()
        self.costs: dict[str, float] = {}
        self.unpriced: dict[str, int] = {}
        self.prom = prom
        self.tracing = self.metrics = None
        if otel:
            try:
                from ._otel import GenAIMetrics, Tracing
            except ImportError:  # turnout[otel] not installed
                pass
            else:
                self.tracing, self.metrics = Tracing(), GenAIMetrics()
        self._on: dict[str, Callable[[RouterEvent, _Request], None]] = {
            "attempt": self._attempt,
            "attempt_failed": self._attempt_failed,
            "success": self._answer,
            "retry": self._retry,
            "failover": self._failover,
            "skipped": self._skipped,
            "done": self._done,
            "stream_end": self._stream_end,
        }

    def stats(self, backend: str) -> dict[str, Any]:
        """This backend's cost so far (USD, answers with a known price) and answers whose price is unknown."""
        return {"cost_usd": round(self.costs.get(backend, 0.0), 9), "cost_unknown": self.unpriced.get(backend, 0)}

    async def __call__(self, event: RouterEvent) -> None:
        info = event.request
        if info is None:
            return
        if event.kind == "request":
            self._request(event, info)
            return
        state = info.notes.get(_KEY)
        handler = self._on.get(event.kind)
        if state is not None and handler is not None:
            handler(event, state)

    # -- the request ------------------------------------------------------------------
    def _request(self, event: RouterEvent, info: RequestInfo) -> None:
        state = info.notes[_KEY] = _Request()
        if info.stream and info.endpoint in _STREAM_USAGE:
            options = info.body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage")):
                info.change("stream_options", {**(options if isinstance(options, dict) else {}), "include_usage": True})
                state.strip_usage = True
        tracing = self.tracing
        if tracing is None:
            return
        tracer = state.tracer = tracing.tracer()
        state.instruments = self.metrics.instruments() if self.metrics is not None else None
        if tracer is None and state.instruments is None:
            return  # no provider configured: nothing to record
        state.nested = tracing.inside_genai_span()
        operation = _OPERATIONS.get(info.endpoint, info.endpoint)
        common = state.common = {"gen_ai.operation.name": operation}
        if info.model:
            common["gen_ai.request.model"] = info.model
        if tracer is not None:
            attributes = {**common, "turnout.endpoint": info.endpoint}
            if tracing.capture and info.body:
                attributes["gen_ai.input.messages"] = tracing.messages(info.body)
            state.span = tracing.start(
                tracer, f"{operation} {info.model}" if info.model else operation, info.start, attributes
            )

    def _attempt(self, event: RouterEvent, state: _Request) -> None:
        if self.prom is not None:
            self.prom.in_flight.labels(event.backend).inc()
            state.in_flight.append(event.backend)

    def _attempt_failed(self, event: RouterEvent, state: _Request) -> None:
        self._landed(state, event.backend)
        if self.prom is not None:
            self.prom.attempts.labels(event.backend, "error").inc()
        if state.span is not None and event.end is not None:
            span = self._attempt_span(event, state)
            if span is not None:
                self._tracing.end(span, event.end, _error_type(event.error), type(event.error).__name__)

    def _answer(self, event: RouterEvent, state: _Request) -> None:
        if self.prom is not None:
            self.prom.attempts.labels(event.backend, "ok").inc()
        if event.end is not None:
            self._landed(state, event.backend)
        elif event.first is not None and event.start is not None:
            state.first = event.first
        if state.span is not None:
            span = self._attempt_span(event, state)
            if span is None:
                return
            if event.end is not None:
                self._tracing.end(span, event.end)  # the answer's facts go on the request's span
            else:
                if event.first is not None and event.start is not None:
                    span.set_attribute("gen_ai.response.time_to_first_chunk", event.first - event.start)
                state.attempt_span = span

    def _retry(self, event: RouterEvent, state: _Request) -> None:
        if self.prom is not None:
            self.prom.retries.labels(event.backend).inc()
        if state.span is not None:
            self._tracing.note(
                state.span,
                "turnout.retry",
                {
                    "turnout.backend": event.backend,
                    "turnout.retry.wait": event.wait,
                    "error.type": _error_type(event.error),
                },
            )

    def _failover(self, event: RouterEvent, state: _Request) -> None:
        if self.prom is not None and event.to is not None:
            self.prom.failovers.labels(event.backend, event.to).inc()
        if state.span is not None:
            self._tracing.note(
                state.span,
                "turnout.failover",
                {"turnout.failover.from": event.backend, "turnout.failover.to": event.to},
            )

    def _skipped(self, event: RouterEvent, state: _Request) -> None:
        if state.span is not None:
            self._tracing.note(
                state.span,
                "turnout.skipped",
                {"turnout.backend": event.backend, "turnout.skipped.reason": event.reason},
            )

    def _done(self, event: RouterEvent, state: _Request) -> None:
        info = event.request
        assert info is not None and event.end is not None
        state.backend = event.backend
        response = event.response
        if event.error is not None or response is None:
            self._landed(state)  # an attempt cancelled under way tells no attempt_failed
            self._finish(info, state, event.end, error=event.error)
            return
        state.response = response
        self._landed(state, keep=event.backend if info.stream else None)  # a stream is under way until its end
        if not info.stream:
            state.facts = facts_of(response)
            if state.span is not None and self._tracing.capture:  # opted in: the answer's messages too
                state.span.set_attribute("gen_ai.output.messages", self._tracing.answer_messages(response.content))
            self._priced(info, state)
            self._finish(info, state, event.end)
            return
        if response.headers.get("content-encoding") in (None, "identity"):  # read on its way
            state.watching = True
            response.stream = StreamWatch(
                response.stream,  # type: ignore[arg-type]
                state.facts,
                strip_usage=state.strip_usage,
                on_usage=lambda: self._priced(info, state),
                on_end=lambda: self._watched(state),
            )

    def _watched(self, state: _Request) -> None:
        """The caller has read the whole stream (a bridged one's last event comes after its backend's end)."""
        state.watching = False
        if state.ended is not None:
            self._stream_end(state.ended, state)

    def _stream_end(self, event: RouterEvent, state: _Request) -> None:
        """The router's end of the stream; summed up once the caller has read it too."""
        if state.watching:
            state.ended = event
            return
        info = event.request
        assert info is not None and event.end is not None
        self._landed(state, event.backend)
        if state.attempt_span is not None:
            self._tracing.end(
                state.attempt_span, event.end, _error_type(event.error) if event.reason == "broken" else None
            )
            state.attempt_span = None
        self._finish(
            info,
            state,
            event.end,
            error=event.error if event.reason == "broken" else None,
            closed=event.reason == "closed",
        )

    # -- helpers ------------------------------------------------------------------------
    def _landed(self, state: _Request, backend: Optional[str] = None, *, keep: Optional[str] = None) -> None:
        """An attempt on ``backend`` is no longer under way; ``None``: none of the request's is but one on
        ``keep`` (an attempt cancelled under way, a hedge's loser, tells no event of its own)."""
        if self.prom is None:
            return
        if backend is None:
            gone, state.in_flight = state.in_flight, []
            if keep is not None and keep in gone:
                gone.remove(keep)
                state.in_flight.append(keep)
        elif backend in state.in_flight:
            state.in_flight.remove(backend)
            gone = [backend]
        else:
            return
        for name in gone:
            self.prom.in_flight.labels(name).dec()

    @property
    def _tracing(self) -> Tracing:
        """Only asked where a request has a span, which only tracing makes."""
        assert self.tracing is not None
        return self.tracing

    def _attempt_span(self, event: RouterEvent, state: _Request) -> Any:
        """The attempt's span under its request's, started at the attempt's start (``None``: sampled out)."""
        if event.start is None:
            return None
        if state.parent is None:
            state.parent = self._tracing.context_of(state.span)
        attributes = {
            **state.common,
            **self._backend_attributes.get(event.backend, {}),
            "turnout.attempt": event.attempt,
        }
        name = f"{state.common['gen_ai.operation.name']} {event.backend}"
        return self._tracing.start(state.tracer, name, event.start, attributes, state.parent)

    def _priced(self, info: RequestInfo, state: _Request) -> None:
        """The answer's cost, once its usage is in: on its response's header, in the totals. An answer that
        reports no usage (a model list, an image) has no cost to speak of, known or not."""
        if state.facts.usage is None:
            return
        cost = self.pricer.cost(state.backend, state.facts.model or info.model, info.endpoint, state.facts)
        state.cost = cost
        if state.response is not None:
            said = "unknown" if cost is None else f"{cost:.10f}".rstrip("0").rstrip(".")
            state.response.headers[COST_HEADER] = said
            state.response.extensions[COST_HEADER] = said  # read for each chunk the SDK parses: a dict, not headers
        if cost is None:
            self.unpriced[state.backend] = self.unpriced.get(state.backend, 0) + 1
        else:
            self.costs[state.backend] = self.costs.get(state.backend, 0.0) + cost

    def _model_label(self, model: Optional[str]) -> str:
        """A configured model name, or one of the first few others seen; past them, ``other``."""
        if not model:
            return ""
        if model in self._known_models or model in self._free_models:
            return model
        if len(self._free_models) < _MAX_FREE_MODELS and not self._known_models:
            self._free_models.add(model)
            return model
        return OTHER

    def _finish(
        self,
        info: RequestInfo,
        state: _Request,
        end: float,
        *,
        error: BaseException | None = None,
        closed: bool = False,
    ) -> None:
        facts = state.facts
        duration = end - info.start
        first = state.first - info.start if state.first is not None else None
        error_type = _error_type(error) if error is not None else None
        if state.span is not None:
            attributes = _response_attributes(facts, self._backend_attributes.get(state.backend, {}))
            if state.cost is not None:
                attributes["turnout.cost_usd"] = state.cost
            if first is not None:
                attributes["gen_ai.response.time_to_first_chunk"] = first
            if closed:
                attributes["turnout.stream.closed"] = True
            state.span.set_attributes(attributes)
            self._tracing.end(state.span, end, error_type, type(error).__name__ if error is not None else None)
        if state.instruments is not None and not state.nested and self.metrics is not None:
            key = (
                state.common["gen_ai.operation.name"],
                state.backend,
                self._model_label(info.model),
                self._model_label(facts.model),
                error_type,
            )
            self.metrics.record(
                state.instruments,
                self._metric_attributes.get(key) or self._new_metric_attributes(key),
                duration,
                first,
                facts.input_tokens,
                facts.output_tokens,
            )
        if self.prom is not None:
            self._count(info, state, duration, first, error)

    def _new_metric_attributes(
        self, key: tuple[str, str, str, Optional[str], Optional[str]]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The GenAI metrics' attributes for one (operation, backend, models, error): kept, as their values are
        bounded (configured names, or ``other``)."""
        operation, backend, request_model, response_model, error_type = key
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
        for name, value in (
            ("gen_ai.request.model", request_model),
            ("gen_ai.response.model", response_model),
            ("error.type", error_type),
        ):
            if value:
                attributes[name] = value
        where = self._backend_attributes.get(backend, {})
        attributes.update((k, v) for k, v in where.items() if k != "turnout.backend")
        if len(self._metric_attributes) > _MAX_METRIC_ATTRIBUTES:
            self._metric_attributes.clear()
        entry = (
            attributes,
            {**attributes, "gen_ai.token.type": "input"},
            {**attributes, "gen_ai.token.type": "output"},
        )
        self._metric_attributes[key] = entry
        return entry

    def _count(
        self, info: RequestInfo, state: _Request, duration: float, first: Optional[float], error: BaseException | None
    ) -> None:
        prom, facts, backend = self.prom, state.facts, state.backend
        model = self._model_label(info.model)
        outcome = "ok" if error is None else "broken" if state.response is not None else "error"
        prom.requests.labels(backend, model, info.endpoint, outcome).inc()
        prom.duration.labels(backend, model, info.endpoint).observe(duration)
        if first is not None:
            prom.first.labels(backend, model).observe(first)
        for kind, count in (
            ("input", facts.input_tokens),
            ("output", facts.output_tokens),
            ("cached", facts.cached_tokens),
            ("reasoning", facts.reasoning_tokens),
        ):
            if count:
                prom.tokens.labels(backend, model, kind).inc(count)
        if state.cost:
            prom.cost.labels(backend, model).inc(state.cost)


def _backend_attributes(name: str, adapter: Adapter) -> dict[str, Any]:
    """A backend as spans name it: turnout's name, the GenAI provider, the server's address and port."""
    preset = adapter.provider or "openai_compat"
    url = urllib.parse.urlsplit(getattr(adapter, "base_url", "") or "")
    port = url.port or (443 if url.scheme == "https" else 80 if url.scheme == "http" else None)
    attributes: dict[str, Any] = {
        "turnout.backend": name,
        "gen_ai.provider.name": _SEMCONV_PROVIDERS.get(preset, preset),
    }
    if url.hostname:
        attributes["server.address"] = url.hostname
    if port is not None:
        attributes["server.port"] = port
    return attributes


def _response_attributes(facts: Facts, backend: Mapping[str, Any]) -> dict[str, Any]:
    """The answer's facts that it told, beside its backend's attributes."""
    attributes = dict(backend)
    for name, value in (
        ("gen_ai.response.id", facts.response_id),
        ("gen_ai.response.model", facts.model),
        ("gen_ai.usage.input_tokens", facts.input_tokens),
        ("gen_ai.usage.output_tokens", facts.output_tokens),
        ("gen_ai.usage.cache_read.input_tokens", facts.cached_tokens),
        ("gen_ai.usage.reasoning.output_tokens", facts.reasoning_tokens),
    ):
        if value is not None:
            attributes[name] = value
    if facts.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = facts.finish_reasons
    return attributes


def _error_type(error: BaseException | None) -> Optional[str]:
    """Low-cardinality: the HTTP status a backend answered, else the error's class."""
    if error is None:
        return None
    status = getattr(error, "status_code", None)
    return str(status) if isinstance(status, int) else type(error).__name__
