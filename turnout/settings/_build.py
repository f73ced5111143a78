"""Resolved settings -> adapters -> Backends -> Router.

The only place adapters are constructed from settings. Keys and addresses
are always passed explicitly, so an adapter never reads the environment
behind the settings' back (and a key found in .env reaches it too).
"""

from __future__ import annotations

from typing import Any

from ..adapters import Adapter, OpenAICompatAdapter
from ..router import Backend, Router
from ._models import TurnoutSettings
from ._resolve import ResolvedBackend, ResolvedConfig, resolve

__all__ = ["build_adapter", "build_backend", "build_router", "from_env"]


def build_adapter(backend: ResolvedBackend) -> Adapter:
    """The adapter the preset's protocol calls for; the ollama SDK is imported only for Ollama."""
    assert backend.preset is not None and not backend.problems, "resolve(strict=True) first"
    key = backend.api_key.value.get_secret_value() if backend.api_key.value is not None else None
    headers = {k: v.get_secret_value() for k, v in (backend.headers.value or {}).items()} or None
    common: dict[str, Any] = dict(api_key=key, timeout=backend.timeout.value, headers=headers,
                                  capabilities=backend.capabilities.value)
    if backend.preset.protocol == "ollama":
        from ..adapters.ollama import OllamaAdapter

        return OllamaAdapter(backend.name, host=backend.base_url.value, **common)
    return OpenAICompatAdapter(backend.name, preset=backend.preset, base_url=backend.base_url.value, **common)


def build_backend(backend: ResolvedBackend) -> Backend:
    """The adapter with its routing knobs."""
    return Backend(
        build_adapter(backend),
        models=backend.models.value,
        priority=backend.priority.value,
        weight=backend.weight.value,
        max_retries=backend.max_retries.value,
        backoff_base=backend.backoff_base.value,
        backoff_max=backend.backoff_max.value,
        allowed_fails=backend.allowed_fails.value,
        cooldown=backend.cooldown.value,
    )


def build_router(settings: TurnoutSettings | ResolvedConfig) -> Router:
    """A Router over every configured backend, in priority order; bad configuration raises ConfigError."""
    config = settings.check() if isinstance(settings, ResolvedConfig) else resolve(settings)
    return Router(
        [build_backend(b) for b in config.backends],
        timeout=config.deadline.value,
        retry_budget=config.retry_budget.value,
        retry_budget_min=config.retry_budget_min.value,
    )


def from_env(**overrides: Any) -> Router:
    """A Router from the environment and .env; keyword arguments (any TurnoutSettings field) win over both."""
    return build_router(TurnoutSettings(**overrides))
