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
from ..knobs import KNOBS
from ._origin import Origin, did_you_mean, problem_text
from ._sources import Layer, origin_of

if TYPE_CHECKING:
    from ._names import Names

__all__ = ["ACCEPTED", "translate", "join_problems", "unknown_field"]

ACCEPTED: dict[str, str] = {
    **{name: knob.accepted for name, knob in KNOBS.items()},
    "backends": "a comma list of names (groq,openrouter) or a JSON list",
    "backend": "one TURNOUT_BACKEND__<NAME>__<FIELD> per field",
}
"""What each setting accepts, as every message about a bad value ends."""
_SECRET = frozenset(name for name, knob in KNOBS.items() if knob.secret)


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
    return problem_text(origin, None, "is not a backend setting", accepted) + did_you_mean(
        path[-1], names.backend_fields, lambda field: layer.display((*path[:-1], field))
    )


def _variable_path(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    """The part of pydantic's location one variable holds: a backend field, or a top-level field."""
    parts = tuple(str(p) for p in loc)
    return parts[:3] if parts[0] == "backend" else parts[:1]


def _input(detail: ErrorDetails, path: tuple[str, ...]) -> Any:
    """The value as set: pydantic's input is a deeper part of it when the error is deeper in."""
    return detail.get("input") if len(detail["loc"]) == len(path) else None
