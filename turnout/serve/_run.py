"""Running the server: where it may listen, uvicorn, ``--workers``, and a graceful SIGTERM.

SIGTERM (or Ctrl-C) stops accepting connections, lets the requests in
flight finish, streams included, for up to ``grace`` seconds, cancels what
is left, closes the backends' connections, and exits 0 (Ctrl-C: 130, as
every ``turnout`` command).
"""

from __future__ import annotations

import atexit
import inspect
import ipaddress
import os
import shutil
import signal
import socket
import tempfile
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from ..settings import TurnoutSettings
from . import _log
from ._app import create_app
from ._http import BODY_TIMEOUT, HEADER_TIMEOUT, protocol

__all__ = ["exposure_problem", "is_loopback", "serve", "FACTORY"]

_BACKLOG = 2048

FACTORY = "turnout.serve:app_from_env"
"""What each ``--workers`` process imports: the app, configured by the environment."""


def is_loopback(host: str) -> bool:
    """Only this machine can connect: a loopback address, or ``localhost``."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def exposure_problem(host: str, has_keys: bool, insecure: bool) -> str | None:
    """Why the server must not start on ``host``, or ``None``: without keys, anyone who can reach the
    port would spend the backends' keys and quotas, so only loopback, unless ``--insecure``."""
    if has_keys or insecure or is_loopback(host):
        return None
    return (
        f"refusing to listen on {host} without keys: anyone who can reach it could use every backend "
        f"(and spend their keys). Set TURNOUT_SERVE_API_KEYS (callers then send `Authorization: Bearer "
        f"<key>`), listen on 127.0.0.1, or pass --insecure if the network itself is trusted"
    )


def serve(
    settings: TurnoutSettings, *, host: str, port: int, workers: int = 1, grace: float = 30.0, verbose: bool = False
) -> int:
    """Listen on ``host:port`` until SIGTERM or Ctrl-C; 0 once stopped (a bind failure raises ``OSError``).

    ``verbose`` logs the router's retries and failovers (one process only: workers log at the default level)."""
    if workers > 1:
        _shared_metrics()
    app = create_app(settings)  # checks the configuration before anything is bound
    _log.setup(app.state.scrub)
    if verbose:
        _log.narrate()
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    options: dict[str, Any] = dict(
        host=host,
        port=bound,
        timeout_graceful_shutdown=grace,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
        backlog=_BACKLOG,
        http=protocol(),  # uvicorn counts the connection a request comes on too: one more
        limit_concurrency=settings.serve_max_connections + 1,
    )
    where = f"http://{_url_host(host)}:{bound}/v1"
    backends = ", ".join(app.state.backends)
    access = "keys required" if settings.serve_api_keys else "no keys"
    signal.signal(signal.SIGTERM, _stopped)  # uvicorn re-raises it after shutting down: exit 0, not -15
    if workers > 1:
        _log.log.info("listening on %s with %d workers (backends: %s; %s)", where, workers, backends, access)
        _supervisor(_config(settings, FACTORY, factory=True, workers=workers, **options), sock).run()
    else:
        _Server(_config(settings, app, **options), f"listening on {where} (backends: {backends}; {access})").run(
            sockets=[sock]
        )
    return 0


def _shared_metrics() -> None:
    """Every worker's Prometheus counters in one directory, summed at each scrape (prometheus-client's
    multiprocess mode): set before any worker imports prometheus-client, removed when the server stops."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the operator's own
        return
    folder = tempfile.mkdtemp(prefix="turnout-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


def _config(settings: TurnoutSettings, app: Any, **options: Any) -> uvicorn.Config:
    """uvicorn's config, carrying the read timeouts to the protocol (and with it to each worker)."""
    config = uvicorn.Config(app, **options)
    setattr(config, HEADER_TIMEOUT, settings.serve_header_timeout)
    setattr(config, BODY_TIMEOUT, settings.serve_body_timeout)
    return config


class _Server(uvicorn.Server):
    """uvicorn's server, saying when it is ready (tests and scripts wait for that line) and when it stops."""

    def __init__(self, config: uvicorn.Config, ready: str) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            _log.log.info("%s", self._ready)

    async def shutdown(self, sockets: Any = None) -> None:
        busy = len(self.server_state.connections)
        _log.log.info(
            "stopping: no new connections; %d open, given up to %gs to finish",
            busy,
            self.config.timeout_graceful_shutdown or 0,
        )
        await super().shutdown(sockets)
        _log.log.info("stopped")


def _supervisor(config: uvicorn.Config, sock: socket.socket) -> Multiprocess:
    """uvicorn's worker supervisor (older uvicorn versions, 0.30 among them, also take the worker's ``target``)."""
    if "target" in inspect.signature(Multiprocess).parameters:
        return Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock])  # type: ignore[call-arg]
    return Multiprocess(config, sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named: asyncio sets TCP_NODELAY only on sockets that say TCP, and without it every small
    # answer waits ~40 ms for a delayed ACK (uvicorn's own bind_socket leaves it at 0)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(_BACKLOG)  # connections made while workers start wait for them instead of being refused
    sock.set_inheritable(True)  # --workers: each worker process accepts on it
    return sock


def _url_host(host: str) -> str:
    return f"[{host.strip('[]')}]" if ":" in host else host


def _stopped(signum: int, frame: Any) -> None:
    """SIGTERM after uvicorn's graceful shutdown: nothing left to do."""
