"""Which backends may serve a request, and in what order.

Model routing: ``"<backend>/<model>"`` pins a configured backend; otherwise the
candidates are the backends that declare the model (as an alias or as their
own name for it) plus those that declare no model list. Then backends lacking
a capability the request needs are dropped, and backends of equal priority
are ordered by the router's strategy (``_strategy``: weighted, latency or
least-busy), the backend a session last used first among its level.

Capabilities are yes, no or unknown: a backend that lacks what a request
needs is skipped before anything is sent; one that may or may not have it is
tried after those known to have it, and if it answers that it cannot (a 404,
or a 400 saying so), the router remembers that for the backend and model for
a while (``LEARNED_FOR`` seconds, in ``_retry``).
"""

from __future__ import annotations

from itertools import groupby
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import openai

from .._errors import status_error
from ..adapters.presets import normalize_name
from ._retry import Runner
from ._strategy import STRATEGIES

__all__ = ["Selector", "Candidate"]


class Candidate(NamedTuple):
    runner: Runner
    model: str
    """The name this backend knows the request's model by."""
    unsure: tuple[str, ...] = ()
    """Flags the request needs that this backend may not have (unknown): its refusal is a lesson, not an error."""


class Choice(NamedTuple):
    """A model's candidates, with the capability flags some of them lack (worked out once per model)."""

    candidates: tuple[Candidate, ...]
    lacking: dict[str, tuple[str, ...]]  # kind of request -> flags to check


_CACHE_SIZE = 256
_CHAT_FLAGS = ("tools", "vision", "json_mode", "json_schema")
_CHAT = {"chat": _CHAT_FLAGS, "chat+stream": ("streaming", *_CHAT_FLAGS)}


def kind_of(endpoint: str, need: str | None, stream: bool) -> str:
    """The key of the flags a request checks: chat's depend on its parameters, other endpoints need one flag."""
    if endpoint == "chat":
        return "chat+stream" if stream else "chat"
    return need or endpoint


def _flags(kind: str) -> tuple[str, ...]:
    return _CHAT.get(kind) or (kind,)


