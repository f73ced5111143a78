"""A real Redis server for the tests: ``redis-server`` on a free loopback port, nothing written to disk.

``scripts/_venv.sh`` installs Debian's ``redis-server`` on a fresh machine
(``TURNOUT_TEST_REDIS_SERVER`` names another binary). A server can be killed
and started again on the same port, as an outage and a recovery.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisServer", "redis_server_missing", "BINARY_VARIABLE"]

BINARY_VARIABLE = "TURNOUT_TEST_REDIS_SERVER"
START_LIMIT = 10.0


def _binary() -> str | None:
    return (
        os.environ.get(BINARY_VARIABLE)
        or shutil.which("redis-server")
        or next(
            (
                p
                for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")
                if os.access(p, os.X_OK)
            ),
            None,
        )
    )


def redis_server_missing() -> str | None:
    """Why no Redis server can be started here, or ``None``."""
    if _binary() is None:
        return f"no redis-server binary (./scripts/test installs Debian's redis-server; or set {BINARY_VARIABLE})"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; use as a context manager, or ``start()``/``stop()``."""

    def __init__(self, port: int | None = None, *args: str, sentinel: str | None = None) -> None:
        """``args``: more of redis-server's options (``--replicaof``, ``--cluster-enabled``); ``sentinel``:
        the text of a Sentinel's configuration, to run as one."""
        self.port = port or _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="turnout-redis-")
        self._args = args
        self._sentinel = sentinel

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = _binary()
        assert binary is not None, redis_server_missing()
        where = [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self._dir,
            "--logfile",
            str(Path(self._dir) / "redis.log"),
            "--daemonize",
            "no",
        ]
        if self._sentinel is not None:
            conf = Path(self._dir) / "sentinel.conf"  # Sentinel rewrites it: a file of its own
            if not conf.exists():
                conf.write_text(self._sentinel)
            command = [binary, str(conf), "--sentinel", *where]
        else:
            command = [binary, *where, "--save", "", "--appendonly", "no", *self._args]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.log()[-2000:]}")
            if self.command("PING") == "+PONG":
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {START_LIMIT:g}s")

    def command(self, *words: str) -> str | None:
        """One command over a raw socket: the first line of the answer, or ``None`` if nobody answers."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(("*%d\r\n" % len(words) + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)).encode())
                return sock.recv(65536).split(b"\r\n", 1)[0].decode()
        except OSError:
            return None

    def flush(self) -> None:
        assert self.command("FLUSHALL") == "+OK"

    def kill(self) -> None:
        """SIGKILL: gone at once, as a crashed or unreachable server, its memory with it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            return (Path(self._dir) / "redis.log").read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
