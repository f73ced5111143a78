"""How the synchronous ``turnout.OpenAI`` runs the async router: one routing code path for both clients.

On the calling thread, where it can (:func:`runner`): a loop of that thread's
own runs the router, and every backend sends synchronously on it
(``adapters._inline``), so a call costs about what the sync SDK's does, with
no hop to another thread. Each thread's loop is made on its first call and
closed when the thread ends. Where nobody subscribed to the router's events,
the call's coroutine is first stepped directly (:func:`run_direct`): a call
whose sends all block never waits on the loop, so it runs to its end in that
one step and the loop's own machinery (a task, two polls) is not paid; the
first time it does wait (a retry's sleep), the rest runs as a task on the loop.

Elsewhere, on one background event loop that serves every synchronous client
(the portal): when the router needs a loop that keeps running between calls
(Redis state, hedged attempts, a backend without a synchronous twin), or when
the calling thread already runs a loop of its own (a sync call from async
code).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import weakref
from typing import Any, Callable, Coroutine, Generator, Optional, TypeVar

from sniffio import current_async_library_cvar  # the openai SDK's own dependency

from .adapters._inline import INLINE

__all__ = ["Run", "run", "run_direct", "run_here", "runner"]

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]

_loop: Optional[asyncio.AbstractEventLoop] = None
_pid = 0
_lock = threading.Lock()


def runner(router: Any) -> Run[T]:
    """How a sync client with this router runs its coroutines: on the calling thread (stepped directly when
    no event hook could meet a first step that has no task), or the portal."""
    if not router.inline:
        return run
    return run_here if router.listened else run_direct


def _portal() -> asyncio.AbstractEventLoop:
    """The portal loop, started on first use, and again in a forked child (whose copy has no thread)."""
    global _loop, _pid
    with _lock:
        if _loop is None or _loop.is_closed() or _pid != os.getpid():
            if _loop is not None and _pid != os.getpid():
                _inherited.append(_loop)  # a forked child's copy: never closed here
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="turnout-sync-portal", daemon=True).start()
            _loop, _pid = loop, os.getpid()
        return _loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the portal loop and wait for it; an interrupt cancels it there too."""
    loop = _portal()
    if _running_loop() is loop:
        coro.close()
        raise RuntimeError("turnout.OpenAI (sync) was called from its own event loop; use turnout.AsyncOpenAI")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


_inherited: list[asyncio.AbstractEventLoop] = []
"""Loops a forked child inherited, kept open: closing one there would take its self-pipe out of the epoll
instance the parent's copy shares, and the parent's loop would no longer wake (seen: a hang)."""


class _Own:
    """A thread's own loop, closed when the thread ends (its thread-local slot, the one reference, is dropped)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self.closer = weakref.finalize(self, self.loop.close)
        self.closer.atexit = False  # at exit the process takes it; a forked child must not close it

    def forsake(self) -> None:
        """In a forked child: never closed here (see ``_inherited``)."""
        self.closer.detach()
        _inherited.append(self.loop)


class _Here(threading.local):
    own: Optional[_Own] = None


_here = _Here()


def run_here(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` as a task on this thread's own loop, backends sending synchronously; on the portal if this
    thread is running a loop already. An interrupt (KeyboardInterrupt) cancels it, as with the portal."""
    return _on_this_thread(coro, direct=False)


def run_direct(coro: Coroutine[Any, Any, T]) -> T:
    """As :func:`run_here`, but its first step is taken directly, with this thread's loop set as the running
    one and no task (``asyncio.current_task()`` is ``None`` there): the router's own code needs none, which is
    why a router with event hooks (code of the caller's) runs by :func:`run_here`."""
    return _on_this_thread(coro, direct=True)


def _on_this_thread(coro: Coroutine[Any, Any, T], direct: bool) -> T:
    if _running_loop() is not None:
        return run(coro)
    loop = _thread_loop()
    context = contextvars.copy_context()  # the call's own, as a task's: what it sets stays in it
    context.run(_inline)
    if direct:
        try:
            first = context.run(_first_step, loop, coro)
        except StopIteration as done:  # ran to its end without waiting: the usual case
            _settled(loop)
            return done.value  # type: ignore[no-any-return]
        except BaseException:
            _settled(loop)
            raise
        coro = _resume(coro, first, context)
    task = context.run(loop.create_task, coro)
    try:
        return loop.run_until_complete(task)
    except BaseException:
        if not task.done():  # interrupted between its steps: cancelled, as the portal's is
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        raise
    finally:
        if asyncio.all_tasks(loop):  # what the call left behind (a broken stream's count): done now
            loop.run_until_complete(_settle(loop))


def _settled(loop: asyncio.AbstractEventLoop) -> None:
    """What a call that ended in its first step left scheduled (a broken stream's count), done now."""
    if _scheduled(loop):
        loop.run_until_complete(_settle(loop))


def _scheduled(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether anything waits to run on ``loop``, which has not run since the step began: a task made then is
    ready to take its first step. asyncio's own loops keep a queue of what is ready; another kind is asked
    for its tasks (slower: every task of the process is looked at)."""
    ready = getattr(loop, "_ready", None)
    return bool(ready) if ready is not None else bool(asyncio.all_tasks(loop))


def _inline() -> None:
    INLINE.set(True)
    current_async_library_cvar.set("asyncio")  # asked by the async SDK (a thread hop): no task runs yet to say so


def _first_step(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> Any:
    """``coro``'s first step, ``loop`` running for it (its futures and callbacks belong there); what it
    yields when it waits, or ``StopIteration`` with its result."""
    asyncio._set_running_loop(loop)
    try:
        return coro.send(None)
    finally:
        asyncio._set_running_loop(None)


async def _resume(coro: Coroutine[Any, Any, T], first: Any, context: contextvars.Context) -> T:
    result: T = await _Rest(coro, first, context)
    return result


class _Rest:
    """The rest of a coroutine already stepped once, delegated to as ``yield from`` would (PEP 380): the
    task running it waits on what the coroutine yields, and sends or throws into it what the task is told,
    in the context its first step ran in (a variable it set there is reset there)."""

    __slots__ = ("coro", "first", "context")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any, context: contextvars.Context) -> None:
        self.coro, self.first, self.context = coro, first, context

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting, run = self.coro, self.first, self.context.run
        while True:
            try:
                sent = yield waiting
            except GeneratorExit:
                run(coro.close)
                raise
            except BaseException as exc:  # a cancellation or an interrupt, as a task throws it
                try:
                    waiting = run(coro.throw, exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                waiting = run(coro.send, sent)
            except StopIteration as done:
                return done.value


def _thread_loop() -> asyncio.AbstractEventLoop:
    own = _here.own
    if own is not None and own.pid != os.getpid():  # a forked child makes its own
        own.forsake()
        own = None
    if own is None or own.loop.is_closed():
        own = _here.own = _Own()
    return own.loop


async def _settle(loop: asyncio.AbstractEventLoop) -> None:
    current = asyncio.current_task()
    await asyncio.gather(*(t for t in asyncio.all_tasks(loop) if t is not current), return_exceptions=True)


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    return asyncio._get_running_loop()  # None, where get_running_loop() would raise (a cost on every call)
