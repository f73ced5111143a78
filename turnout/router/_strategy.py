"""How backends of one priority level are ordered for a request: the routing strategies.

``weighted``    a weighted random order (Efraimidis-Spirakis): each backend leads with
                probability weight / total weight. The default.
``latency``     the fastest first by a moving average of recent latency (time to first token for a
                stream, the whole time otherwise), per model; backends within ``CLOSE`` of the
                fastest share the lead by weight; a backend with no measurement yet goes first (so
                it gets one), and ``EXPLORE`` of requests take the weighted order, so a slow backend
                that recovers is noticed.
``least-busy``  the fewest requests in flight first (across processes with shared state); ties by weight.

Each is a function over one priority level's candidates: a table, not a class per case. All are a few
list operations: no I/O, nothing that grows with traffic.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Callable, Literal, Sequence

if TYPE_CHECKING:
    from ._select import Candidate

__all__ = ["STRATEGIES", "StrategyName", "Latency", "weighted", "CLOSE", "EXPLORE"]

StrategyName = Literal["weighted", "latency", "least-busy"]

CLOSE = 1.25
"""Backends whose latency is within this factor of the fastest's count as equally fast."""

EXPLORE = 0.05
"""The share of requests ordered by weight alone under ``latency``, so every backend keeps being measured."""

ALPHA = 0.3
"""Weight of the newest sample in the moving average: a backend that slows down is noticed in a few requests."""

SAMPLES = 128
"""Recent latencies kept per backend and model, for percentiles (hedging's ``p95``)."""


class Latency:
    """One backend's recent latency for one model: a moving average, and the last ``SAMPLES`` samples."""

    __slots__ = ("mean", "samples", "_next", "_sorted")

    def __init__(self) -> None:
        self.mean: float | None = None
        self.samples: list[float] = []
        self._next = 0
        self._sorted: list[float] | None = None

    def add(self, seconds: float) -> None:
        self.mean = seconds if self.mean is None else self.mean + ALPHA * (seconds - self.mean)
        if len(self.samples) < SAMPLES:
            self.samples.append(seconds)
        else:
            self.samples[self._next] = seconds
            self._next = (self._next + 1) % SAMPLES
        self._sorted = None

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0-100, nearest rank) of the recent samples; ``None`` before ``MIN_SAMPLES``."""
        if len(self.samples) < MIN_SAMPLES:
            return None
        if self._sorted is None:  # sorted once per new sample at most, not per request
            self._sorted = sorted(self.samples)
        ranked = self._sorted
        return ranked[min(len(ranked) - 1, max(0, math.ceil(len(ranked) * p / 100) - 1))]


MIN_SAMPLES = 20
"""Samples a percentile needs before hedging trusts it."""


def weighted(group: Sequence[Candidate]) -> list[Candidate]:
    """Efraimidis-Spirakis: each backend leads with probability weight / total weight."""
    if len(group) == 1:
        return list(group)
    keyed = [
        (random.random() ** (1.0 / c.runner.backend.weight) if c.runner.backend.weight > 0 else 0.0, c) for c in group
    ]
    keyed.sort(key=_first, reverse=True)
    return [c for _, c in keyed]


def by_latency(group: Sequence[Candidate]) -> list[Candidate]:
    """Unmeasured first, then the fastest (those within ``CLOSE`` of it by weight), then the rest by latency."""
    if len(group) == 1 or random.random() < EXPLORE:
        return weighted(group)
    fresh: list[Candidate] = []
    measured: list[tuple[float, Candidate]] = []
    for c in group:
        mean = c.runner.latency_of(c.model)
        if mean is None:
            fresh.append(c)
        else:
            measured.append((mean, c))
    if not measured:
        return weighted(fresh)
    measured.sort(key=_first)
    best = measured[0][0] * CLOSE
    lead = [c for m, c in measured if m <= best]
    rest = [c for m, c in measured if m > best]
    if len(lead) > 1:
        lead = weighted(lead)
    return [*weighted(fresh), *lead, *rest] if fresh else [*lead, *rest]


def least_busy(group: Sequence[Candidate]) -> list[Candidate]:
    """Fewest in flight first; equal counts in a weighted order."""
    if len(group) == 1:
        return list(group)
    shuffled = weighted(group)
    return sorted(shuffled, key=lambda c: c.runner.busy())  # stable: ties keep the weighted order


def _first(pair: tuple[float, object]) -> float:
    return pair[0]


STRATEGIES: dict[str, Callable[[Sequence[Candidate]], list[Candidate]]] = {
    "weighted": weighted,
    "latency": by_latency,
    "least-busy": least_busy,
}
"""Strategy name -> how it orders one priority level's candidates."""
