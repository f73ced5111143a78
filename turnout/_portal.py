"""One background event loop that serves every synchronous client.

The synchronous ``turnout.OpenAI`` runs the very same async router on this
loop instead of a hand-copied sync router: one routing code path for both.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Coroutine, Optional, TypeVar

__all__ = ["run"]

T = TypeVar("T")

_loop: Optional[asyncio.AbstractEventLoop] = None
_pid = 0
_lock = threading.Lock()


def _portal() -> asyncio.AbstractEventLoop:
    """The portal loop, started on first use, and again in a forked child (whose copy has no thread)."""
    global _loop, _pid
    with _lock:
        if _loop is None or _loop.is_closed() or _pid != os.getpid():
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


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
