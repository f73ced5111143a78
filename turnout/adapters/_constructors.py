"""The openai SDK's own constructors, by the name a preset row gives (``Preset.constructor``).

The SDK already speaks to the clouds: ``AsyncAzureOpenAI`` (deployment routes,
``api-version``, the ``api-key`` header, ``azure_ad_token_provider``),
``openai.providers.bedrock`` (bearer keys and AWS SigV4), and a callable
``api_key`` it calls for a fresh token. A row chooses which of them builds its
backend's client and with which arguments; there is one adapter class and no
class per provider. Every client gets ``max_retries=0``: retrying is the router's.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional, Union

import httpx2
import openai

from .._errors import ConfigError
from .auth import TokenSource
from .presets import Preset

__all__ = ["build_client", "Credential", "SDKClient"]

SDKClient = Union[openai.AsyncOpenAI, openai.OpenAI]
"""A backend's SDK client: async, or synchronous where the caller's own synchronous ``http_client`` carries the
one backend (``openai_compat``: it then runs on worker threads)."""

Credential = Union[str, TokenSource, None]
"""A static key, a token source (the SDK calls it per request), or ``None`` (AWS: the SDK signs)."""


def build_client(
    preset: Preset,
    backend: str,
    *,
    base_url: str,
    credential: Credential,
    api_version: Optional[str] = None,
    **common: Any,
) -> SDKClient:
    """The SDK client for one backend; ``common`` are the arguments every constructor takes."""
    make = _CONSTRUCTORS[preset.constructor]
    return make(backend, base_url, credential, api_version, common)


def _sync(common: dict[str, Any]) -> bool:
    """A synchronous ``http_client`` takes the synchronous SDK client (the caller's own, or the sync twin)."""
    return isinstance(common.get("http_client"), httpx2.Client)


def _plain(
    backend: str, base_url: str, credential: Credential, api_version: Optional[str], common: dict[str, Any]
) -> SDKClient:
    kind: Any = openai.OpenAI if _sync(common) else openai.AsyncOpenAI
    return kind(api_key=credential, base_url=base_url, max_retries=0, **common)  # type: ignore[no-any-return]


def _azure(
    backend: str, base_url: str, credential: Credential, api_version: Optional[str], common: dict[str, Any]
) -> SDKClient:
    """The v1 API is plain OpenAI (bearer key or Entra token); an api-version means the deployment routes."""
    if api_version is None:
        return _plain(backend, base_url, credential, api_version, common)
    root = re.sub(r"/v1/?$", "", base_url.rstrip("/"))  # .../openai: the SDK adds /deployments/{model}
    auth: dict[str, Any] = (
        {"azure_ad_token_provider": credential} if isinstance(credential, TokenSource) else {"api_key": credential}
    )
    kind: Any = openai.AzureOpenAI if _sync(common) else openai.AsyncAzureOpenAI
    return kind(base_url=root, api_version=api_version, max_retries=0, **auth, **common)  # type: ignore[no-any-return]


_BEDROCK_REGION = re.compile(r"^https://bedrock-(?:mantle|runtime)(?:-fips)?\.([a-z0-9-]+)\.")


def _bedrock(
    backend: str, base_url: str, credential: Credential, api_version: Optional[str], common: dict[str, Any]
) -> SDKClient:
    """The SDK's Bedrock provider: it owns the Authorization header and refuses any other origin."""
    try:
        from openai.providers import bedrock
    except ImportError:
        raise ConfigError(
            f"backend {backend!r}: Bedrock needs openai.providers.bedrock, which openai "
            f"{openai.__version__} lacks; upgrade openai"
        ) from None
    if isinstance(credential, TokenSource):
        auth: dict[str, Any] = {"token_provider": credential}
    elif credential is not None:
        auth = {"api_key": credential}
    else:  # AUTH=aws: the default AWS credential chain signs each request (openai[bedrock])
        _need_botocore(backend)
        found = _BEDROCK_REGION.match(base_url)
        auth = {"api_key": None, "region": found.group(1) if found else None}
    try:
        provider = bedrock(base_url=base_url, **auth)
    except openai.OpenAIError as err:
        raise ConfigError(f"backend {backend!r}: {err}") from None
    kind: Any = openai.OpenAI if _sync(common) else openai.AsyncOpenAI
    return kind(provider=provider, max_retries=0, **common)  # type: ignore[no-any-return]


def _need_botocore(backend: str) -> None:
    """Checked here, at start: the SDK would say so only at the first request."""
    try:
        import botocore  # noqa: F401
    except ImportError:
        raise ConfigError(f"backend {backend!r}: AUTH=aws needs botocore; pip install 'turnout[aws]'") from None


_CONSTRUCTORS: dict[str, Callable[[str, str, Credential, Optional[str], dict[str, Any]], SDKClient]] = {
    "openai": _plain,
    "azure": _azure,
    "bedrock": _bedrock,
}
