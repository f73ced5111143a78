"""Resolved settings -> adapters -> Backends -> Router.

The only place adapters are constructed from settings. Keys and addresses
are always passed explicitly, so an adapter never reads the environment
behind the settings' back (and a key found in .env reaches it too).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from pydantic import SecretStr

from ..adapters import Adapter, OpenAICompatAdapter
from ..adapters._http import Transports
from ..router import Backend, Router
from ..router._events import Hook
from ..state import open_state
from ..telemetry import Price, instrument
from ._models import TurnoutSettings
from ._resolve import ResolvedBackend, ResolvedConfig, resolve

ROUTING = ("strategy", "affinity", "affinity_ttl", "hedge_after", "max_hedges")
"""The routing settings (issue 25): each a Router keyword of the same name."""

__all__ = ["build_adapter", "build_backend", "build_router", "from_env"]


def build_adapter(
    backend: ResolvedBackend,
    default_headers: Mapping[str, str] | None = None,
    transports: Transports | None = None,
    sdk: Mapping[str, Any] | None = None,
) -> Adapter:
    """The adapter the preset's protocol calls for; the ollama SDK is imported only for Ollama.

    ``transports``: the caller's ``http_client`` (OpenAI-compatible backends only: Ollama's SDK speaks
    httpx, not httpx2); ``sdk``: the caller's other SDK constructor arguments, for this backend's SDK client."""
    assert backend.preset is not None and not backend.problems, "resolve(strict=True) first"
    key = backend.api_key.value
    own = {k: v.get_secret_value() for k, v in (backend.headers.value or {}).items()}
    headers = {**(default_headers or {}), **own} or None
    common: dict[str, Any] = dict(
        api_key=key.get_secret_value() if isinstance(key, SecretStr) else key,
        timeout=backend.timeout.value,
        headers=headers,
        capabilities=backend.capabilities.value,
        proxy=backend.proxy.value,
    )
    if backend.preset.protocol == "ollama":
        from ..adapters.ollama import OllamaAdapter

        return OllamaAdapter(backend.name, host=backend.base_url.value, **common)
    return OpenAICompatAdapter(
        backend.name,
        preset=backend.preset,
        base_url=backend.base_url.value,
        auth=backend.auth.value,
        api_version=backend.api_version.value,
        transports=transports,
        sdk=sdk,
        **common,
    )


def build_backend(
    backend: ResolvedBackend,
    default_headers: Mapping[str, str] | None = None,
    transports: Transports | None = None,
    sdk: Mapping[str, Any] | None = None,
) -> Backend:
    """The adapter with its routing knobs: every per-backend setting :class:`Backend` has a field for."""
    knobs = {f.name: backend.values[f.name].value for f in dataclasses.fields(Backend) if f.name in backend.values}
    return Backend(build_adapter(backend, default_headers, transports, sdk), **knobs)


def build_router(
    settings: TurnoutSettings | ResolvedConfig,
    default_headers: Mapping[str, str] | None = None,
    *,
    on_event: Hook | None = None,
    http_client: Any = None,
    sdk: Mapping[str, Mapping[str, Any]] | None = None,
    prometheus: bool = False,
    aggregate_models: bool = True,
) -> Router:
    """A Router over every configured backend, in priority order; bad configuration raises ConfigError.

    ``on_event`` is the Router's hook (``turnout chat -v`` narrates the walk with it); ``http_client``
    the caller's (``adapters._http``); ``sdk`` SDK constructor arguments for some backends, by name.
    Telemetry subscribes where its extras are installed; ``prometheus`` adds the Prometheus metrics
    (``turnout serve``); ``aggregate_models``: the Router's.
    """
    config = settings.check() if isinstance(settings, ResolvedConfig) else resolve(settings)
    transports = Transports(http_client) if http_client is not None else None
    router = Router(
        [build_backend(b, default_headers, transports, (sdk or {}).get(b.name)) for b in config.backends],
        timeout=config.deadline.value,
        retry_budget=config.retry_budget.value,
        retry_budget_min=config.retry_budget_min.value,
        stateful_backend=config.stateful_backend.value,
        responses_ttl=config.responses_ttl.value,
        failover_on_content_filter=config.failover_on_content_filter.value,
        state=open_state(config.state_url.value, prefix=config.state_prefix.value, timeout=config.state_timeout.value),
        on_event=on_event,
        aggregate_models=aggregate_models,
        **{name: config.values[name].value for name in ROUTING},
    )
    instrument(
        router,
        prices={b.name: {m: Price(*p) for m, p in b.price.value.items()} for b in config.backends if b.price.value},
        prometheus=prometheus,
    )
    return router


def from_env(**overrides: Any) -> Router:
    """A Router from the environment and .env; keyword arguments (any TurnoutSettings field) win over both."""
    return build_router(TurnoutSettings(**overrides))
