"""Configuration from environment variables and ``.env``, with the origin of every value.

    from turnout.settings import from_env
    router = from_env()                      # TURNOUT_BACKENDS, provider keys, .env
    router = from_env(max_retries=0)         # keyword arguments win over both

    settings = TurnoutSettings(_env_file=None, backends="box", backend={"box": {"provider": "vllm"}})
    resolve(settings, strict=False).describe()   # every value, its source, keys masked
"""

from __future__ import annotations

from ._build import build_adapter, build_backend, build_router, from_env, router_for_client
from ._models import ENV_FILE_VARIABLE, BackendSettings, TurnoutSettings
from ._origin import Origin, Resolved, mask
from ._resolve import AMBIENT_TOKENS, ResolvedBackend, ResolvedConfig, discovery_order, resolve

__all__ = [
    "AMBIENT_TOKENS",
    "BackendSettings",
    "ENV_FILE_VARIABLE",
    "Origin",
    "Resolved",
    "ResolvedBackend",
    "ResolvedConfig",
    "TurnoutSettings",
    "build_adapter",
    "build_backend",
    "build_router",
    "discovery_order",
    "from_env",
    "mask",
    "resolve",
    "router_for_client",
]
