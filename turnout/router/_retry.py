"""One backend's call path: its own ``backoff`` decorator, its state (breaker, budget, rate windows) and counters.

Each backend gets its decorator when the router is built, so one backend's
retries never consume another's. The SDK clients retry nothing themselves
(``max_retries=0``): this is the only retry layer. The state lives in the
router's store (``turnout.state``): this process's memory, or Redis shared by
every process; each step on it is one call.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import asdict, dataclass
from typing import Any, Awaitable, Callable, Generator, TypeVar

import backoff
import httpx2
import openai

from .._errors import describe, synthetic_request
from ..adapters import Call
from ..adapters._base import deadline, remaining
from ..adapters._inline import INLINE
from ..state import Admission, Limits, Session, State, _clock
from ._backend import Backend
from ._classify import Verdict, classify, retry_after
from ._events import AttemptTimes, Events, RequestInfo, RouterEvent, clock, current_request
from ._quota import count_stream, estimate_tokens, limit_text, provider_limit, retry_refused, tokens_used
from ._strategy import Latency
from ._stream import open_stream, when_closed

__all__ = ["Op", "Runner", "deadline", "remaining", "LEARNED_FOR"]

log = logging.getLogger("turnout")
T = TypeVar("T")

Op = Callable[[Call], Awaitable[httpx2.Response]]
"""One attempt: the call in, the backend's HTTP answer out (a stream's first event already read)."""

_PROBE = "_turnout_probe"
"""Set on an error a half-open probe met."""

LEARNED_FOR = 600.0
"""Seconds a backend that answered it cannot do something is not asked to again (for that model)."""


@dataclass
class Counters:
    requests: int = 0
    successes: int = 0
    failures: int = 0
    attempts: int = 0
    retries: int = 0
    retries_denied: int = 0
    latency_total: float = 0.0
    latency_last: float = 0.0


class Runner:
    """Calls one backend: attempts, retries with backoff, and the bookkeeping around them."""

    def __init__(
        self, backend: Backend, *, state: State, budget_ratio: float, budget_min: int, emit: Events, busy: bool = False
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.adapter = backend.adapter
        timeout = getattr(backend.adapter, "timeout", None) or 60.0
        self.limits = Limits(
            allowed_fails=max(1, backend.allowed_fails),
            cooldown=backend.cooldown,
            rpm=backend.rpm,
            tpm=backend.tpm,
            budget_ratio=budget_ratio,
            budget_min=budget_min,
            probe_lease=max(backend.cooldown, timeout * (backend.max_retries + 1)),
            busy=busy,
        )
        self.shared = state.backend(backend.name, self.limits)
        self.counters = Counters()
        self._emit = emit
        self._learned: dict[tuple[str, str], float] = {}
        self._latency: dict[str, Latency] = {}  # model -> its recent latency on this backend
        self._pending: set[asyncio.Future[Any]] = set()
        self._calls: dict[int, Callable[..., Awaitable[Any]]] = {}
        self.call = self._with_retries(backend.max_retries)

    def _with_retries(self, retries: int) -> Callable[..., Awaitable[Any]]:
        """One attempt wrapped in its backoff decorator, for ``retries`` retries (one per count in use)."""
        call = self._calls.get(retries)
        if call is None:
            # backoff's stubs expect a wait generator that yields floats and a sync handler; it also primes
            # the generator with next() and accepts async handlers, which these are.
            call = self._calls[retries] = backoff.on_exception(
                self._waits,  # type: ignore[arg-type]
                openai.APIError,
                max_tries=retries + 1,
                jitter=None,  # _waits jitters the exponential waits itself and honours Retry-After exactly
                giveup=self._giveup,  # type: ignore[arg-type]
                on_backoff=self._on_backoff,  # type: ignore[arg-type]
                logger=None,
            )(self._attempt)
        return call

    async def admit(
        self, call: Any, *, hold: bool = True, hedge: bool = False, session: Session | None = None
    ) -> Admission:
        """May ``call`` go to this backend now? Counted in its windows if so (see ``BackendState.admit``)."""
        tpm = self.limits.tpm
        tokens = min(estimate_tokens(call.body), tpm) if tpm and isinstance(call, Call) else 0
        return await self.shared.admit(tokens, hold=hold, hedge=hedge, session=session)

    # -- what the strategies read: no I/O ------------------------------------------
    def latency_of(self, model: str) -> float | None:
        """The moving average of this backend's latency for ``model``; ``None`` before its first answer."""
        found = self._latency.get(model)
        return None if found is None else found.mean

    def latency_percentile(self, model: str, p: float) -> float | None:
        found = self._latency.get(model)
        return None if found is None else found.percentile(p)

    def busy(self) -> int:
        return self.shared.busy()

    def _measured(self, arg: Any, times: AttemptTimes, *, lower_bound: bool = False) -> None:
        """One attempt's time to its first answer, from the events' own measurement. A cancelled attempt
        (a hedge's loser) gives a lower bound: counted only when it is slower than the average already."""
        seconds = times.to_first if times.first is not None else None
        if seconds is None and lower_bound and times.end is not None:
            seconds = times.end - times.start
        model = arg.body.get("model") if isinstance(arg, Call) else None
        if seconds is None or not isinstance(model, str):
            return
        found = self._latency.get(model)
        if found is None:
            if lower_bound:
                return
            if len(self._latency) >= 256:  # bounded: a router asked for endless model names stays small
                self._latency.clear()
            found = self._latency[model] = Latency()
        if lower_bound and (found.mean is None or seconds <= found.mean):
            return
        found.add(seconds)

    def held(self, admission: Admission) -> str:
        """What held a request back, in words."""
        return limit_text(admission.why, self.limits.rpm, self.limits.tpm) if admission.full else admission.why

    async def serve(self, op: Callable[[Any], Awaitable[T]], arg: Any, admission: Admission | None = None) -> T:
        """One request on this backend, its retries included, counted as a success or a failure.

        Without ``admission`` (a pinned request) it is counted, never held back."""
        if admission is None:
            admission = await self.admit(arg, hold=False)
        self.counters.requests += 1
        retries = getattr(arg, "max_retries", None)
        call = self.call if retries is None else self._with_retries(retries)
        try:
            result: T = await call(op, arg, admission)
        except BaseException as err:
            if isinstance(err, openai.APIError):
                self.counters.failures += 1
            self.shared.done(admission)
            raise
        self.counters.successes += 1
        if isinstance(result, httpx2.Response) and not result.is_closed:  # a stream: in flight until it closes
            when_closed(result, lambda: self.shared.done(admission))
        else:
            self.shared.done(admission)
        return result

    def sender(self, stream: bool) -> Op:
        """The backend's ``send``, and for a stream also reading up to its first real token (within the
        backend's ``first_token_timeout``, if it has one: a timeout like any other, retried and failed over)."""
        if not stream:
            return self.adapter.send

        async def open_and_read(call: Call) -> httpx2.Response:
            response = await self.adapter.send(call)
            request = current_request.get()
            on_end = (lambda reason, error: self.stream_ended(request, reason, error)) if self.listened else None
            return await open_stream(response, self.name, on_break=self.broke, on_end=on_end)

        limit = self.backend.first_token_timeout
        if limit is None:
            return open_and_read

        async def within_first_token_limit(call: Call) -> httpx2.Response:
            try:
                return await asyncio.wait_for(open_and_read(call), limit)
            except asyncio.TimeoutError:
                err = openai.APITimeoutError(request=synthetic_request())
                err.message = f"backend {self.name!r} sent no first token within {limit:g}s (first_token_timeout)"
                err.args = (err.message,)
                raise err from None

        return within_first_token_limit

    def broke(self) -> None:
        """A stream broke after its first event (told synchronously): counted as a failed attempt."""
        step = asyncio.ensure_future(self.shared.failed())
        self._pending.add(step)
        step.add_done_callback(self._pending.discard)

    # -- capabilities: declared, or learned from a refusal -----------------------
    def has(self, flag: str, model: str) -> bool | None:
        """Yes, no or unknown; an unknown this backend refused for ``model`` reads no for a while."""
        value: bool | None = getattr(self.adapter.capabilities, flag)
        if value is None and self._learned:
            until = self._learned.get((flag, model))
            if until is not None and _clock.now() < until:  # the state's clock, which tests move
                return False
        return value

    def learn(self, flags: tuple[str, ...], model: str) -> None:
        until = _clock.now() + LEARNED_FOR
        for flag in flags:
            self._learned[(flag, model)] = until
        log.info(
            "backend %s cannot do %s for model %s: not asked again for %.0fs",
            self.name,
            " and ".join(flags),
            model,
            LEARNED_FOR,
        )

    # -- one attempt -----------------------------------------------------------
    async def _attempt(self, op: Callable[[Any], Awaitable[T]], arg: Any, admission: Admission) -> T:
        if admission.attempts:  # a retry is one more request the provider counts: it needs room too
            again = await self.shared.again(admission.tokens)
            if not again.ok:
                raise retry_refused(self.name, self.held(again), again.wait)
            admission.second = again.second
            self.counters.retries += 1
        admission.attempts += 1
        self.counters.attempts += 1
        request = current_request.get() if self._emit else None
        times = AttemptTimes(clock())
        if self._emit:
            await self._emit(
                RouterEvent(
                    "attempt", self.name, request=request, attempt=admission.attempts, start=times.start, times=times
                )
            )
        left = remaining()
        try:  # a send that blocks (the sync client's) is given what is left as its own timeout instead
            result = await (op(arg) if left is None or INLINE.get() else _within(op(arg), left))
        except openai.APIError as err:
            times.end = clock()
            if admission.probe:
                setattr(err, _PROBE, True)
            if self._emit:
                await self._emit(
                    RouterEvent(
                        "attempt_failed",
                        self.name,
                        error=err,
                        request=request,
                        attempt=admission.attempts,
                        start=times.start,
                        end=times.end,
                        times=times,
                    )
                )
            await self._failed(err, admission)
            raise
        except BaseException as err:  # cancelled (a hedge lost), or a bug: no verdict on the backend
            times.end = clock()
            if isinstance(err, asyncio.CancelledError):
                self._measured(arg, times, lower_bound=True)
            await self.shared.release(admission)
            raise
        times.first = clock()
        if isinstance(result, httpx2.Response) and not result.is_closed:
            when_closed(result, lambda: setattr(times, "end", clock()))
        else:
            times.end = times.first
        latency = times.first - times.start
        self.counters.latency_last = latency
        self.counters.latency_total += latency
        self._measured(arg, times)
        await self._answered(result, admission)
        if self._emit:
            streaming = isinstance(arg, Call) and arg.stream and isinstance(result, httpx2.Response)
            await self._emit(
                RouterEvent(
                    "success",
                    self.name,
                    request=request,
                    attempt=admission.attempts,
                    start=times.start,
                    first=times.first,
                    end=None if streaming else times.first,
                    response=result if isinstance(result, httpx2.Response) else None,
                    times=times,
                )
            )
        return result

    @property
    def listened(self) -> bool:
        """Does anyone subscribe to this router's events?"""
        return bool(self._emit)

    async def stream_ended(self, request: RequestInfo | None, reason: str, error: BaseException | None) -> None:
        """A committed stream ended (whole, broken or closed by the caller): told to the subscribers."""
        if self._emit:
            await self._emit(
                RouterEvent("stream_end", self.name, error=error, request=request, end=clock(), reason=reason)
            )

    async def _answered(self, result: Any, admission: Admission) -> None:
        """A success: the breaker closes; the provider's headers and the answer's tokens are taken in."""
        await self.shared.succeeded(admission)
        if not isinstance(result, httpx2.Response):
            return
        limit = provider_limit(result.headers)
        if limit is not None:
            await self._full(*limit)
        if self.limits.tpm:
            if result.is_closed:
                used = tokens_used(result.content)
                if used is not None:
                    await self.shared.used(admission, used)
            else:
                count_stream(result, lambda used: self.shared.used(admission, used))

    async def _full(self, what: str, seconds: float) -> None:
        log.info("backend %s: the provider's %s limit is used up; skipped for %.1fs", self.name, what, seconds)
        await self.shared.full(seconds, what)

    async def _failed(self, err: openai.APIError, admission: Admission) -> None:
        verdict = classify(err)
        log.debug("backend %s attempt failed: %s", self.name, describe(err))
        if verdict is Verdict.RETRY:
            hint = retry_after(err)
            if hint is not None and hint > self.backend.backoff_max:  # the provider says: not for a while
                await self.shared.failed(open_for=hint)
            else:
                await self.shared.failed()
        elif verdict is Verdict.COOL:
            await self.shared.failed(cool=True)
        else:  # it answered: alive, whatever it thought of the request
            await self.shared.succeeded(admission)
        if admission.tokens and isinstance(err, openai.APIStatusError) and 400 <= err.status_code < 500:
            await self.shared.used(admission, 0)  # refused before it produced a token: its estimate is given back
        limit = provider_limit(err.response.headers) if isinstance(err, openai.APIStatusError) else None
        if limit is not None:
            await self._full(*limit)

    # -- backoff's hooks ---------------------------------------------------------
    def _waits(self) -> Generator[float | None, BaseException, None]:
        """Exponential waits with full jitter, or exactly what Retry-After asks; stops at the deadline."""
        err = yield None
        n = 0
        while True:
            hint = retry_after(err)
            if hint is None:
                wait = random.uniform(0, min(self.backend.backoff_max, self.backend.backoff_base**n))
                n += 1
            else:
                wait = hint
            left = remaining()
            if left is not None and wait >= left:
                log.info("backend %s: no retry, a %.2fs wait would pass the deadline", self.name, wait)
                return
            err = yield wait

    async def _giveup(self, err: BaseException) -> bool:
        """Stop retrying this backend? Not because its breaker opened meanwhile: a request's ``max_retries``
        is what it says (the breaker decides where the next requests go; the retry budget caps storms).
        A half-open probe is the breaker's one try, though: failed, it is not retried."""
        if classify(err) is not Verdict.RETRY or (getattr(err, _PROBE, False) and self.shared.is_open()):
            return True
        hint = retry_after(err)
        if hint is not None and hint > self.backend.backoff_max:
            log.info(
                "backend %s asks to wait %.1fs, over the %.1fs cap: failing over",
                self.name,
                hint,
                self.backend.backoff_max,
            )
            return True
        if not await self.shared.can_retry():
            self.counters.retries_denied += 1
            log.info("backend %s: retry budget spent, failing over", self.name)
            return True
        return False

    async def _on_backoff(self, details: dict[str, Any]) -> None:
        err, wait = details["exception"], details["wait"]
        log.info("backend %s: %s; retry %d in %.2fs", self.name, describe(err), details["tries"], wait)
        if self._emit:
            await self._emit(
                RouterEvent(
                    "retry", self.name, error=err, wait=wait, request=current_request.get(), attempt=details["tries"]
                )
            )

    # -- reporting ---------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        c = self.counters
        done = c.successes + c.failures
        return {
            **asdict(c),
            "latency_mean": c.latency_total / c.successes if c.successes else None,
            "completed": done,
            "in_flight": self.busy(),
            **self.shared.view().as_dict(self.limits),
        }


async def _within(call: Awaitable[T], left: float) -> T:
    try:
        return await asyncio.wait_for(call, max(left, 0.0))
    except asyncio.TimeoutError:
        raise openai.APITimeoutError(request=synthetic_request()) from None
