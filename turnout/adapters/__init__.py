"""Backends: one protocol, one class for every OpenAI-compatible provider, one for Ollama.

``OllamaAdapter`` is imported on first use, so the ollama SDK is loaded only
by programs that configure an Ollama backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import openai  # noqa: F401  before anything imports openai.types: that order is ~100 ms faster

from ._base import Adapter, Call, Capabilities, Endpoint, Health, made_response, wire_response
from .auth import Token, TokenSource
from .openai_compat import OpenAICompatAdapter
from .presets import PRESETS, Preset, get_preset

if TYPE_CHECKING:
    from .ollama import OllamaAdapter

__all__ = [
    "Adapter",
    "Call",
    "Capabilities",
    "Endpoint",
    "Health",
    "OllamaAdapter",
    "OpenAICompatAdapter",
    "PRESETS",
    "Preset",
    "Token",
    "TokenSource",
    "get_preset",
    "made_response",
    "wire_response",
]


def __getattr__(name: str) -> Any:
    if name == "OllamaAdapter":
        from .ollama import OllamaAdapter

        return OllamaAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
