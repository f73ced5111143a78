"""``turnout health`` and ``turnout models``: ask every backend at once, report in routing order.

Both talk to the adapters directly rather than through the Router: a probe
must reach every backend, never retry it or fail over from it, and a
backend that is down is a result to show, not an error to raise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from typing import Any, Awaitable, Callable, TypeVar

from .._redact import redact_url
from ..adapters import Adapter, Health
from ..settings import ResolvedBackend, ResolvedConfig, build_adapter
from .common import BackendsDown, describe, dump_json, load, ranked, run

T = TypeVar("T")


# -- health -------------------------------------------------------------------------
def health(args: argparse.Namespace) -> int:
    config = load()
    backends = ranked(config)
    live = not args.json and _is_terminal(sys.stdout)
    results = run(_check_all(backends, args.timeout, _LiveTable(backends) if live else _ProgressLines()))
    shared = run(_shared_state(config, backends)) if config.state_url.value else None
    up = sum(h.up for h in results.values())
    if args.json:
        dump_json(
            {
                "up": up,
                "total": len(backends),
                "backends": [_health_json(b, results[b.name]) for b in backends],
                **({"shared": shared} if shared is not None else {}),
            }
        )
    else:
        if not live:
            print("\n".join(_health_rows(backends, results)))
        for name, result in results.items():
            if result.error:
                print(f"{name}: {result.error}")
        if shared is not None:
            print("\n".join(_shared_rows(shared)))
        print(f"{up} of {len(backends)} backend{'s' if len(backends) != 1 else ''} up")
    return 0 if up else 1


async def _shared_state(config: ResolvedConfig, backends: list[ResolvedBackend]) -> dict[str, Any]:
    """Each backend's breaker, windows and provider limit as every process sharing the Redis store sees them."""
    from ..state import Limits, open_state

    state: Any = open_state(
        config.state_url.value, prefix=config.state_prefix.value, timeout=config.state_timeout.value
    )
    try:
        views = {}
        for b in backends:
            limits = Limits(
                allowed_fails=b.allowed_fails.value,
                cooldown=b.cooldown.value,
                rpm=b.rpm.value,
                tpm=b.tpm.value,
                budget_ratio=config.retry_budget.value,
                budget_min=config.retry_budget_min.value,
            )
            views[b.name] = (await state.backend(b.name, limits).refresh()).as_dict(limits)
        reachable = not state.down
    finally:
        await state.aclose()
    return {
        "url": redact_url(config.state_url.value or ""),
        "prefix": config.state_prefix.value,
        "reachable": reachable,
        "backends": views if reachable else {},
    }


def _shared_rows(shared: dict[str, Any]) -> list[str]:
    head = f"shared state in {shared['url']} (prefix {shared['prefix']})"
    if not shared["reachable"]:
        return [f"{head}: unreachable"]
    width = max(len(name) for name in shared["backends"])
    return [f"{head}:"] + [f"  {name:<{width}}  {_shared_text(view)}" for name, view in shared["backends"].items()]


def _shared_text(view: dict[str, Any]) -> str:
    cooling = f", {view['cooldown_remaining']:.0f}s of cooldown left" if view["state"] == "open" else ""
    parts = [view["state"] + cooling]
    window = view["window"]
    for unit in ("rpm", "tpm"):
        if window[f"{unit}_limit"]:
            parts.append(f"{unit.upper()} {window[unit]}/{window[f'{unit}_limit']}")
    if view["provider_limit"]:
        parts.append(
            f"the provider's {view['provider_limit']['limit']} limit used up, "
            f"{view['provider_limit']['remaining']:.0f}s left"
        )
    return "; ".join(parts)


async def _check_all(
    backends: list[ResolvedBackend], timeout: float, report: Callable[[str, Health], None]
) -> dict[str, Health]:
    """Every probe at once; ``report`` hears each one as it finishes. Result in routing order."""

    async def check(backend: ResolvedBackend, adapter: Adapter) -> None:
        start = time.perf_counter()
        try:
            results[backend.name] = await asyncio.wait_for(adapter.health(), timeout)
        except asyncio.TimeoutError:
            results[backend.name] = Health(False, time.perf_counter() - start, error=f"no answer within {timeout:g}s")
        except Exception as err:  # noqa: BLE001 -- adapters report API errors themselves; anything else is a result too
            results[backend.name] = Health(False, time.perf_counter() - start, error=describe(err))
        report(backend.name, results[backend.name])

    results: dict[str, Health] = {}
    await _each(backends, check)
    return {b.name: results[b.name] for b in backends}


def _health_rows(backends: list[ResolvedBackend], results: dict[str, Health]) -> list[str]:
    width = max(len(b.name) for b in backends)
    provider_width = max(len(_provider(b)) for b in backends)
    rows = []
    for b in backends:
        h = results.get(b.name)
        if h is None:
            status = "checking..."
        else:
            models = "" if h.models is None else f"{h.models} model{'s' if h.models != 1 else ''}"
            status = f"{'up' if h.up else 'DOWN':<4}  {h.latency * 1000:>6.0f} ms  {models}"
        rows.append(f"{b.name:<{width}}  {_provider(b):<{provider_width}}  {status}".rstrip())
    return rows


