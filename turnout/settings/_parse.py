"""Parsers for the values environment variables hold.

Each takes the raw string (or what code passed instead) and raises
``ValueError`` saying what is wrong; the caller adds the variable's name.
Messages never repeat the value: the caller shows it, masked if secret.
"""

from __future__ import annotations

import json
from typing import Any, Mapping
from urllib.parse import urlsplit

from pydantic import SecretStr

from ..adapters import Capabilities

__all__ = [
    "parse_models",
    "parse_capabilities",
    "parse_flag",
    "parse_headers",
    "parse_names",
    "check_url",
    "json_value",
]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def json_value(text: str, what: str) -> Any:
    """JSON, with the parser's position but never the text itself (it may hold a key)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None


def _pairs(text: str) -> list[tuple[str, str | None]]:
    """``a=1,b=2`` as pairs; a bare ``c`` is ``(c, None)``."""
    pairs: list[tuple[str, str | None]] = []
    for item in text.split(","):
        key, sep, value = item.partition("=")
        pairs.append((key.strip(), value.strip() if sep else None))
    return pairs


def parse_models(value: Any) -> dict[str, str] | None:
    """``alias=model,alias2=model2`` (a bare ``model`` means alias == model), or a JSON object."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("{"):
            pairs = list(_object(json_value(stripped, "MODELS")).items())
        else:
            pairs = [(alias, alias if model is None else model) for alias, model in _pairs(stripped)]
    else:
        raise ValueError("must be text like alias=model,alias2=model2")
    return _models(pairs)


def _models(pairs: list[tuple[Any, Any]]) -> dict[str, str]:
    models: dict[str, str] = {}
    for alias, model in pairs:
        if not isinstance(alias, str) or not isinstance(model, str):
            raise ValueError("every alias and model must be text")
        if not alias or not model.strip():
            raise ValueError("an entry has no name (empty alias or model, or a stray comma)")
        if alias in models:
            raise ValueError(f"alias {alias!r} is given twice")
        models[alias] = model.strip()
    return models


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


def parse_capabilities(value: Any) -> dict[str, bool | None] | None:
    """``vision=false,tools=true,embeddings=unknown`` (a bare name means true), or a JSON object of
    booleans (``null`` for unknown)."""
    if value is None:
        return None
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("{"):
            value = _object(json_value(stripped, "CAPABILITIES"))
        else:
            value = {name: "true" if flag is None else flag for name, flag in _pairs(stripped)}
    if not isinstance(value, Mapping):
        raise ValueError("must be text like vision=false,tools=true")
    return {_capability(name): _tri_state(flag, name) for name, flag in value.items()}


def _tri_state(flag: Any, name: str) -> bool | None:
    """Yes, no, or unknown (tried after the backends known to have it)."""
    if flag is None or (isinstance(flag, str) and flag.strip().lower() in ("unknown", "?")):
        return None
    return parse_flag(flag, name)


def _capability(name: Any) -> str:
    if name not in Capabilities.names():
        raise ValueError(f"unknown capability {name!r}")
    return str(name)


def parse_flag(flag: Any, name: str | None = None) -> bool:
    """``1``, ``true``, ``yes``, ``on`` or ``0``, ``false``, ``no``, ``off``, in any case; ``name`` is for messages."""
    if isinstance(flag, bool):
        return flag
    text = str(flag).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError(f"{name}={flag!r} is not true or false" if name else "is not true or false")


def parse_headers(value: Any) -> dict[str, SecretStr] | None:
    """A JSON object of header names to values; values are kept secret (they often carry keys)."""
    if value is None:
        return None
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        value = _object(json_value(value, "HEADERS"))
    if not isinstance(value, Mapping):
        raise ValueError("must be a JSON object")
    headers: dict[str, SecretStr] = {}
    for name, text in value.items():
        if isinstance(text, SecretStr):
            text = text.get_secret_value()
        if not isinstance(name, str) or not name or not isinstance(text, str):
            raise ValueError("every header name and value must be non-empty text")
        headers[name] = SecretStr(text)
    return headers


def parse_names(value: Any) -> list[str]:
    """``a,b,c`` or a list of names, each stripped; empty entries are an error, not skipped."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError("must be a comma list of names or a JSON list")
    names = [item.strip() if isinstance(item, str) else item for item in items]
    if any(not isinstance(name, str) or not name for name in names):
        raise ValueError("has an empty name (a stray comma?)")
    return names


def check_proxy(url: str) -> str:
    """A proxy's URL, as httpx takes it: http, https or socks5 with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https", "socks5", "socks5h") or not parts.hostname:
        raise ValueError("is not a proxy URL (http://, https:// or socks5:// with a host)")
    return url.strip()


def check_url(url: str, *, host_only_ok: bool = False) -> str:
    """An http(s) URL with a host; ``host_only_ok`` also takes ``host[:port]`` as OLLAMA_HOST does."""
    text = url.strip()
    if host_only_ok and "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in text:
        raise ValueError("is not an http:// or https:// URL with a host")
    return url.strip()
