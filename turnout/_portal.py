"""How the synchronous ``turnout.OpenAI`` runs the async router: one routing code path for both clients.

On the calling thread, where it can (:func:`runner`): a loop of that thread's
own runs the router, and every backend sends synchronously on it
(``adapters._inline``), so a call costs about what the sync SDK's does, with
no hop to another thread. Each thread's loop is made on its first call and
closed when the thread ends.

Elsewhere, on one background event loop that serves every synchronous client
(the portal): when the router needs a loop that keeps running between calls
(Redis state, hedged attempts, a backend without a synchronous twin), or when
the calling thread already runs a loop of its own (a sync call from async
code).
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any, Callable, Coroutine, Optional, TypeVar

from .adapters._inline import INLINE

__all__ = ["Run", "run", "run_here", "runner"]

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]

_loop: Optional[asyncio.AbstractEventLoop] = None
_pid = 0
_lock = threading.Lock()


def runner(router: Any) -> Run[T]:
    """How a sync client with this router runs its coroutines: on the calling thread, or the portal."""
    return run_here if router.inline else run


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
    """Run ``coro`` on this thread's own loop, backends sending synchronously; on the portal if this thread
    is running a loop already. An interrupt (KeyboardInterrupt) cancels it, as with the portal."""
    if _running_loop() is not None:
        return run(coro)
    loop = _thread_loop()
    token = INLINE.set(True)  # the call's task copies this context
    try:
        task = loop.create_task(coro)
    finally:
        INLINE.reset(token)
    try:
        return loop.run_until_complete(task)
    except BaseException:
        if not task.done():  # interrupted between its steps: cancelled, as the portal's is
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        raise
    finally:
        if asyncio.all_tasks(loop):  # what the call left scheduled (a broken stream's count): done now
            loop.run_until_complete(_settle(loop))


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
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