def _health_json(backend: ResolvedBackend, result: Health) -> dict[str, Any]:
    return {
        "name": backend.name,
        "provider": _provider(backend),
        "up": result.up,
        "latency": round(result.latency, 4),
        "models": result.models,
        "error": result.error,
    }


class _ProgressLines:
    """Not a terminal: one plain line per backend on stderr as each check ends, in finishing order."""

    def __call__(self, name: str, result: Health) -> None:
        state = "up" if result.up else f"down ({result.error})"
        sys.stderr.write(f"turnout: {name}: {state} after {result.latency * 1000:.0f} ms\n")
        sys.stderr.flush()


class _LiveTable:
    """A terminal: the table is drawn at once with every row ``checking...``, and redrawn in place
    as each check ends, so the slowest backend is visible while it keeps everyone waiting."""

    def __init__(self, backends: list[ResolvedBackend]) -> None:
        self.backends = backends
        self.results: dict[str, Health] = {}
        self._draw(first=True)

    def __call__(self, name: str, result: Health) -> None:
        self.results[name] = result
        self._draw(first=False)

    def _draw(self, first: bool) -> None:
        width = shutil.get_terminal_size().columns - 1  # a wrapped row would break the cursor arithmetic
        up = "" if first else f"\x1b[{len(self.backends)}F"
        rows = "".join(f"\x1b[2K{row[:width]}\n" for row in _health_rows(self.backends, self.results))
        sys.stdout.write(up + rows)
        sys.stdout.flush()


# -- models -------------------------------------------------------------------------
def models(args: argparse.Namespace) -> int:
    backends = ranked(load())
    listed, errors = run(_list_all(backends, args.timeout))
    report = [_models_json(b, listed.get(b.name), errors.get(b.name)) for b in backends]
    if args.json:
        dump_json({"backends": report})
    else:
        print(render_models(report), end="")
    if not listed:
        raise BackendsDown("no backend could list its models:", errors)
    return 0


async def _list_all(backends: list[ResolvedBackend], timeout: float) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each backend's model ids, and for those that could not answer, why."""
    listed: dict[str, list[str]] = {}
    errors: dict[str, str] = {}

    async def ask(backend: ResolvedBackend, adapter: Adapter) -> None:
        try:
            listed[backend.name] = [m.id for m in await asyncio.wait_for(adapter.list_models(), timeout)]
        except asyncio.TimeoutError:
            errors[backend.name] = f"no answer within {timeout:g}s"
        except Exception as err:  # noqa: BLE001 -- a backend's failure is a result here, whatever it is
            errors[backend.name] = describe(err)

    await _each(backends, ask)
    return listed, errors


async def first_listed_model(backends: list[ResolvedBackend], timeout: float = 10.0) -> tuple[str, str]:
    """(model, backend): the first model of the highest-ranked backend that lists any (for ``chat``)."""
    listed, errors = await _list_all(backends, timeout)
    for backend in backends:
        if listed.get(backend.name):
            return listed[backend.name][0], backend.name
        errors.setdefault(backend.name, "lists no models")
    raise BackendsDown("no --model given, and no backend could list a model to use:", errors)


def _models_json(backend: ResolvedBackend, listed: list[str] | None, error: str | None) -> dict[str, Any]:
    """Listed models with their aliases; models MODELS declares but the backend did not list are kept,
    marked ``listed: false``, since a typo there is exactly what this command should reveal."""
    declared = backend.models.value or {}
    aliases: dict[str, list[str]] = {}
    for alias, model in declared.items():
        aliases.setdefault(model, [])
        if alias != model:
            aliases[model].append(alias)
    ids = list(listed or [])
    rows = [{"id": m, "aliases": aliases.get(m, []), "listed": True} for m in ids]
    rows += [{"id": m, "aliases": a, "listed": False} for m, a in aliases.items() if m not in ids]
    return {"name": backend.name, "provider": _provider(backend), "models": rows, "error": error}


def render_models(report: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for backend in report:
        listed = sum(m["listed"] for m in backend["models"])
        state = (
            f"unavailable: {backend['error']}" if backend["error"] else f"{listed} model{'s' if listed != 1 else ''}"
        )
        lines.append(f"{backend['name']} ({backend['provider']}): {state}")
        width = max((len(m["id"]) for m in backend["models"]), default=0)
        for m in backend["models"]:
            notes = ([f"alias {', '.join(m['aliases'])}"] if m["aliases"] else []) + (
                [] if m["listed"] or backend["error"] else ["in MODELS, not listed by the backend"]
            )
            lines.append(f"  {m['id']:<{width}}  {'; '.join(notes)}".rstrip())
    return "\n".join(lines) + "\n"


# -- shared ---------------------------------------------------------------------------
async def _each(backends: list[ResolvedBackend], job: Callable[[ResolvedBackend, Adapter], Awaitable[None]]) -> None:
    """``job`` on every backend's adapter at once; the adapters are closed whatever happens."""
    adapters = [build_adapter(b) for b in backends]
    try:
        await asyncio.gather(*(job(b, a) for b, a in zip(backends, adapters)))
    finally:
        await asyncio.gather(*(a.aclose() for a in adapters), return_exceptions=True)


def _provider(backend: ResolvedBackend) -> str:
    return backend.preset.name if backend.preset else "?"


def _is_terminal(stream: Any) -> bool:
    return stream.isatty() and os.environ.get("TERM") != "dumb"
