"""turnout: many LLM backends behind the openai SDK's own clients.

The public names are imported on first use (PEP 562), so ``import turnout``
alone does not load the openai SDK: the ``turnout`` command answers
``--help`` without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._errors import AllBackendsFailedError, BrokenStreamError, ConfigError, TurnoutError
    from .adapters import Capabilities, OpenAICompatAdapter
    from .client import AsyncOpenAI, OpenAI, cost_of, served_by
    from .router import Backend, Router, RouterEvent
    from .settings import from_env

__all__ = [
    "AllBackendsFailedError",
    "AsyncOpenAI",
    "OpenAI",
    "Backend",
    "Router",
    "RouterEvent",
    "served_by",
    "cost_of",
    "BrokenStreamError",
    "Capabilities",
    "ConfigError",
    "OpenAICompatAdapter",
    "TurnoutError",
    "from_env",
]

__version__ = "0.1.0"

_HOMES = {
    **dict.fromkeys(["AllBackendsFailedError", "BrokenStreamError", "ConfigError", "TurnoutError"], "._errors"),
    **dict.fromkeys(["Capabilities", "OpenAICompatAdapter"], ".adapters"),
    **dict.fromkeys(["AsyncOpenAI", "OpenAI", "served_by", "cost_of"], ".client"),
    **dict.fromkeys(["Backend", "Router", "RouterEvent"], ".router"),
    "from_env": ".settings",
}
_SUBPACKAGES = frozenset({"adapters", "client", "router", "settings", "telemetry"})


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'turnout' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})
