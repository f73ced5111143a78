"""The settings models: what each variable holds and what it accepts.

``TurnoutSettings`` is a pydantic-settings model read from keyword
arguments, the environment and ``.env``, in that order of precedence. Every
per-backend knob is optional: unset, it inherits the router-wide value.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import EllipsisType
from typing import Annotated, Any, Optional, Sequence

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .._errors import ConfigError
from ..adapters.presets import get_preset
from ..knobs import KNOBS, Knob, names
from ._errors import translate
from ._names import ENV_FILE_VARIABLE, Names, check_variables
from ._origin import DEFAULT, Origin, Resolved, did_you_mean, problem_text
from ._parse import check_proxy, parse_capabilities, parse_flag, parse_headers, parse_models
from ._sources import Layer, lookup, make_layers, origin_of, variable_name

__all__ = ["BackendSettings", "TurnoutSettings", "ENV_FILE_VARIABLE"]

_DEFAULT_ENV_FILE = ".env"

_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STATE_SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "redis+cluster://",
    "rediss+cluster://",
)  # turnout.state._redis.SCHEMES, without importing redis-py


def _field(knob: Knob, *, per_backend: bool) -> tuple[Any, Any]:
    """A row of ``turnout.knobs`` as a pydantic field: a backend's own is optional (unset: it inherits)."""
    kind = Optional[knob.type] if per_backend else knob.type
    return (Annotated[kind, NoDecode] if knob.raw else kind), (None if per_backend else knob.default)


_BackendFields: Any = create_model(  # type: ignore[call-overload]  # every per-backend row of turnout.knobs
    "_BackendFields",
    __base__=BaseModel,
    **{name: _field(KNOBS[name], per_backend=True) for name in names("backend", "both")},
)


