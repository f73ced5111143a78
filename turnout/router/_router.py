"""The Router: priority failover over backends, each retried on its own."""

from __future__ import annotations

from typing import Sequence

from ..adapters import Adapter
from ._backend import Backend

__all__ = ["Router"]


class Router:
    """Backends in priority order; see README for the routing rules.

    timeout        total deadline of one request across all attempts and backends (seconds)
    retry_budget   retries allowed as a share of each backend's recent requests
    """

    def __init__(
        self,
        backends: Sequence[Backend | Adapter],
        *,
        timeout: float | None = None,
        retry_budget: float = 0.2,
        retry_budget_min: int = 10,
    ) -> None:
        if not backends:
            raise ValueError("a Router needs at least one backend")
        self.backends = [b if isinstance(b, Backend) else Backend(b) for b in backends]
        self.timeout = timeout
        self.retry_budget = retry_budget
        self.retry_budget_min = retry_budget_min
