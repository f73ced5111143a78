"""Resolved settings -> adapters -> Backends -> Router.

The only place adapters are constructed from settings. Keys and addresses
are always passed explicitly, so an adapter never reads the environment
behind the settings' back (and a key found in .env reaches it too).
"""

from __future__ import annotations

from typing import Any, Mapping

from ..adapters import Adapter, OpenAICompatAdapter
from ..router import Backend, Router
from ..router._events import Hook
from ..state import open_state
from ._models import TurnoutSettings
from ._resolve import ROUTING, ResolvedBackend, ResolvedConfig, resolve

__all__ = ["build_adapter", "build_backend", "build_router", "from_env", "router_for_client"]


def build_adapter(backend: ResolvedBackend, default_headers: Mapping[str, str] | None = None) -> Adapter:
    """The adapter the preset's protocol calls for; the ollama SDK is imported only for Ollama."""
    assert backend.preset is not None and not backend.problems, "resolve(strict=True) first"
    key = backend.api_key.value.get_secret_value() if backend.api_key.value is not None else None
    own = {k: v.get_secret_value() for k, v in (backend.headers.value or {}).items()}
    headers = {**(default_headers or {}), **own} or None
    common: dict[str, Any] = dict(api_key=key, timeout=backend.timeout.value, headers=headers,
                                  capabilities=backend.capabilities.value)
    if backend.preset.protocol == "ollama":
        from ..adapters.ollama import OllamaAdapter

        return OllamaAdapter(backend.name, host=backend.base_url.value, **common)
    return OpenAICompatAdapter(backend.name, preset=backend.preset, base_url=backend.base_url.value,
                               auth=backend.auth.value, api_version=backend.api_version.value, **common)


def build_backend(backend: ResolvedBackend, default_headers: Mapping[str, str] | None = None) -> Backend:
    """The adapter with its routing knobs."""
    return Backend(
        build_adapter(backend, default_headers),
        models=backend.models.value,
        priority=backend.priority.value,
        weight=backend.weight.value,
        max_retries=backend.max_retries.value,
        backoff_base=backend.backoff_base.value,
        backoff_max=backend.backoff_max.value,
        first_token_timeout=backend.first_token_timeout.value,
        allowed_fails=backend.allowed_fails.value,
        cooldown=backend.cooldown.value,
        rpm=backend.rpm.value,
        tpm=backend.tpm.value,
    )


def build_router(settings: TurnoutSettings | ResolvedConfig, default_headers: Mapping[str, str] | None = None,
                 *, on_event: Hook | None = None) -> Router:
    """A Router over every configured backend, in priority order; bad configuration raises ConfigError.

    ``on_event`` is the Router's hook (``turnout chat -v`` narrates the walk with it).
    """
    config = settings.check() if isinstance(settings, ResolvedConfig) else resolve(settings)
    return Router(
        [build_backend(b, default_headers) for b in config.backends],
        timeout=config.deadline.value,
        retry_budget=config.retry_budget.value,
        retry_budget_min=config.retry_budget_min.value,
        stateful_backend=config.stateful_backend.value,
        responses_ttl=config.responses_ttl.value,
        failover_on_content_filter=config.failover_on_content_filter.value,
        state=open_state(config.state_url.value, prefix=config.state_prefix.value, timeout=config.state_timeout.value),
        on_event=on_event,
        **{name: getattr(config, name).value for name in ROUTING},
    )


def from_env(**overrides: Any) -> Router:
    """A Router from the environment and .env; keyword arguments (any TurnoutSettings field) win over both."""
    return build_router(TurnoutSettings(**overrides))


def router_for_client(*, api_key: str | None = None, base_url: str | None = None, timeout: float | None = None,
                      max_retries: int | None = None, default_headers: Mapping[str, str] | None = None,
                      **settings: Any) -> Router:
    """The openai SDK's constructor arguments, in settings terms (see ``turnout.AsyncOpenAI``).

    ``api_key`` or ``base_url`` make exactly the one backend the SDK would talk
    to (OpenAI's address when no ``base_url``); ``timeout`` and ``max_retries``
    set every backend's; ``default_headers`` go to every backend.
    """
    overrides = dict(settings)
    if timeout is not None:
        overrides["timeout"] = timeout
    if max_retries is not None:
        overrides["max_retries"] = max_retries
    if api_key is not None or base_url is not None:
        name, provider = ("openai", "openai") if base_url is None else ("default", "openai_compat")
        section = {"provider": provider, "base_url": base_url, "api_key": api_key}
        overrides["backends"] = [name]
        overrides["backend"] = {name: {k: v for k, v in section.items() if v is not None}}
    return build_router(TurnoutSettings(**overrides), default_headers)