class Selector:
    def __init__(self, runners: Sequence[Runner], strategy: str = "weighted") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
        self.strategy = strategy
        self._order_level = STRATEGIES[strategy]
        ranked = sorted(enumerate(runners), key=lambda ir: (_priority(ir[1], ir[0]), ir[0]))
        self.runners = [r for _, r in ranked]
        self._rank = {id(r): _priority(r, i) for i, r in ranked}
        self._by_name = {normalize_name(r.name): r for r in self.runners}
        self._open = [r for r in self.runners if r.backend.models is None]
        self._declared: dict[str, list[tuple[Runner, str]]] = {}  # model -> (backend, its name for it)
        for r in self.runners:
            for alias, target in (r.backend.models or {}).items():
                self._add(alias, r, target)
                self._add(target, r, target)
        ranks = [self._rank[id(r)] for r in self.runners]
        self._shares_load = len(set(ranks)) < len(ranks)
        self._cache: dict[str, Choice] = {}

    def _add(self, model: str, runner: Runner, target: str) -> None:
        entries = self._declared.setdefault(model, [])
        if all(r is not runner for r, _ in entries):
            entries.append((runner, target))

    # -- model routing -------------------------------------------------------
    def choice_for(self, model: str) -> Choice:
        """The backends for ``model`` in rank order; remembered for the models last asked for."""
        found = self._cache.get(model)
        if found is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            found = self._cache[model] = Choice(self._candidates_for(model), {})
        return found

    def _candidates_for(self, model: str) -> tuple[Candidate, ...]:
        if not model:  # a request without one (where the SDK allows that): every backend, each its default
            return tuple(Candidate(r, "") for r in self.runners)
        pinned = self._pinned(model)
        if pinned is not None:
            return (pinned,)
        chosen = {id(r) for r, _ in self._declared.get(model, ())}
        found = list(self._declared.get(model, ())) + [(r, model) for r in self._open if id(r) not in chosen]
        return tuple(Candidate(r, m) for r, m in sorted(found, key=lambda c: self._rank[id(c[0])]))

    def _pinned(self, model: str) -> Candidate | None:
        prefix, sep, rest = model.partition("/")
        runner = self._by_name.get(normalize_name(prefix)) if sep and rest else None
        if runner is None:
            return None
        return Candidate(runner, (runner.backend.models or {}).get(rest, rest))

    def not_found(self, model: str) -> openai.NotFoundError:
        known = sorted(self._declared)
        pins = [f"{r.name}/<model>" for r in self.runners]
        return status_error(
            openai.NotFoundError,
            404,
            f"no backend serves model {model!r}; configured models: {', '.join(known) or 'none'}; "
            f"pin a backend with: {', '.join(pins)}",
            code="model_not_found",
        )

    # -- ordering --------------------------------------------------------------
    def order(self, candidates: Sequence[Candidate], prefer: str | None = None) -> list[Candidate]:
        """Priority levels in rank order, each ordered by the strategy; ``prefer`` (a session's backend)
        leads its own level."""
        if not self._shares_load or len(candidates) < 2:
            return list(candidates)
        ordered: list[Candidate] = []
        for _, group in groupby(candidates, key=lambda c: self._rank[id(c[0])]):
            level = list(group)
            if len(level) < 2:
                ordered.extend(level)
                continue
            found = next((c for c in level if c.runner.name == prefer), None) if prefer is not None else None
            if found is not None:
                ordered.append(found)
                ordered.extend(self._order_level([c for c in level if c is not found]))
            else:
                ordered.extend(self._order_level(level))
        return ordered

    # -- capabilities ------------------------------------------------------------
    def capable(self, choice: Choice, kind: str, params: Mapping[str, Any]) -> Sequence[Candidate]:
        """Those known to have what the request needs, then those that may; needs are read only for
        flags some candidate is not known to have."""
        lacking = choice.lacking.get(kind)
        if lacking is None:
            lacking = choice.lacking[kind] = _lacking(choice.candidates, _flags(kind))
        needs = [f for f in lacking if _NEEDS.get(f, _always)(params)]
        if not needs:
            return choice.candidates
        sure: list[Candidate] = []
        unsure: list[Candidate] = []
        for c in choice.candidates:
            flags = [c.runner.has(f, c.model) for f in needs]
            if all(flags):
                sure.append(c)
            elif False not in flags:
                unsure.append(c._replace(unsure=tuple(f for f, v in zip(needs, flags) if v is None)))
        if not sure and not unsure:
            raise _incapable(choice.candidates, needs)
        return sure + unsure if unsure else sure


def _lacking(candidates: Sequence[Candidate], flags: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f for f in flags if not all(getattr(c.runner.adapter.capabilities, f) for c in candidates))


def _always(params: Mapping[str, Any]) -> bool:
    return True


def _priority(runner: Runner, index: int) -> int:
    return runner.backend.priority if runner.backend.priority is not None else index


def _wants_format(params: Mapping[str, Any], wanted: str) -> bool:
    fmt = params.get("response_format")
    return fmt is not None and isinstance(fmt, (dict, Mapping)) and fmt.get("type") == wanted


_NEEDS: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "tools": lambda params: bool(params.get("tools") or params.get("functions")),
    "json_mode": lambda params: _wants_format(params, "json_object"),
    "json_schema": lambda params: _wants_format(params, "json_schema"),
    "vision": lambda params: _has_image(params.get("messages") or ()),
}
"""Does a chat request with these parameters need the flag? (Any other flag of a request's kind: always.)"""


def _has_image(messages: Iterable[Any]) -> bool:
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
        if type(content) is list:
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("image_url", "input_image"):
                    return True
    return False


def _incapable(candidates: Sequence[Candidate], needs: list[str]) -> openai.BadRequestError:
    names = ", ".join(c.runner.name for c in candidates)
    return status_error(
        openai.BadRequestError,
        400,
        f"the request needs {' and '.join(needs)}, which no candidate backend ({names}) declares; "
        f"add a backend that can, or set its capabilities",
        code="unsupported_capability",
    )