class BackendSettings(_BackendFields):  # type: ignore[misc]
    """One backend's own settings (``TURNOUT_BACKEND__<NAME>__<FIELD>``); unset fields inherit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str | None) -> str | None:
        return None if value is None else get_preset(value).name

    @field_validator("api_key_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        if value is not None and not _VARIABLE.match(value.strip()):
            raise ValueError("is not a variable name")
        return None if value is None else value.strip()

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        return None if value is None else check_proxy(value)

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> dict[str, str] | None:
        return parse_models(value)

    @field_validator("headers", mode="before")
    @classmethod
    def _parse_headers(cls, value: Any) -> dict[str, SecretStr] | None:
        return parse_headers(value)

    @field_validator("capabilities", mode="before")
    @classmethod
    def _parse_capabilities(cls, value: Any) -> dict[str, bool | None] | None:
        return parse_capabilities(value)

    @field_validator("price", mode="before")
    @classmethod
    def _parse_price(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        from ..telemetry._cost import parse_price

        return {
            model: (p.input, p.output) + ((p.cached,) if p.cached is not None else ())
            for model, p in parse_price(value).items()
        }


class _Selection(BaseSettings):
    """Which backends there are: the two fields the table of knobs does not hold."""

    backends: Annotated[Optional[list[str]], NoDecode] = None
    backend: dict[str, BackendSettings] = Field(default_factory=dict)


_Fields: Any = create_model(  # type: ignore[call-overload]  # the selection, then the other rows
    "_Fields",
    __base__=_Selection,
    **{name: _field(KNOBS[name], per_backend=False) for name in names("router", "both", "other")},
)


class TurnoutSettings(_Fields):  # type: ignore[misc]
    """Every ``TURNOUT_*`` variable, plus where each value came from.

    Build it with no arguments to read the environment and ``.env``, or pass
    fields as keyword arguments (they win over both); ``_env_file`` picks
    another file (``None``: read none). Invalid values raise ``ConfigError``
    naming the variable, and so does a ``TURNOUT_`` variable no field reads
    (with ``strict=False``, ``TURNOUT_STRICT=0``: a warning).
    """

    model_config = SettingsConfigDict(
        env_prefix="TURNOUT_",
        env_nested_delimiter="__",
        env_ignore_empty=True,  # ``export GROQ_API_KEY=`` means unset, as most tools read it
        extra="ignore",  # a user's .env holds other programs' variables
        dotenv_filtering="only_existing",  # ... which must not even reach pydantic-settings' DEBUG log
        case_sensitive=False,
        frozen=True,
    )

    _layers: tuple[Layer, ...] = PrivateAttr(default=())
    _env_file: Resolved[Optional[str]] = PrivateAttr(default=Resolved(None, DEFAULT))
    _ignored: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("strict", "failover_on_content_filter", "serve_metrics_open", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> bool:
        return parse_flag(value)  # the reading _strict() does ahead of validation: the two must agree

    @field_validator("state_url")
    @classmethod
    def _state_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().lower().startswith(_STATE_SCHEMES):
            raise ValueError("is not a Redis URL")
        return None if value is None else value.strip()

    @field_validator("state_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value.strip()):
            raise ValueError("must be one word")
        return value.strip()

    @field_validator("serve_api_keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> tuple[SecretStr, ...] | None:
        return _parse_keys(value)

    @field_validator("serve_max_body", mode="before")
    @classmethod
    def _bytes(cls, value: Any) -> Any:
        return _parse_bytes(value)

    def __init__(self, _env_file: str | os.PathLike[str] | None | EllipsisType = ..., **values: Any) -> None:
        _reject_unknown(values)
        names = Names.of(type(self), BackendSettings)
        env_file = _choose_env_file(_env_file)
        layers = make_layers(type(self), values, None if env_file.value is None else Path(env_file.value).resolve())
        strict = _strict(values, layers)
        if not strict:
            for layer in layers:
                layer.lenient(names.backend_fields)
        try:
            super().__init__(_build_sources=(layers, values))
        except ValidationError as err:
            raise translate(err, layers, names) from None
        self._layers = layers
        self._env_file = env_file
        self._ignored = check_variables(layers, names, [*(self.backends or ()), *self.backend], strict=strict)

    def origin(self, *path: str) -> Origin:
        """Where the value at ``path`` (``"backend", "groq", "max_retries"``) came from."""
        return origin_of(self._layers, path)

    def variable(self, name: str) -> Resolved[str] | None:
        """A variable outside the TURNOUT_ prefix, environment first, then .env."""
        return lookup(self._layers, name)

    @property
    def env_file(self) -> Resolved[Optional[str]]:
        """The .env file read (``None`` if none), and what chose it."""
        return self._env_file

    @property
    def ignored(self) -> tuple[str, ...]:
        """Warnings for TURNOUT_ variables no field reads, let pass because ``strict`` is off."""
        return self._ignored


def _parse_keys(value: Any) -> tuple[SecretStr, ...] | None:
    """``key1,key2``, or ``@path`` to a file of keys (one per line or comma-separated; ``#`` comments).

    A file keeps keys out of the process environment, which other processes of the same user can read.
    Messages never repeat a key."""
    if value is None:
        return None
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str) and value.strip().startswith("@"):
        path = Path(value.strip()[1:]).expanduser()
        try:
            value = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ValueError(f"cannot read the key file {str(path)!r}: {err.strerror or err}") from None
        value = ",".join(line.split("#", 1)[0] for line in value.splitlines())
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError("must be a comma list of keys or @file")
    keys = [item.get_secret_value() if isinstance(item, SecretStr) else item for item in items]
    if any(not isinstance(key, str) for key in keys):
        raise ValueError("every key must be text")
    keys = [key.strip() for key in keys if key.strip()]
    if not keys:
        raise ValueError("holds no key")
    if any(len(key.split()) != 1 for key in keys):
        raise ValueError("a key contains whitespace")
    return tuple(SecretStr(key) for key in keys)


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
}


def _parse_bytes(value: Any) -> Any:
    """``33554432``, ``32MiB``, ``10MB`` (a number, then an optional unit) as bytes; the rest left to pydantic."""
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError("is not a size")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _reject_unknown(values: dict[str, Any]) -> None:
    """``extra='ignore'`` is for .env lines; a misspelt keyword argument is a mistake to report."""
    unknown = sorted(set(values) - set(TurnoutSettings.model_fields))
    if unknown:
        accepted = ", ".join(TurnoutSettings.model_fields)
        guess = did_you_mean(unknown[0], TurnoutSettings.model_fields) if len(unknown) == 1 else ""
        raise ConfigError(f"unknown setting {', '.join(unknown)}; accepted: {accepted}{guess}")


def _strict(values: dict[str, Any], layers: Sequence[Layer]) -> bool:
    """TURNOUT_STRICT, read ahead of the other fields: when off, unknown backend fields must be
    left out before pydantic sees them. A bad value counts as on; validation then reports it."""
    found = lookup(layers, variable_name(("strict",)))
    raw = values["strict"] if "strict" in values else found.value if found is not None else True
    try:
        return parse_flag(raw)
    except ValueError:
        return True


def _choose_env_file(explicit: str | os.PathLike[str] | None | EllipsisType) -> Resolved[Optional[str]]:
    """The keyword, else TURNOUT_ENV_FILE, else ./.env; a file named explicitly must exist."""
    if explicit is not ...:
        chosen = Resolved(None if explicit is None else os.fspath(explicit), Origin("code", "_env_file"))
    elif os.environ.get(ENV_FILE_VARIABLE):
        chosen = Resolved(os.environ[ENV_FILE_VARIABLE], Origin("environment", ENV_FILE_VARIABLE))
    else:
        return Resolved(_DEFAULT_ENV_FILE if Path(_DEFAULT_ENV_FILE).is_file() else None, DEFAULT)
    if chosen.value is not None and not Path(chosen.value).is_file():
        raise ConfigError(problem_text(chosen.origin, chosen.value, "no such file", "the path of a .env file"))
    return chosen
