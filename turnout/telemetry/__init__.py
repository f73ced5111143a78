"""Telemetry beside the router: OpenTelemetry spans and GenAI metrics, Prometheus for ``turnout serve``, and cost.

Fed only by the router's events and each answer's usage. Each part needs its extra:
``turnout[otel]`` (opentelemetry-api), ``turnout[cost]`` (genai-prices), ``turnout[serve]``
(prometheus-client); without them nothing here is imported and the router has no subscriber.
"""

from __future__ import annotations

import importlib.util
import weakref
from typing import TYPE_CHECKING, Mapping

from ._cost import Price

if TYPE_CHECKING:
    from ..router import Router
    from ._hook import Telemetry

__all__ = ["instrument", "telemetry_of", "Price", "COST_HEADER"]

COST_HEADER = "x-turnout-cost"
"""Set on an answer's HTTP response once its cost is known: USD, or ``unknown``."""


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def instrument(
    router: Router, *, prices: Mapping[str, Mapping[str, Price]] | None = None, prometheus: bool = False
) -> Telemetry | None:
    """Subscribe telemetry to ``router``'s events: spans and GenAI metrics where opentelemetry-api is installed
    (recorded once the application configures a provider), cost where genai-prices is installed or a price
    is set, Prometheus metrics when asked (``turnout serve``). ``None`` when there is nothing to do."""
    otel = _installed("opentelemetry")
    prometheus = prometheus and _installed("prometheus_client")
    if not (otel or prices or prometheus or _installed("genai_prices")):
        return None
    from ._hook import Telemetry

    prom = None
    if prometheus:
        from ._prom import Prom

        prom = Prom()
    telemetry = Telemetry(router, prices=prices, prom=prom, otel=otel)
    router.subscribe(telemetry)
    router.add_stats(telemetry.stats)
    _TELEMETRY[router] = telemetry
    return telemetry


def telemetry_of(router: Router) -> Telemetry | None:
    """The telemetry :func:`instrument` subscribed to ``router``, if any."""
    return _TELEMETRY.get(router)


_TELEMETRY: weakref.WeakKeyDictionary[Router, Telemetry] = weakref.WeakKeyDictionary()
