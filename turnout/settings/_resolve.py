"""From settings to a checked list of backends, every value beside its origin.

This is where names become presets, keys and addresses are found, and
per-backend knobs inherit the router-wide ones. The result feeds both the
Router (:mod:`._build`) and ``turnout config``, so what is shown is what runs.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from pydantic import SecretStr

from .._errors import ConfigError
from ..adapters import Capabilities
from ..adapters.presets import PRESETS, Preset, fill_base_url, get_preset, missing_url_variables, url_variables
from ..knobs import KNOBS, names
from ._errors import ACCEPTED, join_problems
from ._models import BackendSettings, TurnoutSettings
from ._names import warn_once
from ._origin import DEFAULT, Origin, Resolved, did_you_mean, problem_text, where
from ._parse import check_url
from ._sources import variable_name

__all__ = ["ResolvedBackend", "ResolvedConfig", "resolve", "discovery_order", "AMBIENT_TOKENS"]

log = logging.getLogger("turnout.settings")

T = TypeVar("T")

AMBIENT_TOKENS = frozenset({"GITHUB_TOKEN", "HF_TOKEN"})
"""Set by CI runners and model downloads for other reasons: they never make a backend by themselves."""

_INHERITED = names("both")
"""Per-backend settings a backend inherits from the router-wide value when it has none of its own."""
_ROUTER_WIDE = names("router")
"""The router-wide settings (``turnout config`` shows them above the backends)."""
_RESOLVED_PER_BACKEND = tuple(name for name in names("backend", "both") if name != "api_key_env")
"""What a backend shows and runs with (``api_key_env`` is where ``api_key`` came from, not a value)."""


def discovery_order() -> list[tuple[str, str]]:
    """(preset, variable) pairs tried when TURNOUT_BACKENDS is unset: cloud presets by their
    standard key variable in table order, then Ollama by OLLAMA_HOST."""
    cloud = [
        (p.name, p.key_env)
        for p in PRESETS.values()
        if p.protocol == "openai" and p.key_env and p.key_env not in AMBIENT_TOKENS
    ]
    ollama = [(p.name, p.url_env) for p in PRESETS.values() if p.protocol == "ollama" and p.url_env]
    return cloud + ollama


class _Values:
    """Resolved values read as attributes (``backend.max_retries.value``): the fields are the
    rows of ``turnout.knobs``, so a new setting needs no new attribute here."""

    def __getattr__(self, name: str) -> Resolved[Any]:
        try:
            return self.__dict__["values"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None


@dataclass(frozen=True)
class ResolvedBackend(_Values):
    """One backend as it will run: every per-backend setting beside its origin (``values``, also read as
    attributes). ``problems`` is empty for a backend that can be built."""

    name: str
    selected_by: Origin
    preset: Optional[Preset]
    values: dict[str, Resolved[Any]]
    problems: tuple[str, ...] = ()

    def fields(self) -> dict[str, Resolved[Any]]:
        """Every resolved field by name, in a stable order (the table's)."""
        return dict(self.values)

    def describe(self) -> dict[str, Any]:
        """JSON-able, keys masked: what ``turnout config --json`` prints for this backend."""
        return {
            "name": self.name,
            "protocol": self.preset.protocol if self.preset else None,
            "selected_by": self.selected_by.as_dict(),
            "fields": {name: _described(r) for name, r in self.fields().items()},
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class ResolvedConfig(_Values):
    """Every backend in priority order, the router-wide values (``values``, also read as attributes:
    ``config.deadline.value``), and what went wrong."""

    backends: tuple[ResolvedBackend, ...]
    env_file: Resolved[Optional[str]]
    values: dict[str, Resolved[Any]] = dataclasses.field(default_factory=dict)
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """JSON-able, keys masked: what ``turnout config --json`` prints."""
        return {
            "env_file": _described(self.env_file),
            **{name: _described(value) for name, value in self.values.items()},
            "backends": [b.describe() for b in self.backends],
            "problems": list(self.problems),
            "notes": list(self.notes),
        }

    def check(self) -> ResolvedConfig:
        """Itself, or one ConfigError naming every problem."""
        if self.problems:
            raise ConfigError(join_problems(self.problems))
        return self


def _described(r: Resolved[Any]) -> dict[str, Any]:
    return {"value": r.shown(), "source": r.origin.as_dict()}


def resolve(settings: TurnoutSettings, *, strict: bool = True) -> ResolvedConfig:
    """Settings -> backends; ``strict=False`` collects problems instead of raising (for ``turnout config``)."""
    problems: list[str] = []
    selected: list[tuple[str, Origin]] = _attempt(problems, lambda: _selection(settings), [])
    backends = tuple(_backend(settings, name, origin) for name, origin in selected)
    problems += [p for b in backends for p in b.problems]
    values = {name: _global(settings, name) for name in _ROUTER_WIDE}
    stateful = values["stateful_backend"]
    if stateful.value is not None and stateful.value not in [b.name for b in backends]:
        problems.append(
            f"stateful_backend {stateful.value!r} ({stateful.origin}) is not a listed backend; "
            f"accepted: one of {', '.join(b.name for b in backends) or 'the listed backends'}"
        )
    config = ResolvedConfig(
        backends=backends,
        env_file=settings.env_file,
        values=values,
        problems=tuple(problems),
        notes=(*settings.ignored, *_orphans(settings, [name for name, _ in selected])),
    )
    for note in config.notes:
        warn_once(note)
    for backend in backends:
        log.debug(
            "backend %s: %s",
            backend.name,
            ", ".join(f"{k}={r.shown()!r} ({r.origin})" for k, r in backend.fields().items()),
        )
    return config.check() if strict else config


def _attempt(problems: list[str], make: Callable[[], T], fallback: T) -> T:
    try:
        return make()
    except ConfigError as err:
        problems.append(str(err))
        return fallback


def _global(settings: TurnoutSettings, field: str) -> Resolved[Any]:
    return Resolved(getattr(settings, field), settings.origin(field))


def _selection(settings: TurnoutSettings) -> list[tuple[str, Origin]]:
    """TURNOUT_BACKENDS, else the backends discovered from provider variables; none at all is an error."""
    if settings.backends is not None:
        if not settings.backends:
            raise ConfigError(problem_text(settings.origin("backends"), [], "lists no backend", ACCEPTED["backends"]))
        return [(name, settings.origin("backends")) for name in settings.backends]
    found = [(name, settings.variable(var)) for name, var in discovery_order()]
    selected = [(name, hit.origin) for name, hit in found if hit is not None and _addressed(settings, PRESETS[name])]
    if not selected:
        raise ConfigError(_nothing_configured())
    return selected


def _addressed(settings: TurnoutSettings, preset: Preset) -> bool:
    """A key alone does not make an Azure or Bedrock backend: its address needs the resource or region too
    (AZURE_OPENAI_API_KEY may be set for other tools)."""
    if not preset.base_url or (preset.url_env and settings.variable(preset.url_env)):
        return True
    return not missing_url_variables(preset.base_url, lambda var: getattr(settings.variable(var), "value", None))


def _nothing_configured() -> str:
    keys = ", ".join(var for _, var in discovery_order())
    return (
        "no backend configured: set TURNOUT_BACKENDS (like TURNOUT_BACKENDS=ollama,groq), "
        f"or a provider's key variable ({keys}), in the environment or in .env"
    )


def _orphans(settings: TurnoutSettings, selected: list[str]) -> list[str]:
    """Sections for backends nobody selected: legal (unlisting a backend switches it off), but
    often a misspelt name, so say so, and which selected name it is close to."""
    names = ", ".join(selected) or "none"
    if settings.backends is not None:
        how = f"which {where(settings.origin('backends'))} does not list ({names})"
    else:
        how = f"which was not discovered (TURNOUT_BACKENDS is unset; discovered: {names})"
    return [
        f"{_setters(settings, name)} configures backend {name!r}, {how}: ignored"
        + did_you_mean(name, selected, str.upper)
        for name in settings.backend
        if name not in selected
    ]


def _setters(settings: TurnoutSettings, name: str) -> str:
    fields: list[str | None] = [*sorted(settings.backend[name].model_fields_set)] or [None]
    return ", ".join(where(settings.origin("backend", name, *([f] if f else []))) for f in fields)


def _backend(settings: TurnoutSettings, name: str, selected_by: Origin) -> ResolvedBackend:
    problems: list[str] = []
    section = settings.backend.get(name, BackendSettings())
    provider = _attempt(problems, lambda: _provider(settings, name, section, selected_by), None)
    preset = provider.value if provider else None
    missing: Resolved[Any] = Resolved(None, Origin("missing", variable_name(("backend", name, "provider"))))
    auth = _attempt(problems, lambda: _auth(settings, name, section, preset), Resolved("key", DEFAULT))
    special: dict[str, Resolved[Any]] = {  # found with the preset's help
        "provider": Resolved(preset.name, provider.origin) if provider and preset else missing,
        "base_url": _attempt(problems, lambda: _base_url(settings, name, section, preset), missing)
        if preset
        else missing,
        "api_key": (
            _attempt(problems, lambda: _api_key(settings, name, section, preset), _no_key(preset))
            if preset and auth.value == "key"
            else _no_key(None)
            if preset
            else missing
        ),
        "auth": auth,
        "api_version": _api_version(settings, name, section, preset),
        "capabilities": _capabilities(settings, name, section, preset),
    }
    values = {
        field: special[field] if field in special else _inherit(settings, name, section, field)
        for field in _RESOLVED_PER_BACKEND
    }
    return ResolvedBackend(name=name, selected_by=selected_by, preset=preset, values=values, problems=tuple(problems))


def _inherit(settings: TurnoutSettings, name: str, section: BackendSettings, field: str) -> Resolved[Any]:
    """The backend's own value, else (for a setting of scope ``both``) the router-wide one
    (TURNOUT_<FIELD>), else the default."""
    own = getattr(section, field)
    if own is not None:
        return Resolved(own, settings.origin("backend", name, field))
    if field in _INHERITED:
        return _global(settings, field)
    return Resolved(KNOBS[field].default, DEFAULT)


def _provider(settings: TurnoutSettings, name: str, section: BackendSettings, selected_by: Origin) -> Resolved[Preset]:
    if section.provider is not None:
        return Resolved(get_preset(section.provider), settings.origin("backend", name, "provider"))
    try:
        preset = get_preset(name)
    except ConfigError:
        raise ConfigError(
            f"{where(selected_by)} lists {name!r}, which is not a provider: set "
            f"{variable_name(('backend', name, 'provider'))} to one of: {', '.join(sorted(PRESETS))}"
        ) from None
    return Resolved(preset, Origin("preset", preset.name))


def _base_url(
    settings: TurnoutSettings, name: str, section: BackendSettings, preset: Preset
) -> Resolved[Optional[str]]:
    """BASE_URL, else the provider SDK's own variable (OPENAI_BASE_URL, OLLAMA_HOST), else the preset's."""
    if section.base_url is not None:
        chosen: Resolved[str] | None = Resolved(section.base_url, settings.origin("backend", name, "base_url"))
    else:
        chosen = settings.variable(preset.url_env) if preset.url_env else None
    if chosen is None:
        if preset.base_url is None:
            raise ConfigError(
                f"backend {name!r}: provider {preset.name!r} has no default address; set "
                f"{variable_name(('backend', name, 'base_url'))}; accepted: {ACCEPTED['base_url']}"
            )
        return _filled(settings, name, preset, preset.base_url)
    try:
        check_url(chosen.value, host_only_ok=preset.protocol == "ollama")
    except ValueError as err:
        raise ConfigError(problem_text(chosen.origin, chosen.value, str(err), ACCEPTED["base_url"])) from None
    return Resolved(chosen.value.strip(), chosen.origin)


def _auth(settings: TurnoutSettings, name: str, section: BackendSettings, preset: Preset | None) -> Resolved[str]:
    """AUTH, else the provider's default credential kind; one the provider does not take is a problem."""
    if section.auth is None:
        return Resolved(preset.auths[0] if preset else "key", Origin("preset", preset.name if preset else None))
    origin = settings.origin("backend", name, "auth")
    if preset is not None and section.auth not in preset.auths:
        raise ConfigError(
            problem_text(origin, section.auth, f"provider {preset.name} does not take it", " or ".join(preset.auths))
        )
    return Resolved(section.auth, origin)


def _api_version(
    settings: TurnoutSettings, name: str, section: BackendSettings, preset: Preset | None
) -> Resolved[Optional[str]]:
    """API_VERSION, else (Azure only) OPENAI_API_VERSION, the variable the SDK's AzureOpenAI reads."""
    if section.api_version is not None:
        return Resolved(section.api_version.strip(), settings.origin("backend", name, "api_version"))
    found = settings.variable("OPENAI_API_VERSION") if preset is not None and preset.constructor == "azure" else None
    return Resolved(found.value.strip(), found.origin) if found is not None else Resolved(None, DEFAULT)


def _filled(settings: TurnoutSettings, name: str, preset: Preset, template: str) -> Resolved[Optional[str]]:
    """The preset's address with the user's resource, region or project from their variables."""
    found = {var: settings.variable(var) for var in url_variables(template)}
    url = fill_base_url(name, template, lambda var: hit.value if (hit := found[var]) is not None else None)
    used = [var for var, hit in found.items() if hit is not None]
    return Resolved(url, Origin("preset", " + ".join([preset.name, *used])))


def _api_key(
    settings: TurnoutSettings, name: str, section: BackendSettings, preset: Preset
) -> Resolved[Optional[SecretStr]]:
    """API_KEY, else the variable API_KEY_ENV names, else the preset's own variables; never another provider's."""
    if section.api_key is not None and section.api_key_env is not None:
        both = f"{where(settings.origin('backend', name, 'api_key'))} and {where(settings.origin('backend', name, 'api_key_env'))}"
        raise ConfigError(f"{both} are both set: the key or the variable holding it, not both")
    if section.api_key is not None:
        return Resolved(section.api_key, settings.origin("backend", name, "api_key"))
    if section.api_key_env is not None:
        return _key_from(settings, section.api_key_env, settings.origin("backend", name, "api_key_env"))
    for variable in preset.key_envs:
        found = settings.variable(variable)
        if found is not None:
            return Resolved(SecretStr(found.value), found.origin)
    if preset.key_envs:
        own = variable_name(("backend", name, "api_key"))
        raise ConfigError(
            f"backend {name!r} (provider {preset.name}) has no API key: set {preset.key_env} "
            f"(or {own}, or {own}_ENV naming the variable that holds it)"
        )
    return _no_key(preset)


def _key_from(settings: TurnoutSettings, variable: str, origin: Origin) -> Resolved[Optional[SecretStr]]:
    found = settings.variable(variable)
    if found is None:
        raise ConfigError(
            problem_text(
                origin,
                variable,
                "names a variable that is set neither in the environment nor in .env",
                "the name of a variable that holds the key",
            )
        )
    return Resolved(SecretStr(found.value), found.origin)


def _no_key(preset: Preset | None) -> Resolved[Optional[SecretStr]]:
    """Local servers need no key; a cloud preset's missing one is shown as the variable to set."""
    if preset is not None and preset.key_env:
        return Resolved(None, Origin("missing", preset.key_env))
    return Resolved(None, Origin("preset", preset.name if preset else None))


def _capabilities(
    settings: TurnoutSettings, name: str, section: BackendSettings, preset: Preset | None
) -> Resolved[Optional[Capabilities]]:
    """The preset's capabilities with CAPABILITIES overrides applied."""
    if preset is None:
        return Resolved(None, DEFAULT)
    if not section.capabilities:
        return Resolved(preset.capabilities, Origin("preset", preset.name))
    return Resolved(
        preset.capabilities.replace(**section.capabilities), settings.origin("backend", name, "capabilities")
    )
