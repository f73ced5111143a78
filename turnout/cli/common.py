"""What every subcommand shares: loading the configuration, backend order, output and its redaction."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import urllib.parse
from typing import Any, Coroutine, Iterator, Mapping, TextIO, TypeVar

from openai import APIError
from pydantic import SecretStr

from .._errors import describe
from ..settings import ResolvedBackend, ResolvedConfig, TurnoutSettings, resolve

__all__ = [
    "APIError",
    "BackendsDown",
    "UsageError",
    "describe",
    "load",
    "ranked",
    "run",
    "error",
    "backend_errors",
    "show_log",
    "redacted_output",
    "silence_stdout",
    "dump_json",
]

T = TypeVar("T")


class UsageError(Exception):
    """The command line cannot work (an empty prompt, say): exit 2, like a bad configuration."""


class BackendsDown(Exception):
    """No backend could do what a subcommand asked; ``errors`` holds each one's reason."""

    def __init__(self, message: str, errors: Mapping[str, BaseException | str]) -> None:
        super().__init__(message)
        self.errors = dict(errors)


def load(*, strict: bool = True) -> ResolvedConfig:
    """The environment and .env, resolved; its keys join the redaction list before anything is printed."""
    config = resolve(TurnoutSettings(), strict=False)
    _SECRETS.update(_secrets_of(config))
    return config.check() if strict else config


def ranked(config: ResolvedConfig) -> list[ResolvedBackend]:
    """Backends in the order the router tries them: PRIORITY, else position; ties keep position."""
    order = sorted(
        enumerate(config.backends),
        key=lambda ib: (ib[1].priority.value if ib[1].priority.value is not None else ib[0], ib[0]),
    )
    return [b for _, b in order]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """One event loop per command; Ctrl-C cancels it (closing connections) and surfaces as KeyboardInterrupt.

    The loop itself listens for SIGINT (``add_signal_handler``: the signal wakes it through its wakeup fd).
    ``asyncio.run``'s own handler runs only when the main thread next runs Python code; a SIGINT the kernel
    hands to another thread (the SDK's DNS look-ups run in a thread pool) then waited, unseen, for as long
    as a hung backend kept the loop asleep."""
    interrupted = False

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_sigint() -> None:
            nonlocal interrupted
            interrupted = True
            if task is not None:
                task.cancel()

        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread: asyncio.run's handler
            return await coro
        try:
            return await coro
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise


# -- output ---------------------------------------------------------------------
def error(message: str) -> None:
    sys.stderr.write(f"turnout: {message}\n")


def backend_errors(head: str, errors: Mapping[str, BaseException | str]) -> None:
    """One line per backend: users fix backends one at a time, so each gets its own reason."""
    lines = [f"  {name}: {err if isinstance(err, str) else describe(err)}" for name, err in errors.items()]
    error("\n".join([head, *lines]))


def show_log(verbose: bool = False) -> None:
    """turnout's warnings (a misspelt backend section, say) on stderr; everything it logs when verbose."""
    import logging

    handler = logging.StreamHandler(sys.stderr)  # the redacted stderr: installed inside redacted_output()
    handler.setFormatter(logging.Formatter("turnout: log: %(message)s" if verbose else "turnout: warning: %(message)s"))
    logger = logging.getLogger("turnout")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)


def dump_json(value: Any) -> None:
    import json

    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())


# -- secrets never reach the terminal ----------------------------------------------
_SECRET_VARIABLE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)  # not ..._KEY_ENV: a name
_SECRET_HEADER = re.compile(r"auth|key|token|secret", re.IGNORECASE)
_SECRETS: set[str] = set()
_MIN_SECRET = 8  # shorter values are too likely to be ordinary words


def _secrets_of(config: ResolvedConfig) -> set[str]:
    found: set[str] = set()
    for backend in config.backends:
        if isinstance(backend.api_key.value, SecretStr):  # not a key function (passed in code only)
            found.add(backend.api_key.value.get_secret_value())
        password = urllib.parse.urlsplit(backend.proxy.value or "").password
        if password:  # a proxy's, wherever an error message repeats its address
            found.add(urllib.parse.unquote(password))
        for name, value in (backend.headers.value or {}).items():
            if _SECRET_HEADER.search(name):
                found.add(value.get_secret_value())
    return {s for s in found if len(s) >= _MIN_SECRET}


class _Redacting:
    """A text stream that writes every known secret as ``****``.

    Settings already mask keys, but a server may echo one in an error
    message, or a bug may put one in a traceback: this is the last line.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        for secret in sorted(_SECRETS, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, "****")
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def redacted_output() -> Iterator[None]:
    """stdout and stderr redacted; secrets are the environment's key-like variables plus resolved keys."""
    _SECRETS.update(v for k, v in os.environ.items() if _SECRET_VARIABLE.search(k) and len(v) >= _MIN_SECRET)
    saved = sys.stdout, sys.stderr
    for stream in saved:  # a terminal that cannot show "…" gets "?", not a UnicodeEncodeError
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="replace")  # type: ignore[union-attr]
    sys.stdout, sys.stderr = _Redacting(sys.stdout), _Redacting(sys.stderr)
    try:
        yield
    finally:
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.flush()
        sys.stdout, sys.stderr = saved
