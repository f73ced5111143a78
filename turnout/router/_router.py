"""The Router: where each SDK request goes, in what order, with what retries.

A request arrives as the caller's SDK built it (its ``FinalRequestOptions``);
the endpoint table says how it is routed. A routed request walks its
candidate backends in priority order; on each, the backend's own ``backoff``
decorator retries what is worth retrying; what is not, or what is still
failing, fails over to the next. A bad request is raised at once. When
every candidate fails, one error carries them all. The answer goes back as
the backend's HTTP response, for the caller's SDK client to parse.

One request, in the order it happens (everything but the last two steps is in this module):

1. ``send``: the endpoint table (``_endpoints``) names the endpoint's mode; the deadline is set.
2. routed: ``_plan`` asks the selection (``_select``) for the model's candidates that can serve it,
   in order; ``walk`` tries each in turn (``_try``), admitted by the state (breaker, rate windows)
   or waited for; pinned: ``_pinned``; Responses: ``turnout.responses``, which plans its own and
   walks them with ``walk``; aggregated: ``_aggregated``.
3. on one backend, ``Runner.serve`` (``_retry``) runs the attempts under its ``backoff`` decorator,
   and ``_classify`` says what each failure means.
4. the adapter sends it (``turnout.adapters``); a stream is read to its first event (``_stream``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, AsyncIterator, Callable, Optional, Sequence

import httpx2
import openai
from openai import NotGiven
from openai.types import Model

from .._errors import AllBackendsFailedError, describe, refused, status_error, synthetic_request
from .._sdk import FinalRequestOptions
from ..adapters import Adapter, Call, Health, wire_response
from ..adapters._base import Raw
from ..knobs import default
from ..responses import Responses
from ..state import Admission, MemoryState, Session, State
from ._affinity import SESSION_HEADER, Affinity, AffinityMode, session_of
from ._backend import Backend
from ._classify import Verdict, classify, filtered_answer
from ._endpoints import endpoint_for
from ._events import Hook, RequestInfo, RouterEvent, current_request, make_emit
from ._hedge import Hedge, hedgeable, parse_hedge
from ._quota import MAX_WAIT, rate_limited
from ._retry import Op, Runner, deadline
from ._select import Candidate, Selector, kind_of
from ._strategy import StrategyName

__all__ = ["Router", "ModelList", "OpFor"]

log = logging.getLogger("turnout")

Served = tuple[Optional[str], httpx2.Response]
"""Who answered (``None`` for an aggregated answer), and the answer."""


@dataclass
class ModelList:
    """Every backend's models, shaped like the SDK's page (``.data``, async iteration)."""

    data: list[Model]
    errors: dict[str, str] = field(default_factory=dict)
    """Backends that could not list their models, with what went wrong."""
    object: str = "list"

    def __aiter__(self) -> AsyncIterator[Model]:
        return _aiter(self.data)

    def __iter__(self) -> Any:
        return iter(self.data)


async def _aiter(items: list[Model]) -> AsyncIterator[Model]:
    for item in items:
        yield item


class Router:
    """Backends in priority order. See README for the routing rules and every knob.

    timeout           total deadline of one request, across all attempts and backends
                      (seconds; ``None``: only each attempt's own timeout applies)
    retry_budget      retries allowed as a share of each backend's requests in the
                      last 10 seconds, besides ``retry_budget_min`` retries always allowed
    stateful_backend  the backend that serves stateful endpoints (files, batches, ...);
                      by default the first OpenAI backend, else the first backend
    responses_ttl     seconds the router keeps a stored response: which backend made it, and a
                      bridged one's whole conversation (see ``turnout.responses``)
    state             where breakers, budgets, rate windows and stored responses live (``turnout.state``):
                      this process's memory by default, or Redis shared by many processes; closed with the router
    on_event          optional async hook called with every event (``RouterEvent``: each request's and each
                      attempt's start and end, retries, failovers, skips, hedges, a stream's end); more by ``subscribe``
    strategy          how backends of one priority level are ordered: ``"weighted"`` (by weight, random),
                      ``"latency"`` (the fastest lately) or ``"least-busy"`` (the fewest in flight); see ``_strategy``
    affinity          ``"on"``: a request naming a session goes where its last turn went; ``"hash"``: also a
                      conversation named by its first messages; ``"off"``. Sessions are kept ``affinity_ttl`` seconds
    hedge_after       seconds (``0.5``) or a percentile of the backend's recent latency (``"p95"``) after which a
                      request still without an answer is also sent to the next candidate; ``None``: never.
                      At most ``max_hedges`` per request, each counted against the retry budget
    """

    def __init__(
        self,
        backends: Sequence[Backend | Adapter],
        *,
        timeout: float | None = None,
        retry_budget: float = default("retry_budget"),
        retry_budget_min: int = default("retry_budget_min"),
        stateful_backend: str | None = None,
        responses_ttl: float = default("responses_ttl"),
        state: State | None = None,
        on_event: Hook | None = None,
        strategy: StrategyName = "weighted",
        affinity: AffinityMode = "on",
        affinity_ttl: float = 3600.0,
        hedge_after: float | str | None = None,
        max_hedges: int = 1,
        failover_on_content_filter: bool = default("failover_on_content_filter"),
        aggregate_models: bool = True,
    ) -> None:
        """``aggregate_models=False``: ``models.list``/``retrieve`` go to the stateful backend as they are, its
        own answer (the client's one backend, built from the SDK's constructor: what the SDK would get)."""
        if not backends:
            raise ValueError("a Router needs at least one backend")
        self.backends = [b if isinstance(b, Backend) else Backend(b) for b in backends]
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError(f"backend names must be unique, got {names}")
        self.timeout = timeout
        self.retry_budget = retry_budget
        self.retry_budget_min = retry_budget_min
        self.failover_on_content_filter = failover_on_content_filter  # another provider's filter may differ
        self.aggregate_models = aggregate_models
        self._emit = make_emit(on_event)
        self._stats_sources: list[Callable[[str], dict[str, Any]]] = []
        self.state: State = state if state is not None else MemoryState()
        busy = strategy == "least-busy"
        self._runners = [
            Runner(
                b, state=self.state, budget_ratio=retry_budget, budget_min=retry_budget_min, emit=self._emit, busy=busy
            )
            for b in self.backends
        ]
        self.select = Selector(self._runners, strategy)
        """Which backends may serve a model, and in what order (public: endpoint families plan with it)."""
        if affinity not in ("on", "off", "hash"):
            raise ValueError(f"affinity {affinity!r} is not one of on, off, hash")
        self._affinity = Affinity(affinity_ttl) if affinity != "off" else None
        self._hash_sessions = affinity == "hash"
        self._hedge: Hedge | None = parse_hedge(hedge_after, max_hedges)
        in_flight = getattr(self.state, "busy", None)  # with shared state: other processes' counts, kept fresh
        self._fresh_counts = in_flight.fresh if busy and self.state.shared and in_flight is not None else None
        self.stateful = self._stateful_runner(stateful_backend)
        """The backend that serves stateful endpoints, and ids no backend is known to hold."""
        self._responses = Responses(self, responses_ttl)

    def __repr__(self) -> str:
        return f"Router(backends={[b.name for b in self.backends]!r}, timeout={self.timeout!r})"

    @property
    def primary(self) -> Backend:
        """The backend requests try first (the lowest priority)."""
        return self.select.runners[0].backend

    @property
    def inline(self) -> bool:
        """Whether a call may run on any thread's own event loop, every backend sending synchronously
        (how the sync client runs it, ``turnout._portal``): no state shared through a connection of one
        loop (Redis), no hedging (attempts side by side need a loop free to switch), and every backend
        able to (``Adapter.inline``), none with a ``first_token_timeout`` (a blocking read cannot be cut
        short by the loop: that limit is kept where the loop runs free, on the portal)."""
        return (
            not self.state.shared
            and self._hedge is None
            and all(getattr(b.adapter, "inline", False) and b.first_token_timeout is None for b in self.backends)
        )

    @property
    def listened(self) -> bool:
        """Whether an event hook (code of the caller's, which may want a task) hears this router's events."""
        return bool(self._emit)

    def _stateful_runner(self, name: str | None) -> Runner:
        ranked = self.select.runners
        if name is not None:
            found = next((r for r in ranked if r.name == name), None)
            if found is None:
                raise ValueError(f"stateful_backend {name!r} is not one of the backends {[r.name for r in ranked]}")
            return found
        return next((r for r in ranked if r.adapter.provider == "openai"), ranked[0])

    # -- the one entry point -------------------------------------------------
    async def send(
        self,
        options: FinalRequestOptions,
        *,
        stream: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
        raw: bytes | None = None,
    ) -> Served:
        """Serve one SDK request: its backend's name and HTTP answer (a stream's first event already read).

        ``timeout`` is this request's total deadline, else the router's; ``max_retries`` its retries on
        each backend, else each backend's own; ``raw``, the bytes ``options.json_data`` was parsed from
        (``turnout serve``), sent as they are while nothing changes the body.
        """
        endpoint = endpoint_for(options.method, options.url)
        session = self._session_of(options) if endpoint.mode == "routed" and self._affinity is not None else None
        options = _for_backends(options)
        limit = timeout if timeout is not None else self.timeout
        token = deadline.set(time.monotonic() + limit) if limit is not None else None
        try:
            body = options.json_data
            call = Call(
                endpoint,
                options,
                stream,
                max_retries,
                Raw(raw, body) if raw is not None and isinstance(body, dict) else None,
            )
            if not self._emit:
                return await self._serve(call, session)
            return await self._told(call, session)
        finally:
            if token is not None:
                deadline.reset(token)

    async def _serve(self, call: Call, session: str | None) -> Served:
        mode = call.endpoint.mode
        if mode == "routed":
            if self._fresh_counts is not None:
                await self._fresh_counts()
            return await self.walk(self._plan(call, session), call, session=session)
        if mode == "pinned":
            return await self._pinned(call)
        if mode == "responses":
            return await self._responses.create(call)
        if mode == "held":
            return await self._responses.held(call)
        if mode == "admin":
            return await self._admin(call)
        if not self.aggregate_models:
            return await self._pinned(call)
        return None, await self._aggregated(call)

    async def _told(self, call: Call, session: str | None) -> Served:
        """``_serve``, with the request's ``request`` and ``done`` events around it for the subscribers."""
        body = call.body
        model = body.get("model")
        info = RequestInfo(
            call.endpoint.name,
            model if isinstance(model, str) else None,
            call.stream,
            body,
            time.monotonic(),
            raw=call.raw,
        )
        token = current_request.set(info)
        try:
            await self._emit(RouterEvent("request", "", request=info, start=info.start))
            try:
                name, response = await self._serve(call, session)
            except BaseException as err:
                await self._emit(
                    RouterEvent("done", "", error=err, request=info, start=info.start, end=time.monotonic())
                )
                raise
            await self._emit(
                RouterEvent("done", name or "", request=info, start=info.start, end=time.monotonic(), response=response)
            )
            return name, response
        finally:
            current_request.reset(token)

    def subscribe(self, hook: Hook) -> None:
        """Call ``hook`` with every event of every request from now on, after the hooks before it."""
        self._emit.add(hook)

    def add_stats(self, source: Callable[[str], dict[str, Any]]) -> None:
        """Merge ``source(backend)`` into each backend's ``stats()`` (telemetry's cost, for one)."""
        self._stats_sources.append(source)

    # -- aggregated: every backend's models ---------------------------------------
    async def list_models(self) -> ModelList:
        """Every backend's models; a backend that cannot answer is reported in ``errors``, not raised."""
        models, errors = await self._gather_models()
        return ModelList(models, {name: describe(err) for name, err in errors.items()})

    async def _gather_models(self) -> tuple[list[Model], dict[str, Exception]]:
        results = await asyncio.gather(*(r.adapter.list_models() for r in self._runners), return_exceptions=True)
        models: list[Model] = []
        errors: dict[str, Exception] = {}
        for runner, result in zip(self._runners, results):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                errors[runner.name] = result
                log.info("backend %s did not list its models: %s", runner.name, describe(result))
            else:
                models.extend(result)
        return models, errors

    async def _aggregated(self, call: Call) -> httpx2.Response:
        models, errors = await self._gather_models()
        if errors and not models:
            raise AllBackendsFailedError.combine(errors, next(reversed(errors.values())))
        if call.endpoint.name == "models":
            body: Any = {"object": "list", "data": [m.model_dump(mode="json") for m in models]}
        else:
            wanted = urllib.parse.unquote(call.options.url.rstrip("/").rsplit("/models/", 1)[-1])
            found = next((m for m in models if wanted in (m.id, f"{m.owned_by}/{m.id}")), None)
            if found is None:
                raise status_error(
                    openai.NotFoundError, 404, f"no backend lists model {wanted!r}", code="model_not_found"
                )
            body = found.model_dump(mode="json")
        return wire_response(call, "turnout://router", content=json.dumps(body).encode())

    async def health(self) -> dict[str, Health]:
        """Each backend probed concurrently."""
        results = await asyncio.gather(*(r.adapter.health() for r in self._runners))
        return {r.name: h for r, h in zip(self._runners, results)}

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-backend counters (requests, failures, retries, latency) and state (breaker, cooldown left,
        rate windows' use, a provider's limit) as plain dicts; shared state as this process last saw it."""
        if not self._stats_sources:
            return {r.name: r.stats() for r in self._runners}
        return {
            r.name: {**r.stats(), **{k: v for source in self._stats_sources for k, v in source(r.name).items()}}
            for r in self._runners
        }

    async def shared_stats(self) -> dict[str, dict[str, Any]]:
        """``stats()`` with each backend's state read from the store now (with Redis: what every process did)."""
        await asyncio.gather(*(r.shared.refresh() for r in self._runners))
        if self._fresh_counts is not None:
            await self._fresh_counts()
        return self.stats()

    # -- lifecycle ---------------------------------------------------------------
    async def aclose(self) -> None:
        await asyncio.gather(*(b.adapter.aclose() for b in self.backends))
        await self.state.aclose()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(
        self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        await self.aclose()

    # -- pinned: one backend, never failed over -------------------------------------
    async def _pinned(self, call: Call) -> Served:
        runner = self.stateful
        return runner.name, await runner.serve(runner.sender(call.stream), call)

    async def _admin(self, call: Call) -> Served:
        """OpenAI's organization endpoints: the backend holding an admin key, the OpenAI one first."""
        holders = [r for r in self.select.runners if getattr(r.adapter, "admin_api_key", None)]
        if not holders:
            raise TypeError(
                "OpenAI's admin endpoints need an admin key: set OPENAI_ADMIN_KEY for the openai "
                "backend, or pass admin_api_key= with the client's api_key/base_url"
            )
        runner = next((r for r in holders if r.adapter.provider == "openai"), holders[0])
        return runner.name, await runner.serve(runner.sender(call.stream), call)

    # -- routed: the walk ----------------------------------------------------------
    def _session_of(self, options: FinalRequestOptions) -> str | None:
        body = options.json_data if isinstance(options.json_data, dict) else {}
        headers = options.headers if isinstance(options.headers, dict) else None
        return session_of(body, headers, self._hash_sessions)

    def _plan(self, call: Call, session: str | None = None) -> list[Candidate]:
        model = call.requested_model()
        choice = self.select.choice_for(model)
        if not choice.candidates:
            raise self.select.not_found(model)
        kind = kind_of(call.endpoint.name, call.endpoint.need, call.stream)
        prefer = self._affinity.get(session) if session is not None and self._affinity is not None else None
        return self.select.order(self.select.capable(choice, kind, call.body), prefer)

    def runner(self, name: str) -> Runner | None:
        """The backend of that name, as the walk calls it."""
        return next((r for r in self._runners if r.name == name), None)

    async def walk(
        self,
        plan: Sequence[Candidate],
        call: Call,
        op_for: OpFor | None = None,
        skipped: dict[str, BaseException] | None = None,
        session: str | None = None,
    ) -> Served:
        """Each candidate in turn until one answers; ``op_for`` says what an attempt on it runs, and
        ``skipped`` why some backends were not tried (named in the error if none answers).
        The router's public walk: routed endpoints use it with each backend's plain ``send``, and an
        endpoint family with its own ways to serve a request (``turnout.responses``) with its own ``op_for``.
        Rate limits, cooldowns, failover, the deadline and the one combined error are all here. A request
        that names a ``session`` records where it was served; with shared state, the admission moves it
        to the backend another process served the session on last."""
        op_for = op_for or _plain
        errors: dict[str, BaseException] = {}
        end = deadline.get() or time.monotonic() + MAX_WAIT  # how long a full window may be waited for
        hedge = self._hedge if self._hedge is not None and hedgeable(call) else None
        hedges_left = 0
        if hedge is not None:
            hedges_left = hedge.max_hedges
        while True:
            held: list[tuple[Candidate, Admission]] = []  # cooling down, or no room in a rate limit
            queue = list(plan)
            i = 0
            while i < len(queue):
                candidate = queue[i]
                i += 1
                admission = await candidate.runner.admit(call, session=self._shared_session(session, queue, i))
                if admission.moved:  # another process served this session there last: go there first
                    moved = next((j for j in range(i, len(queue)) if queue[j].runner.name == admission.moved), None)
                    if moved is not None:
                        queue.insert(i - 1, queue.pop(moved))
                        i -= 1
                        continue
                    admission = await candidate.runner.admit(call)
                if not admission.ok:
                    held.append((candidate, admission))
                    if self._emit:
                        await self._emit(
                            RouterEvent(
                                "skipped",
                                candidate.runner.name,
                                request=current_request.get(),
                                reason=candidate.runner.held(admission),
                            )
                        )
                    continue
                if hedge is not None and hedges_left:
                    served, used = await hedge.race(
                        self, candidate, admission, queue, i, call, errors, op_for, hedges_left
                    )
                    hedges_left -= used
                else:
                    served = await self._try(candidate, call, errors, op_for, admission)
                if served is not None:
                    if session is not None and self._affinity is not None:
                        self._affinity.put(session, served[0])  # type: ignore[arg-type]
                    return served
            if errors or not held:
                break
            wait = min((a.wait for _, a in held if a.full), default=None)
            if wait is not None and time.monotonic() + wait < end:  # every candidate is full: the first to free up
                log.info("every candidate is at a rate limit; waiting %.2fs for room", wait)
                await asyncio.sleep(wait + 0.01)
                continue
            cooling = [(c, a) for c, a in held if not a.full]
            if not cooling:
                raise rate_limited([(c.runner.name, c.runner.held(a), a.wait) for c, a in held])
            first = min(cooling, key=lambda ca: ca[1].wait)[0]  # every candidate cools down: the first to recover
            log.info("every candidate is cooling down; trying %s", first.runner.name)
            served = await self._try(first, call, errors, op_for, await first.runner.admit(call, hold=False))
            if served is not None:
                return served
            break
        if held:  # named beside the failures, after them as a cause
            errors = {
                **{
                    c.runner.name: rate_limited([(c.runner.name, c.runner.held(a), a.wait)])
                    for c, a in held
                    if c.runner.name not in errors
                },
                **errors,
            }
        if skipped:
            errors = {**skipped, **errors}
        raise AllBackendsFailedError.combine(errors, next(reversed(errors.values())))

    def _shared_session(self, session: str | None, queue: list[Candidate], i: int) -> Session | None:
        """The session as the shared store's admission reads it: where else this request may still go."""
        if session is None or not self.state.shared or self._affinity is None:
            return None
        return Session(session, self._affinity.ttl, tuple(c.runner.name for c in queue[i:]))

    async def _try(
        self, candidate: Candidate, call: Call, errors: dict[str, BaseException], op_for: OpFor, admission: Admission
    ) -> Served | None:
        """One backend, with its retries: the answer, or ``None`` after recording why it failed."""
        runner, model, unsure = candidate
        if _deadline_passed():
            runner.shared.done(admission)
            await runner.shared.release(admission)
            errors.setdefault("deadline", openai.APITimeoutError(request=synthetic_request()))
            return None
        if errors:
            last = next(reversed(errors))
            log.info("failing over from %s to %s", last, runner.name)
            if self._emit:
                await self._emit(
                    RouterEvent("failover", last, error=errors[last], to=runner.name, request=current_request.get())
                )
        try:
            op, arg = op_for(candidate, call)
            response = await runner.serve(op, arg, admission)
        except openai.APIError as err:
            if unsure and refused(err):
                runner.learn(unsure, model)
            elif self._raised(classify(err)):
                raise
            await self._failed(runner.name, err, errors)
            return None
        filtered = filtered_answer(runner.name, response) if self.failover_on_content_filter else None
        if filtered is not None:  # the user asked for another provider's filter to be tried
            await self._failed(runner.name, filtered, errors)
            return None
        return runner.name, response

    async def _failed(self, name: str, err: openai.APIError, errors: dict[str, BaseException]) -> None:
        errors[name] = err
        log.info("backend %s failed: %s", name, describe(err))
        if self._emit:
            await self._emit(RouterEvent("failure", name, error=err, request=current_request.get()))

    def _raised(self, verdict: Verdict) -> bool:
        """A bad request is raised at once; so is a content-filter refusal, unless failing over on it is on."""
        return verdict is Verdict.RAISE or (verdict is Verdict.FILTERED and not self.failover_on_content_filter)


OpFor = Callable[[Candidate, Call], tuple[Op, Call]]
"""What an attempt on a candidate runs, and with which call."""


def _plain(candidate: Candidate, call: Call) -> tuple[Op, Call]:
    return candidate.runner.sender(call.stream), call.renamed(candidate.model)


def _for_backends(options: FinalRequestOptions) -> FinalRequestOptions:
    """The caller's per-call timeout is the router's deadline, and the router does the retrying:
    each backend gets its own per-attempt timeout and one try per attempt."""
    headers = options.headers
    if isinstance(headers, dict) and SESSION_HEADER in headers:  # turnout's own header: no backend's business
        headers = {k: v for k, v in headers.items() if k != SESSION_HEADER}
        options = options.model_copy(update={"headers": headers})
    if isinstance(options.timeout, NotGiven) and isinstance(options.max_retries, NotGiven):
        return options
    return options.model_copy(update={"timeout": NotGiven(), "max_retries": NotGiven()})


def _deadline_passed() -> bool:
    end = deadline.get()
    return end is not None and time.monotonic() >= end
