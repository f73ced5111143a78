"""Prometheus metrics for ``turnout serve``: counters and histograms fed by the router's events, gauges read
from the router's state at each scrape.

With ``--workers N`` every worker writes to prometheus-client's multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``, set by ``turnout serve`` before the workers start) and a scrape
sums them all; the state gauges come from the worker that answers the scrape, which with Redis
state is every worker's shared state. Every label value is a configured name (backend, model
from the configured table or a bounded few, endpoint, outcome): a caller cannot grow the series.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Prom"]

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Prom:
    """The metric objects; ``scrape()`` is the text a ``GET /metrics`` answers."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        into = None if self.multiprocess else self.registry
        self.requests = _Labelled(
            Counter(
                "turnout_requests_total",
                "Requests, by the backend that served them (none: '')",
                ["backend", "model", "endpoint", "outcome"],
                registry=into,
            )
        )
        self.attempts = _Labelled(
            Counter("turnout_attempts_total", "Attempts on each backend", ["backend", "outcome"], registry=into)
        )
        self.failovers = _Labelled(
            Counter("turnout_failovers_total", "Failovers from one backend to the next", ["from", "to"], registry=into)
        )
        self.retries = _Labelled(
            Counter("turnout_retries_total", "Retries on each backend", ["backend"], registry=into)
        )
        self.duration = _Labelled(
            Histogram(
                "turnout_request_duration_seconds",
                "Whole requests, a stream until its end",
                ["backend", "model", "endpoint"],
                buckets=_SECONDS,
                registry=into,
            )
        )
        self.first = _Labelled(
            Histogram(
                "turnout_time_to_first_token_seconds",
                "Streams: until the first event",
                ["backend", "model"],
                buckets=_SECONDS,
                registry=into,
            )
        )
        self.tokens = _Labelled(
            Counter(
                "turnout_tokens_total",
                "Tokens by type (input, output, cached, reasoning)",
                ["backend", "model", "type"],
                registry=into,
            )
        )
        self.cost = _Labelled(
            Counter("turnout_cost_usd_total", "USD, where the price is known", ["backend", "model"], registry=into)
        )
        self.in_flight = _Labelled(
            Gauge(
                "turnout_in_flight",
                "Attempts under way on each backend",
                ["backend"],
                registry=into,
                multiprocess_mode="livesum",
            )
        )
        self._state = _StateGauges()
        self.registry.register(self._state)
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]  # unannotated there

    def scrape(self, stats: Mapping[str, Mapping[str, Any]]) -> bytes:
        """The exposition text; ``stats`` is the router's (shared, with Redis) state read just now."""
        self._state.stats = stats
        return generate_latest(self.registry)


class _Labelled:
    """A metric whose children are kept by their label values: prometheus-client's ``labels()`` takes a lock and
    checks every value each time (~2 µs; seven times a request). The values are bounded (above), so is this."""

    __slots__ = ("metric", "children")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


class _StateGauges(Collector):
    """Breakers and rate windows as they are at the scrape."""

    def __init__(self) -> None:
        self.stats: Optional[Mapping[str, Mapping[str, Any]]] = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        breaker = GaugeMetricFamily(
            "turnout_breaker_open", "1 while a backend's breaker is open (cooling down)", labels=["backend"]
        )
        remaining = GaugeMetricFamily(
            "turnout_rate_limit_remaining",
            "Room left in a backend's configured window this minute",
            labels=["backend", "limit"],
        )
        for name, stats in (self.stats or {}).items():
            breaker.add_metric([name], 1.0 if stats.get("state") == "open" else 0.0)
            window = stats.get("window") or {}
            for limit in ("rpm", "tpm"):
                if window.get(f"{limit}_limit"):
                    remaining.add_metric([name, limit], max(window[f"{limit}_limit"] - (window.get(limit) or 0), 0))
        return [breaker, remaining]
