"""The three layers settings come from, and which variable set what.

pydantic-settings reads keyword arguments, the environment and ``.env``
and merges them, highest first. Each source is wrapped in a :class:`Layer`
that brings its output into one shape before the merge:

* backend names are normalized (the env source lower-cases ``dict`` keys,
  keyword arguments keep the caller's case: both must land on one key);
* objects in a JSON ``TURNOUT_BACKENDS`` are lifted into per-backend
  sections, so the normal per-field merge applies to them (a
  ``TURNOUT_BACKEND__<NAME>__<FIELD>`` in the same layer wins over them);
* API keys and headers are wrapped in ``SecretStr`` at once, so no raw
  secret sits in the state pydantic-settings may log at DEBUG.

A layer keeps its output, so every value can later be traced to the
variable that set it (:func:`origin_of`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource, InitSettingsSource, PydanticBaseSettingsSource

from .._errors import ConfigError
from ..adapters.presets import normalize_name
from ._origin import DEFAULT, Origin, OriginKind, Resolved, problem_text
from ._parse import json_value, parse_names

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

__all__ = ["Layer", "make_layers", "origin_of", "lookup", "variable_name", "PREFIX"]

T = TypeVar("T")

PREFIX = "TURNOUT_"
_SECRET_FIELDS = ("api_key", "headers")
_SECRET_SETTINGS = ("serve_api_keys",)  # router-wide fields that hold secrets


class Layer(PydanticBaseSettingsSource):
    """One source (keyword arguments, environment, or a .env file), normalized and remembered."""

    def __init__(self, inner: PydanticBaseSettingsSource, kind: OriginKind, file: str | None = None) -> None:
        super().__init__(inner.settings_cls)
        self.inner = inner
        self.kind = kind
        self.file = file
        self.__name__ = f"turnout {kind} ({type(inner).__name__})"  # the key pydantic-settings logs it under
        self.data: dict[str, Any] = {}
        self.lifted: dict[tuple[str, ...], str] = {}
        """Paths set by an object in a JSON TURNOUT_BACKENDS -> the name to show for them."""
        self.fields: tuple[str, ...] | None = None
        self.dropped: list[tuple[str, ...]] = []
        """Paths of backend fields no model field reads, left out because the layer is lenient."""

    def lenient(self, fields: Sequence[str]) -> None:
        """Leave out backend fields not in ``fields`` (TURNOUT_STRICT=0: the environment may be
        shared with a turnout that has more); keyword arguments stay checked, they are this program's."""
        if self.kind != "code":
            self.fields = tuple(fields)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ delegates to the wrapped source

    def __call__(self) -> dict[str, Any]:
        data = dict(self.inner())
        for field in _SECRET_SETTINGS:
            if isinstance(data.get(field), str):
                data[field] = SecretStr(data[field])
        sections = self._sections(data.get("backend"))
        if "backends" in data:
            data["backends"] = self._lift(data["backends"], sections)
        if sections or "backend" in data:
            data["backend"] = {name: _hide_secrets(self._known(name, section)) for name, section in sections.items()}
        self.data = data
        return data

    def _sections(self, value: Any) -> dict[str, Any]:
        """Per-backend sections keyed by normalized name; a name given twice is ambiguous."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(
                ("backend",),
                None,
                "must be an object of backend sections",
                accepted='{"groq": {"max_retries": 3}}, or one TURNOUT_BACKEND__<NAME>__<FIELD> per field',
            )
        sections: dict[str, Any] = {}
        for name, section in value.items():
            key = normalize_name(str(name))
            if key in sections:
                raise self.error(
                    ("backend", key),
                    None,
                    f"backend {key!r} is configured twice, under different spellings",
                    accepted="one spelling per backend",
                )
            sections[key] = section.model_dump(exclude_unset=True) if isinstance(section, BaseModel) else section
        return sections

    def _lift(self, value: Any, sections: dict[str, Any]) -> list[str]:
        """TURNOUT_BACKENDS as a list of normalized names; its objects become sections."""
        secret = _is_json(value)  # objects may hold keys: never echo them
        entries = self._attempt(("backends",), value, lambda: _entries(value), secret=secret)
        names = [self._entry(i, entry, sections) for i, entry in enumerate(entries)]
        self._attempt(("backends",), value, lambda: _unique(names), secret=secret)
        return names

    def _entry(self, index: int, entry: Any, sections: dict[str, Any]) -> str:
        if isinstance(entry, str):
            return normalize_name(entry)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise self.error(
                ("backends",),
                None,
                f'entry {index} must be a name or an object with a "name"',
                accepted='["groq", {"name": "box", "provider": "vllm", "base_url": "http://..."}]',
            )
        name = normalize_name(entry["name"])
        fields = {str(k).lower(): v for k, v in entry.items() if k != "name"}
        own = sections.get(name)
        own = own if isinstance(own, dict) else {}
        sections[name] = {**fields, **own}
        label = f"{self.display(('backends',))}[{index}]"
        self.lifted.update({("backend", name, f): f"{label}.{f}" for f in fields if f not in own})
        if not own:
            self.lifted[("backend", name)] = label
        return name

    def _known(self, name: str, section: Any) -> Any:
        if self.fields is None or not isinstance(section, Mapping):
            return section
        self.dropped += [("backend", name, str(k).lower()) for k in section if str(k).lower() not in self.fields]
        return {k: v for k, v in section.items() if str(k).lower() in self.fields}

    def _attempt(self, path: tuple[str, ...], value: Any, parse: Callable[[], T], *, secret: bool = False) -> T:
        try:
            return parse()
        except ValueError as err:
            raise self.error(path, None if secret else value, str(err)) from None

    def error(self, path: tuple[str, ...], value: Any, problem: str, accepted: str | None = None) -> ConfigError:
        return ConfigError(
            problem_text(
                Origin(self.kind, self.display(path), self.file),
                value,
                problem,
                accepted or "a comma list of names (groq,openrouter) or a JSON list",
            )
        )

    def has(self, path: Sequence[str]) -> bool:
        node: Any = self.data
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                return False
            node = node[key]
        return True

    def display(self, path: Sequence[str]) -> str:
        """The name a user knows for ``path`` in this layer: the variable, or the keyword argument."""
        path = tuple(path)
        for depth in range(len(path), 0, -1):
            if path[:depth] in self.lifted:
                return self.lifted[path[:depth]] + "".join(f".{p}" for p in path[depth:])
        if self.kind == "code":
            return ".".join(path)
        return _set_variable(self.inner, path)

    def raw(self, variable: str) -> str | None:
        """A variable outside our prefix (``GROQ_API_KEY``) as this layer holds it."""
        if isinstance(self.inner, EnvSettingsSource):
            value = self.inner.env_vars.get(variable.lower())
            return value if value else None
        return None

    def variables(self) -> list[str]:
        """Every TURNOUT_ variable this layer holds, read or not, upper-cased (keyword arguments hold none).

        pydantic-settings passes on only the ones a field reads; the rest are
        kept here so a misspelt one can be reported instead of quietly ignored.
        """
        env_vars: Mapping[str, Any] = getattr(self.inner, "env_vars", {})
        return sorted(name.upper() for name in env_vars if name.upper().startswith(PREFIX))


def _set_variable(source: PydanticBaseSettingsSource, path: tuple[str, ...]) -> str:
    """The variable that set ``path``: the longest prefix of it that is a variable of the source."""
    env_vars: Mapping[str, Any] = getattr(source, "env_vars", {})
    for depth in range(len(path), 0, -1):
        name = variable_name(path[:depth])
        if name.lower() in env_vars:
            return name
    return variable_name(path)


def variable_name(path: Sequence[str]) -> str:
    """``("backend", "groq", "max_retries")`` -> ``TURNOUT_BACKEND__GROQ__MAX_RETRIES``."""
    return PREFIX + "__".join(part.upper() for part in path)


def _is_json(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("[")


def _entries(value: Any) -> list[Any]:
    """The items of TURNOUT_BACKENDS: a JSON list, a comma list, or a list given in code."""
    if _is_json(value):
        value = json_value(value, "the value")
    elif isinstance(value, str):
        return parse_names(value)
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a comma list of names or a JSON list")
    return list(value)


def _unique(names: list[str]) -> None:
    parse_names(names)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"lists {', '.join(repeated)} more than once")


def _hide_secrets(section: Any) -> Any:
    if not isinstance(section, Mapping):
        return section
    hidden = {str(k).lower(): v for k, v in section.items()}
    for field in _SECRET_FIELDS:
        if isinstance(hidden.get(field), str):
            hidden[field] = SecretStr(hidden[field])
    return hidden


def make_layers(
    settings_cls: type[BaseSettings], init_kwargs: dict[str, Any], env_file: Path | None
) -> tuple[Layer, ...]:
    """Keyword arguments over the environment over the .env file."""
    layers = [
        Layer(InitSettingsSource(settings_cls, init_kwargs=init_kwargs), "code"),
        Layer(EnvSettingsSource(settings_cls), "environment"),
    ]
    if env_file is not None:
        layers.append(Layer(DotEnvSettingsSource(settings_cls, env_file=env_file), "dotenv", str(env_file)))
    return tuple(layers)


def origin_of(layers: Sequence[Layer], path: Sequence[str]) -> Origin:
    """The highest layer holding ``path`` (it supplied the merged value), else the default."""
    for layer in layers:
        if layer.has(path):
            return Origin(layer.kind, layer.display(path), layer.file)
    return DEFAULT


def lookup(layers: Sequence[Layer], variable: str) -> Resolved[str] | None:
    """A provider's own variable (``GROQ_API_KEY``, ``OLLAMA_HOST``): the environment, then .env."""
    for layer in layers:
        value = layer.raw(variable)
        if value is not None:
            return Resolved(value, Origin(layer.kind, variable, layer.file))
    return None
