"""pydantic's ``ValidationError`` in the words of the person who set the variable.

pydantic names a field path (``backend.groq.max_retries``) and echoes the
raw input; users need the variable (``TURNOUT_BACKEND__GROQ__MAX_RETRIES``),
the value with secrets masked, and what would be accepted.
"""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .._errors import ConfigError
from ..adapters import Capabilities
from ._origin import problem_text
from ._sources import Layer, origin_of

__all__ = ["ACCEPTED", "translate", "join_problems"]

ACCEPTED: dict[str, str] = {
    "provider": "a preset name",
    "base_url": "an http:// or https:// URL",
    "api_key": "the key as text",
    "api_key_env": "the name of a variable holding the key, like MY_GROQ_KEY",
    "models": "alias=model,alias2=model2 (a bare model means alias == model), or a JSON object",
    "priority": "a whole number; lower is tried first",
    "weight": "a number > 0",
    "max_retries": "a whole number >= 0",
    "backoff_base": "a number > 0 (waits grow as backoff_base ** retry seconds)",
    "backoff_max": "seconds >= 0",
    "timeout": "seconds > 0",
    "headers": 'a JSON object, like {"X-Title": "my app"}',
    "capabilities": "name=true|false pairs, like vision=false,tools=true, or a JSON object; names: "
                    + ", ".join(Capabilities.names()),
    "allowed_fails": "a whole number >= 1",
    "cooldown": "seconds >= 0",
    "deadline": "seconds > 0",
    "retry_budget": "a share >= 0, like 0.2",
    "retry_budget_min": "a whole number >= 0",
    "backends": "a comma list of names (groq,openrouter) or a JSON list",
    "backend": "one TURNOUT_BACKEND__<NAME>__<FIELD> per field",
}
_SECRET = frozenset({"api_key", "headers"})
_BACKEND_FIELDS = ", ".join(f.upper() for f in ACCEPTED if f not in ("deadline", "retry_budget", "retry_budget_min",
                                                                      "backends", "backend"))


def translate(err: ValidationError, layers: Sequence[Layer]) -> ConfigError:
    """One ConfigError listing every problem; raise it ``from None`` (the original echoes secrets)."""
    return ConfigError(join_problems([_problem(detail, layers) for detail in err.errors(include_url=False)]))


def join_problems(problems: Sequence[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} configuration problems:\n" + "\n".join(f"  - {p}" for p in problems)


def _problem(detail: ErrorDetails, layers: Sequence[Layer]) -> str:
    path = _variable_path(detail["loc"])
    field = path[2] if len(path) > 2 else path[0]
    origin = origin_of(layers, path)
    if detail["type"] == "extra_forbidden":
        return problem_text(origin, None, "is not a backend setting", _BACKEND_FIELDS)
    message = detail["msg"].removeprefix("Value error, ")
    accepted = None if field == "provider" else ACCEPTED.get(field)  # its message lists the presets already
    return problem_text(origin, _input(detail, path), message, accepted, secret=field in _SECRET)


def _variable_path(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    """The part of pydantic's location one variable holds: a backend field, or a top-level field."""
    parts = tuple(str(p) for p in loc)
    return parts[:3] if parts[0] == "backend" else parts[:1]


def _input(detail: ErrorDetails, path: tuple[str, ...]) -> Any:
    """The value as set: pydantic's input is a deeper part of it when the error is deeper in."""
    return detail.get("input") if len(detail["loc"]) == len(path) else None
