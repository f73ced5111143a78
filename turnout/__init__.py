"""turnout: many LLM backends behind one ``openai.AsyncOpenAI``-shaped client."""

from __future__ import annotations

from ._errors import BrokenStreamError, ConfigError, TurnoutError
from .adapters import Capabilities, OpenAICompatAdapter

__all__ = [
    "BrokenStreamError",
    "Capabilities",
    "ConfigError",
    "OpenAICompatAdapter",
    "TurnoutError",
]

__version__ = "0.1.0"
