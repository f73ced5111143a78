"""The clock of cooldowns, rate windows and budgets in this process (tests move it instead of waiting).

Shared state in Redis reads Redis's own clock (``TIME``) instead, so the hosts' clocks never have to agree.
"""

from __future__ import annotations

import time

__all__ = ["now"]


def now() -> float:
    return time.monotonic()
