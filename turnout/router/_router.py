"""The Router: priority failover over backends, each retried on its own.

A request walks its candidate backends in priority order. On each, the
backend's own ``backoff`` decorator retries what is worth retrying; what is
not, or what is still failing, fails over to the next. A bad request is
raised at once. When every candidate fails, one error carries them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Sequence, TypeVar

import openai
from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from .._errors import AllBackendsFailedError, BrokenStreamError, describe, synthetic_request
from ..adapters import Adapter, Health
from ..adapters._prepared import prepare
from ._backend import Backend
from ._classify import Verdict, classify
from ._events import Hook, RouterEvent, make_emit
from ._retry import Runner, deadline
from ._select import Candidate, Selector
from ._stream import RoutedStream

__all__ = ["Router", "ModelList", "served_by"]

log = logging.getLogger("turnout")
T = TypeVar("T")

_SERVED_BY = "_turnout_backend"


def served_by(response: object) -> str | None:
    """The name of the backend that produced ``response`` (a completion, embedding or stream)."""
    return getattr(response, _SERVED_BY, None)


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

    timeout        total deadline of one request, across all attempts and backends
                   (seconds; ``None``: only each attempt's own timeout applies)
    retry_budget   retries allowed as a share of each backend's requests in the
                   last 10 seconds, besides ``retry_budget_min`` retries always allowed
    on_event       optional async hook called with every attempt, retry, failure and failover
    """

    def __init__(
        self,
        backends: Sequence[Backend | Adapter],
        *,
        timeout: float | None = None,
        retry_budget: float = 0.2,
        retry_budget_min: int = 10,
        on_event: Hook | None = None,
    ) -> None:
        if not backends:
            raise ValueError("a Router needs at least one backend")
        self.backends = [b if isinstance(b, Backend) else Backend(b) for b in backends]
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError(f"backend names must be unique, got {names}")
        self.timeout = timeout
        self.retry_budget = retry_budget
        self.retry_budget_min = retry_budget_min
        self._emit = make_emit(on_event)
        self._runners = [Runner(b, budget_ratio=retry_budget, budget_min=retry_budget_min, emit=self._emit)
                         for b in self.backends]
        self._select = Selector(self._runners)

    def __repr__(self) -> str:
        return f"Router(backends={[b.name for b in self.backends]!r}, timeout={self.timeout!r})"

    # -- the SDK-shaped operations --------------------------------------------
    async def chat(self, *, timeout: float | None = None, **params: Any) -> ChatCompletion:
        """A routed ``chat.completions.create`` (not streamed)."""
        params.pop("stream", None)
        runner, reply = await self._route("chat", params, lambda r: r.adapter.chat, timeout)
        reply.__dict__[_SERVED_BY] = runner.name  # beside the model's fields: model_dump() never sees it
        return reply

    async def stream_chat(self, *, timeout: float | None = None, **params: Any) -> RoutedStream:
        """A routed streamed chat; failover happens only before the first chunk."""
        params.pop("stream", None)
        runner, (chunks, first) = await self._route("stream", params, _stream_opener, timeout)
        return RoutedStream(chunks, first, runner.name, on_break=lambda err: runner.breaker.failed())

    async def embeddings(self, *, timeout: float | None = None, **params: Any) -> CreateEmbeddingResponse:
        runner, reply = await self._route("embeddings", params, lambda r: r.adapter.embeddings, timeout)
        reply.__dict__[_SERVED_BY] = runner.name
        return reply

    async def list_models(self) -> ModelList:
        """Every backend's models; a backend that cannot answer is reported in ``errors``, not raised."""
        results = await asyncio.gather(*(r.adapter.list_models() for r in self._runners), return_exceptions=True)
        listing = ModelList([])
        for runner, result in zip(self._runners, results):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                listing.errors[runner.name] = describe(result)
            else:
                listing.data.extend(result)
        return listing

    async def health(self) -> dict[str, Health]:
        """Each backend probed concurrently."""
        results = await asyncio.gather(*(r.adapter.health() for r in self._runners))
        return {r.name: h for r, h in zip(self._runners, results)}

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-backend counters (requests, failures, retries, cooldowns, latency) as plain dicts."""
        return {r.name: r.stats() for r in self._runners}

    # -- lifecycle ---------------------------------------------------------------
    async def aclose(self) -> None:
        await asyncio.gather(*(b.adapter.aclose() for b in self.backends))

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.aclose()

    # -- the walk ------------------------------------------------------------------
    async def _route(self, kind: str, params: dict[str, Any], op_of: Callable[[Runner], Callable[..., Awaitable[T]]],
                     timeout: float | None) -> tuple[Runner, T]:
        plan = self._plan(kind, params)
        if kind != "embeddings":
            params = await prepare(params)  # the SDK's transform, once for every attempt and backend
        limit = timeout if timeout is not None else self.timeout
        token = deadline.set(time.monotonic() + limit) if limit is not None else None
        try:
            return await self._walk(plan, params, op_of)
        finally:
            if token is not None:
                deadline.reset(token)

    def _plan(self, kind: str, params: dict[str, Any]) -> list[Candidate]:
        model = params.get("model")
        if not isinstance(model, str) or not model:
            raise TypeError("model is required: pass model=... as with the openai SDK")
        choice = self._select.choice_for(model)
        if not choice.candidates:
            raise self._select.not_found(model)
        return self._select.order(self._select.capable(choice, kind, params))

    async def _walk(self, plan: list[Candidate], params: dict[str, Any],
                    op_of: Callable[[Runner], Callable[..., Awaitable[T]]]) -> tuple[Runner, T]:
        errors: dict[str, BaseException] = {}
        cooling: list[Candidate] = []
        for candidate in plan:
            if not candidate[0].breaker.admit():
                cooling.append(candidate)
                continue
            served = await self._try(candidate, params, op_of, errors)
            if served is not None:
                return served
        if cooling and len(errors) == 0:  # every candidate cools down: try the one that recovers first
            first = min(cooling, key=lambda c: c[0].breaker.open_until)
            log.info("every candidate is cooling down; trying %s", first[0].name)
            served = await self._try(first, params, op_of, errors)
            if served is not None:
                return served
        raise AllBackendsFailedError.combine(errors, next(reversed(errors.values())))

    async def _try(self, candidate: Candidate, params: dict[str, Any],
                   op_of: Callable[[Runner], Callable[..., Awaitable[T]]],
                   errors: dict[str, BaseException]) -> tuple[Runner, T] | None:
        """One backend, with its retries: the result, or ``None`` after recording why it failed."""
        runner, model = candidate
        if _deadline_passed():
            errors.setdefault("deadline", openai.APITimeoutError(request=synthetic_request()))
            return None
        if errors:
            last = next(reversed(errors))
            log.info("failing over from %s to %s", last, runner.name)
            if self._emit:
                await self._emit(RouterEvent("failover", last, error=errors[last], to=runner.name))
        call_params = params if params.get("model") == model else {**params, "model": model}
        runner.counters.requests += 1
        runner.budget.request()
        try:
            result = await runner.call(op_of(runner), call_params)
        except openai.APIError as err:
            runner.counters.failures += 1
            if classify(err) is Verdict.RAISE:
                raise
            errors[runner.name] = err
            log.info("backend %s failed: %s", runner.name, describe(err))
            if self._emit:
                await self._emit(RouterEvent("failure", runner.name, error=err))
            return None
        runner.counters.successes += 1
        return runner, result


def _deadline_passed() -> bool:
    end = deadline.get()
    return end is not None and time.monotonic() >= end


def _stream_opener(runner: Runner) -> Callable[..., Awaitable[tuple[AsyncIterator[ChatCompletionChunk], ChatCompletionChunk]]]:
    async def open_stream(**params: Any) -> tuple[AsyncIterator[ChatCompletionChunk], ChatCompletionChunk]:
        """Open the stream and read its first chunk: the part that may be retried and failed over.

        A stream that ends before its first chunk is a failure, not an empty answer:
        llama.cpp's server does that when a prompt overflows its context.
        """
        chunks = runner.adapter.stream_chat(**params)
        try:
            return chunks, await chunks.__anext__()
        except StopAsyncIteration:
            raise BrokenStreamError(f"backend {runner.name!r} ended the stream before its first chunk",
                                    request=synthetic_request()) from None
        except BaseException:
            await chunks.aclose()  # type: ignore[attr-defined]
            raise

    return open_stream
