"""Which ``TURNOUT_`` variables turnout reads, and what a misspelt one probably meant.

pydantic-settings skips a variable no field reads (it has to: ``.env`` holds
other programs' lines), so ``TURNOUT_MAX_RETRYS=5`` would leave the user
believing a setting is in force that is not. Every ``TURNOUT_`` variable
outside the known names is therefore an error, or with ``TURNOUT_STRICT=0``
one warning per process.

The known names come from the models and nowhere else: ``TURNOUT_<FIELD>``
for each field of TurnoutSettings, ``TURNOUT_BACKEND__<NAME>__<FIELD>`` for
each field of BackendSettings (pydantic rejects a misspelt field there
itself), and ``TURNOUT_ENV_FILE``, which is read before the models are. A
field added to a model is a known variable at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Sequence

from pydantic import BaseModel

from .._errors import ConfigError
from ._errors import join_problems, unknown_field
from ._origin import did_you_mean
from ._sources import PREFIX, Layer, variable_name

__all__ = ["ENV_FILE_VARIABLE", "Names", "check_variables", "warn_once"]

ENV_FILE_VARIABLE = "TURNOUT_ENV_FILE"
_SECTION = variable_name(("backend",)) + "__"

log = logging.getLogger("turnout.settings")
_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """Log ``message`` as a warning the first time this process meets it.

    Settings are read for every client a program builds; one warning per
    variable is a notice, one per client would be noise.
    """
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


@dataclass(frozen=True)
class Names:
    """The field names of the two settings models, as variables."""

    fields: tuple[str, ...]
    backend_fields: tuple[str, ...]

    @classmethod
    def of(cls, settings: type[BaseModel], backend: type[BaseModel]) -> Names:
        return cls(tuple(settings.model_fields), tuple(backend.model_fields))

    @property
    def variables(self) -> tuple[str, ...]:
        """Every variable turnout reads, backend sections aside."""
        return (*(variable_name((field,)) for field in self.fields), ENV_FILE_VARIABLE)

    def reads(self, variable: str) -> bool:
        name = variable.upper()
        return name in self.variables or name.startswith(_SECTION)

    def guess(self, variable: str, backends: Iterable[str]) -> str:
        """``; did you mean TURNOUT_X?``, the sections of ``backends`` included, else nothing.

        What follows the prefix is compared: ``TURNOUT_`` in common would make
        every pair of names look alike.
        """
        known = [*self.variables, *(variable_name(("backend", b, f)) for b in backends for f in self.backend_fields)]
        return did_you_mean(
            variable.removeprefix(PREFIX), [k.removeprefix(PREFIX) for k in known], lambda rest: PREFIX + rest
        )


def check_variables(layers: Sequence[Layer], names: Names, backends: Sequence[str], *, strict: bool) -> tuple[str, ...]:
    """Every TURNOUT_ variable no field reads: one ConfigError naming them all, or when not
    ``strict`` one warning each (returned too, for ``turnout config`` to show), with the backend
    fields the lenient layers left out."""
    problems = [
        _unknown(layer, variable, names, backends, strict)
        for layer in layers
        for variable in layer.variables()
        if not names.reads(variable)
    ]
    problems += [unknown_field(layer, path, names) for layer in layers for path in layer.dropped]
    if strict and problems:
        raise ConfigError(join_problems(problems))
    ignored = tuple(f"{problem} (ignored: TURNOUT_STRICT is off)" for problem in problems)
    for message in ignored:
        warn_once(message)
    return ignored


def _unknown(layer: Layer, variable: str, names: Names, backends: Sequence[str], strict: bool) -> str:
    head = f"{variable} (in {layer.file})" if layer.file else f"{variable} (in the environment)"
    guess = names.guess(variable, backends)
    if guess:
        return f"{head}: is not a turnout variable{guess}"
    known = ", ".join([*names.variables, variable_name(("backend", "<NAME>", "<FIELD>"))])
    newer = " (another turnout version's? TURNOUT_STRICT=0 lets it pass with a warning)" if strict else ""
    return f"{head}: is not a turnout variable{newer}; accepted: {known}"
