"""turnout: many LLM backends behind one ``openai.AsyncOpenAI``-shaped client."""

from __future__ import annotations

from ._errors import AllBackendsFailedError, BrokenStreamError, ConfigError, TurnoutError
from .adapters import Capabilities, OpenAICompatAdapter
from .router import AsyncOpenAI, Backend, OpenAI, Router, RouterEvent, served_by
from .settings import from_env

__all__ = [
    "AllBackendsFailedError",
    "AsyncOpenAI",
    "OpenAI",
    "Backend",
    "Router",
    "RouterEvent",
    "served_by",
    "BrokenStreamError",
    "Capabilities",
    "ConfigError",
    "OpenAICompatAdapter",
    "TurnoutError",
    "from_env",
]

__version__ = "0.1.0"
