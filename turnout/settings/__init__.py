"""Configuration from environment variables and ``.env``, with the origin of every value.

Each setting is declared once, as a row of ``turnout.knobs``: the models here are made from it.

    from turnout.settings import from_env
    router = from_env()                      # TURNOUT_BACKENDS, provider keys, .env
    router = from_env(max_retries=0)         # keyword arguments win over both

    settings = TurnoutSettings(_env_file=None, backends="box", backend={"box": {"provider": "vllm"}})
    resolve(settings, strict=False).describe()   # every value, its source, keys masked
"""

from __future__ import annotations

from ._build import build_adapter, build_backend, build_router, from_env
from ._models import ENV_FILE_VARIABLE, BackendSettings, TurnoutSettings
from ._origin import Origin, Resolved
from ._resolve import ResolvedBackend, ResolvedConfig, discovery_order, resolve

__all__ = [
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
    "resolve",
]
