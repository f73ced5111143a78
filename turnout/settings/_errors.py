"""pydantic's ``ValidationError`` in the words of the person who set the variable.

pydantic names a field path (``backend.groq.max_retries``) and echoes the
raw input; users need the variable (``TURNOUT_BACKEND__GROQ__MAX_RETRIES``),
the value with secrets masked, and what would be accepted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .._errors import ConfigError
from ..adapters import Capabilities
from ._origin import Origin, did_you_mean, problem_text
from ._sources import Layer, origin_of

if TYPE_CHECKING:
    from ._names import Names

__all__ = ["ACCEPTED", "translate", "join_problems", "unknown_field"]

ACCEPTED: dict[str, str] = {
    "provider": "a preset name",
    "base_url": "an http:// or https:// URL",
    "api_key": "the key as text",
    "api_key_env": "the name of a variable holding the key, like MY_GROQ_KEY",
    "auth": "key (a static key), entra (Microsoft Entra ID, turnout[azure]), google (Google credentials, "
            "turnout[google]) or aws (AWS's credential chain, turnout[aws]); which ones depends on the provider",
    "api_version": "an Azure OpenAI api-version like 2024-10-21 (unset: the v1 API)",
    "failover_on_content_filter": "1 (a content-filter refusal fails over to the next backend) or 0 (it is "
                                  "raised: the request is refused); true/false, yes/no, on/off too",
    "models": "alias=model,alias2=model2 (a bare model means alias == model), or a JSON object",
    "priority": "a whole number; lower is tried first",
    "weight": "a number > 0",
    "max_retries": "a whole number >= 0",
    "backoff_base": "a number > 0 (waits grow as backoff_base ** retry seconds)",
    "backoff_max": "seconds >= 0",
    "timeout": "seconds >= 0",
    "first_token_timeout": "seconds > 0 a stream may take to its first token (unset: the attempt's timeout)",
    "headers": 'a JSON object, like {"X-Title": "my app"}',
    "capabilities": "name=true|false|unknown pairs, like vision=false,tools=true, or a JSON object; names: "
                    + ", ".join(Capabilities.names()),
    "allowed_fails": "a whole number >= 1",
    "cooldown": "seconds >= 0",
    "rpm": "requests per minute, a whole number >= 1 (unset: no limit)",
    "tpm": "tokens per minute, a whole number >= 1 (unset: no limit)",
    "proxy": "the proxy this backend is reached through, like http://proxy.internal:3128 (http, https or socks5)",
    "state_url": "redis://host:6379/0, rediss:// for TLS, unix:///path/to/redis.sock, "
                 "redis+sentinel://host:26379,host2:26379/mymaster (Sentinel), or redis+cluster://host:7000,host2:7001 "
                 "(Cluster) (unset: this process's memory)",
    "state_prefix": "one word that starts every Redis key, like turnout or myapp",
    "state_timeout": "seconds > 0 a Redis command may take before Redis counts as unreachable",
    "deadline": "seconds > 0",
    "retry_budget": "a share >= 0, like 0.2",
    "retry_budget_min": "a whole number >= 0",
    "responses_ttl": "seconds > 0",
    "stateful_backend": "the name of a listed backend (files, batches and other stateful calls go to it)",
    "strict": "1 (a TURNOUT_ variable turnout does not read is an error) or 0 (a warning); "
              "true/false, yes/no, on/off too",
    "serve_host": "the address `turnout serve` listens on, like 127.0.0.1 (without keys: a loopback address only)",
    "serve_port": "a port number 1-65535 (0: any free port)",
    "serve_api_keys": "a comma list of keys callers send as `Authorization: Bearer <key>`, or @/path/to/keyfile "
                      "(one key per line)",
    "serve_max_body": "the largest request body in bytes, like 33554432, or with a unit: 32MiB, 10MB",
    "serve_max_connections": "a whole number >= 1: open connections one server process holds (more are answered 503)",
    "serve_header_timeout": "seconds > 0 a caller may take to send a request's headers",
    "serve_body_timeout": "seconds > 0 a caller may take to send a request's body, once its headers are in",
    "backends": "a comma list of names (groq,openrouter) or a JSON list",
    "backend": "one TURNOUT_BACKEND__<NAME>__<FIELD> per field",
}
_SECRET = frozenset({"api_key", "headers", "serve_api_keys", "state_url", "proxy"})


def translate(err: ValidationError, layers: Sequence[Layer], names: Names) -> ConfigError:
    """One ConfigError listing every problem; raise it ``from None`` (the original echoes secrets)."""
    return ConfigError(join_problems([_problem(detail, layers, names) for detail in err.errors(include_url=False)]))


def join_problems(problems: Sequence[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} configuration problems:\n" + "\n".join(f"  - {p}" for p in problems)


def _problem(detail: ErrorDetails, layers: Sequence[Layer], names: Names) -> str:
    path = _variable_path(detail["loc"])
    field = path[2] if len(path) > 2 else path[0]
    origin = origin_of(layers, path)
    setter = next((layer for layer in layers if layer.has(path)), None)
    if detail["type"] == "extra_forbidden" and setter is not None:
        return unknown_field(setter, path, names)
    message = detail["msg"].removeprefix("Value error, ")
    accepted = None if field == "provider" else ACCEPTED.get(field)  # its message lists the presets already
    return problem_text(origin, _input(detail, path), message, accepted, secret=field in _SECRET)


def unknown_field(layer: Layer, path: tuple[str, ...], names: Names) -> str:
    """A backend field no BackendSettings field reads, and the likely one, both named as ``layer``
    names them (a variable, a JSON TURNOUT_BACKENDS entry, or a keyword argument)."""
    origin = Origin(layer.kind, layer.display(path), layer.file)
    accepted = ", ".join(f.upper() for f in names.backend_fields)
    return (problem_text(origin, None, "is not a backend setting", accepted)
            + did_you_mean(path[-1], names.backend_fields, lambda field: layer.display((*path[:-1], field))))


def _variable_path(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    """The part of pydantic's location one variable holds: a backend field, or a top-level field."""
    parts = tuple(str(p) for p in loc)
    return parts[:3] if parts[0] == "backend" else parts[:1]


def _input(detail: ErrorDetails, path: tuple[str, ...]) -> Any:
    """The value as set: pydantic's input is a deeper part of it when the error is deeper in."""
    return detail.get("input") if len(detail["loc"]) == len(path) else None
