"""Every setting turnout reads, declared once: its type, default, scope and what it accepts.

A new setting is one row in :data:`KNOBS` plus its use. From this table come
the pydantic-settings models (``TURNOUT_<NAME>`` and
``TURNOUT_BACKEND__<BACKEND>__<NAME>``), the per-backend inheritance, the
"accepted: ..." part of every error message, what ``turnout config`` shows,
and the defaults of the router's :class:`~turnout.router.Backend` and
:class:`~turnout.router.Router` (which hand them on to the state's limits).

Adding a setting: its row here, then its use. A per-backend one (``both`` or
``backend``) that the router acts on is a field of :class:`~turnout.router.Backend`
with ``default("name")``: the settings hand it over by name. A router-wide one is
a keyword of ``Router`` passed in ``settings/_build.py``'s ``build_router``.

It sits below the router and the settings (it imports only pydantic and the
adapters' ``Capabilities``), so both read the same defaults.

Scopes:

``router``   one value for the whole router: ``TURNOUT_<NAME>``
``both``     per backend, inheriting the router-wide value: ``TURNOUT_BACKEND__<B>__<NAME>``, else
             ``TURNOUT_<NAME>``, else the default
``backend``  per backend only: ``TURNOUT_BACKEND__<B>__<NAME>``
``other``    read with the settings, but not part of routing (``turnout serve``, how settings are read)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Optional, Union

from pydantic import Field, SecretStr

from .adapters import Capabilities

__all__ = ["KNOBS", "Knob", "Scope", "default", "names"]

Scope = Literal["router", "both", "backend", "other"]

Retries = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]
PositiveSeconds = Annotated[float, Field(gt=0)]
Positive = Annotated[float, Field(gt=0)]
Fails = Annotated[int, Field(ge=1)]
PerMinute = Annotated[int, Field(ge=1)]
Share = Annotated[float, Field(ge=0)]
Port = Annotated[int, Field(ge=0, le=65535)]
Bytes = Annotated[int, Field(gt=0)]
Key = Union[SecretStr, Callable[[], Any]]
"""A key, or (passed as a keyword) a function returning a fresh one before each request."""


@dataclass(frozen=True)
class Knob:
    """One setting. ``raw``: its text is parsed by the model's own validator (not as JSON);
    ``secret``: its value is masked in messages; ``unit``: ``"s"`` shows it as seconds."""

    type: Any
    default: Any
    scope: Scope
    accepted: str
    unit: str = ""
    secret: bool = False
    raw: bool = False


KNOBS: dict[str, Knob] = {
    # which backend it is and how to reach it (per backend; resolved with the presets, in settings/_resolve.py)
    "provider": Knob(Optional[str], None, "backend", "a preset name"),
    "base_url": Knob(Optional[str], None, "backend", "an http:// or https:// URL"),
    "api_key": Knob(Optional[Key], None, "backend", "the key as text", secret=True),
    "api_key_env": Knob(Optional[str], None, "backend", "the name of a variable holding the key, like MY_GROQ_KEY"),
    "auth": Knob(
        Optional[Literal["key", "entra", "google", "aws"]],
        None,
        "backend",
        "key (a static key), entra (Microsoft Entra ID, turnout[azure]), google (Google credentials, "
        "turnout[google]) or aws (AWS's credential chain, turnout[aws]); which ones depends on the provider",
    ),
    "api_version": Knob(
        Optional[str], None, "backend", "an Azure OpenAI api-version like 2024-10-21 (unset: the v1 API)"
    ),
    "proxy": Knob(
        Optional[str],
        None,
        "backend",
        "the proxy this backend is reached through, like http://proxy.internal:3128 (http, https or socks5)",
        secret=True,
    ),  # its password is masked
    # which requests it serves, and its share of them
    "models": Knob(
        Optional[dict[str, str]],
        None,
        "backend",
        "alias=model,alias2=model2 (a bare model means alias == model), or a JSON object",
        raw=True,
    ),
    "priority": Knob(Optional[int], None, "backend", "a whole number; lower is tried first"),
    "weight": Knob(Positive, 1.0, "backend", "a number > 0"),
    # retries of one request on one backend (attempts = max_retries + 1), waits growing as backoff_base ** retry
    "max_retries": Knob(Retries, 2, "both", "a whole number >= 0"),
    "backoff_base": Knob(Positive, 2.0, "both", "a number > 0 (waits grow as backoff_base ** retry seconds)"),
    "backoff_max": Knob(Seconds, 30.0, "both", "seconds >= 0", unit="s"),  # also the cap on an honoured Retry-After
    "timeout": Knob(Seconds, 60.0, "both", "seconds >= 0", unit="s"),  # one attempt (0: the SDK's own meaning)
    "first_token_timeout": Knob(
        Optional[PositiveSeconds],
        None,
        "both",
        "seconds > 0 a stream may take to its first token (unset: the attempt's timeout)",
        unit="s",
    ),
    "headers": Knob(
        Optional[dict[str, SecretStr]],
        None,
        "backend",
        'a JSON object, like {"X-Title": "my app"}',
        secret=True,
        raw=True,
    ),
    "capabilities": Knob(
        Optional[dict[str, Optional[bool]]],
        None,
        "backend",
        "name=true|false|unknown pairs, like vision=false,tools=true, or a JSON object; names: "
        + ", ".join(Capabilities.names()),
        raw=True,
    ),
    # the breaker: consecutive failed requests before a backend cools down, and for how long
    "allowed_fails": Knob(Fails, 3, "both", "a whole number >= 1"),
    "cooldown": Knob(Seconds, 30.0, "both", "seconds >= 0", unit="s"),
    # the whole request, across attempts and backends
    "deadline": Knob(Optional[PositiveSeconds], None, "router", "seconds > 0", unit="s"),
    "retry_budget": Knob(Share, 0.2, "router", "a share >= 0, like 0.2"),  # of each backend's requests in 10 s
    "retry_budget_min": Knob(Retries, 10, "router", "a whole number >= 0"),  # retries always allowed besides
    "stateful_backend": Knob(
        Optional[str], None, "router", "the name of a listed backend (files, batches and other stateful calls go to it)"
    ),
    "responses_ttl": Knob(PositiveSeconds, 3600.0, "router", "seconds > 0"),  # stored responses are kept
    "failover_on_content_filter": Knob(
        bool,
        False,
        "router",
        "1 (a content-filter refusal fails over to the next "
        "backend) or 0 (it is raised: the request is refused); true/false, yes/no, "
        "on/off too",
    ),
    # rate windows, counted in the router's state (across processes when it is shared)
    "rpm": Knob(Optional[PerMinute], None, "both", "requests per minute, a whole number >= 1 (unset: no limit)"),
    "tpm": Knob(Optional[PerMinute], None, "both", "tokens per minute, a whole number >= 1 (unset: no limit)"),
    # what its tokens cost (turnout.telemetry's cost; unset: genai-prices' price, if installed, else unknown)
    "price": Knob(
        Optional[dict[str, tuple[float, ...]]],
        None,
        "backend",  # by model (*: any other)
        "USD per million tokens as input,output[,cached] (like 0.15,0.6), or per model as "
        "model=input/output[/cached];*=input/output",
        raw=True,
    ),
    # where the state lives
    "state_url": Knob(
        Optional[str],
        None,
        "router",
        "redis://host:6379/0, rediss:// for TLS, "
        "unix:///path/to/redis.sock, redis+sentinel://host:26379,host2:26379/mymaster (Sentinel), or "
        "redis+cluster://host:7000,host2:7001 (Cluster) (unset: this process's memory)",
        secret=True,
    ),
    "state_prefix": Knob(str, "turnout", "router", "one word that starts every Redis key, like turnout or myapp"),
    "state_timeout": Knob(
        PositiveSeconds, 0.5, "router", "seconds > 0 a Redis command may take before Redis counts as unreachable"
    ),
    # how one priority level's backends are ordered (router/_strategy.py, _affinity.py, _hedge.py)
    "strategy": Knob(
        Literal["weighted", "latency", "least-busy"],
        "weighted",
        "router",
        "weighted (by weight, the default), latency (the fastest lately) or least-busy (fewest in flight)",
    ),
    "affinity": Knob(
        Literal["on", "off", "hash"],
        "on",
        "router",
        "on (a request naming a session goes where its last turn went; the default), off, or hash "
        "(also a conversation named by a hash of its first messages)",
    ),
    "affinity_ttl": Knob(PositiveSeconds, 3600.0, "router", "seconds > 0 a session's backend is remembered", unit="s"),
    "hedge_after": Knob(
        Optional[Annotated[str, Field(pattern=r"^\s*(p\d{1,2}(\.\d+)?|\d*\.?\d+)\s*$")]],
        None,
        "router",
        "seconds > 0, like 0.5, or a percentile of the backend's recent latency, like p95 (unset: no hedging)",
        raw=True,
    ),
    "max_hedges": Knob(Annotated[int, Field(ge=1)], 1, "router", "a whole number >= 1 of hedges per request"),
    # how settings are read
    "strict": Knob(
        bool,
        True,
        "other",
        "1 (a TURNOUT_ variable turnout does not read is an error) or 0 (a warning); true/false, yes/no, on/off too",
    ),
    # `turnout serve` (the extra turnout[serve]); read here so TURNOUT_SERVE_* are known variables
    "serve_host": Knob(
        str,
        "127.0.0.1",
        "other",
        "the address `turnout serve` listens on, like 127.0.0.1 (without keys: a loopback address only)",
    ),
    "serve_port": Knob(Port, 8001, "other", "a port number 1-65535 (0: any free port)"),
    "serve_api_keys": Knob(
        Optional[tuple[SecretStr, ...]],
        None,
        "other",
        "a comma list of keys callers send as `Authorization: Bearer <key>`, or @/path/to/keyfile (one key per line)",
        secret=True,
        raw=True,
    ),
    "serve_max_body": Knob(
        Bytes, 32 * 2**20, "other", "the largest request body in bytes, like 33554432, or with a unit: 32MiB, 10MB"
    ),
    "serve_max_connections": Knob(
        Annotated[int, Field(ge=1)],
        1000,
        "other",
        "a whole number >= 1: open connections one server process holds (more are answered 503)",
    ),
    "serve_header_timeout": Knob(
        PositiveSeconds, 10.0, "other", "seconds > 0 a caller may take to send a request's headers", unit="s"
    ),
    "serve_body_timeout": Knob(
        PositiveSeconds,
        120.0,
        "other",
        "seconds > 0 a caller may take to send a request's body, once its headers are in",
        unit="s",
    ),
    "serve_metrics_open": Knob(
        bool,
        False,
        "other",
        "1 (`GET /metrics` answers without a key) or 0 (it needs one, as "
        "every path but /health does); true/false, yes/no, on/off too",
    ),
}


def default(name: str) -> Any:
    """The default of one setting (for the router's own keyword defaults)."""
    return KNOBS[name].default


def names(*scopes: Scope) -> tuple[str, ...]:
    """The settings of these scopes, in table order."""
    return tuple(name for name, knob in KNOBS.items() if knob.scope in scopes)
