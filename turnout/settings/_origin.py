"""Where a resolved value came from, and how secrets are shown.

``turnout config`` prints every value beside its origin, and every error
names the variable to fix; both read the same :class:`Origin`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Literal, TypeVar

from pydantic import SecretStr

from .._redact import redact_url
from ..adapters import Capabilities

__all__ = ["Origin", "Resolved", "mask", "shown", "where", "problem_text", "did_you_mean", "DEFAULT"]

T = TypeVar("T")

OriginKind = Literal["default", "preset", "dotenv", "environment", "code", "missing"]


@dataclass(frozen=True)
class Origin:
    """One value's source.

    kind       default | preset | dotenv | environment | code | missing
    variable   the variable (or keyword argument) that set it, or the preset's name
    file       the .env file, for ``dotenv``
    """

    kind: OriginKind
    variable: str | None = None
    file: str | None = None

    def __str__(self) -> str:
        if self.kind == "dotenv":
            return f"{self.variable} in {self.file}"
        if self.kind == "environment":
            return f"environment {self.variable}"
        if self.kind == "code":
            return f"keyword argument {self.variable}"
        if self.kind == "missing":
            return f"missing (set {self.variable})"
        if self.kind == "preset" and self.variable:
            return f"preset {self.variable}"
        return self.kind

    def as_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "variable": self.variable, "file": self.file, "text": str(self)}


DEFAULT = Origin("default")


@dataclass(frozen=True)
class Resolved(Generic[T]):
    """A value beside its origin."""

    value: T
    origin: Origin

    def shown(self) -> Any:
        """The value as ``turnout config`` may print it: secrets masked, mappings copied."""
        return shown(self.value)


def mask(secret: str | SecretStr | None) -> str | None:
    """``sk-…abcd`` for a long key; short ones are hidden whole, their ends would give too much away."""
    if secret is None:
        return None
    text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if len(text) < 16:
        return "****"
    return f"{text[:3]}…{text[-4:]}"


def shown(value: Any) -> Any:
    """A JSON-able copy of ``value`` with every :class:`SecretStr` masked."""
    if isinstance(value, SecretStr):
        return mask(value)
    if callable(value) and not isinstance(value, type):  # a key function (passed as a keyword)
        return "(a function)"
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, Capabilities):
        flags = {name: getattr(value, name) for name in value.names()}  # yes, or unknown marked with "?"
        return [name if flag else f"{name}?" for name, flag in flags.items() if flag is not False]
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [shown(v) for v in value]
    return value


def where(origin: Origin) -> str:
    """How an error message names the thing to fix."""
    if origin.kind == "dotenv":
        return f"{origin.variable} (in {origin.file})"
    if origin.kind == "code":
        return f"keyword argument {origin.variable}"
    return origin.variable or str(origin)


def problem_text(origin: Origin, value: Any, problem: str, accepted: str | None = None, *, secret: bool = False) -> str:
    """``VARIABLE='value': what is wrong; accepted: what would do``, the one shape of every config error."""
    head = where(origin)
    if value is not None:
        head += "=" + repr(
            mask(value if isinstance(value, (str, SecretStr)) else str(value)) if secret else shown(value)
        )
    return f"{head}: {problem}" + (f"; accepted: {accepted}" if accepted else "")


def did_you_mean(word: str, candidates: Iterable[str], spell: Callable[[str], str] = str) -> str:
    """``; did you mean X?`` for the candidate ``word`` most probably misspells (difflib), else nothing.

    ``spell`` turns the candidate into the name the user should write.
    """
    import difflib  # only a failing configuration pays for it

    found = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean {spell(found[0])}?" if found else ""
