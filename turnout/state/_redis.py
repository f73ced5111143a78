"""The Redis store: breaker, budget, rate windows and stored conversations shared by every process.

``TURNOUT_STATE_URL=redis://host:6379/0`` (``rediss://`` for TLS); for a
highly available Redis, ``redis+sentinel://host:26379,host2:26379/mymaster``
(the primary Sentinel names, followed through failovers) or
``redis+cluster://host:7000,host2:7001`` (a Redis Cluster). redis-py's
asyncio client, an optional extra: ``pip install 'turnout[redis]'``.

Cluster: each step touches one key (a backend's hash, tagged ``{name}`` so
its name picks the slot, or one stored value), so every script runs on the
one node that holds its key.

Each step is one round trip (a Lua script, ``_scripts``). On the way of a
request that goes well there is exactly one: the admission. A success writes
only when there was something to reset. With a TPM limit, the correction of
a request's estimated tokens from its answer rides with this process's next
admission to that backend, or goes alone after ``OWED_FOR`` seconds if none
comes first: other processes see it that much later, this one never reads its
own count stale.

When Redis cannot be reached, every step runs on this process's own state
(``LocalBackend``) instead: requests keep flowing, with limits counted per
process. One warning is logged per outage, not one per request; a background
task pings Redis every second, and when it answers the shared state is used
again (what was counted locally meanwhile is dropped).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import socket
import urllib.parse
from collections import Counter
from typing import Any, Awaitable, Callable, Optional, TypeVar

from .._errors import ConfigError
from .._redact import redact_url
from . import _clock, _scripts
from ._base import COOLING, PROBING, SPAN, Admission, Limits, Session, View
from ._local import LocalBackend, Ring
from ._memory import MemoryState

__all__ = ["RedisState", "RECONNECT_EVERY", "SCHEMES", "connect", "LEASE"]

log = logging.getLogger("turnout")
T = TypeVar("T")

RECONNECT_EVERY = 1.0
"""Seconds between pings while Redis is unreachable."""

OWED_FOR = 0.05
"""Seconds a token correction waits for an admission to ride with before it is sent alone."""

LEASE = 5.0
"""Seconds a process's requests in flight count after its last word: a process that died is forgotten then."""

FRESH = 0.25
"""Seconds the in-flight counts last seen are good for ordering; older, they are read again (least-busy only)."""

_WHY = {"cooling down": COOLING, "probed by another request": PROBING}


class RedisState:
    """State in Redis at ``url``, under keys ``<prefix>:...``. ``timeout`` bounds every command (seconds):
    a Redis slower than that counts as unreachable."""

    shared = True

    def __init__(self, url: str, *, prefix: str = "turnout", timeout: float = 0.5) -> None:
        try:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisClusterException, RedisError
        except ImportError:
            raise ConfigError(
                "TURNOUT_STATE_URL names a Redis server, and the redis package is not installed: "
                "pip install 'turnout[redis]'"
            ) from None
        self.url = url
        self.prefix = prefix
        self._errors: tuple[type[BaseException], ...] = (
            RedisError,
            RedisClusterException,
            OSError,
            asyncio.TimeoutError,
        )  # a cluster's are not RedisErrors
        # no retries inside redis-py: a failed step falls back to local state at once, and the pings reconnect
        self.client = connect(url, timeout=timeout, retry=Retry(NoBackoff(), 0))
        self.cluster = "+cluster" in url.split("://", 1)[0].lower()
        """A Redis Cluster: one slot per script, so no in-flight counts or sessions across backends' keys."""
        self._scripts = {
            name: self.client.register_script(getattr(_scripts, name))
            for name in ("ADMIT", "FAILED", "FULL", "USED", "BUDGET", "VIEW", "BUSY")
        }
        self.busy = InFlight(self)
        self._backends: list[RedisBackend] = []
        self._local_kv = MemoryState()  # while Redis is away: bounded, expiring, this process's own
        self.down = False
        self._pinging: Optional[asyncio.Task[None]] = None

    def __repr__(self) -> str:
        return f"RedisState(url={redact_url(self.url)!r}, prefix={self.prefix!r}, down={self.down})"

    def backend(self, name: str, limits: Limits) -> RedisBackend:
        made = RedisBackend(self, name, f"{self.prefix}:backend:{{{name}}}", limits)
        self._backends.append(made)
        return made

    # -- one step, or the fallback ---------------------------------------------------------
    async def run(self, script: str, key: str | list[str], args: list[Any], fallback: Callable[[], T]) -> Any:
        """The script's answer, or ``fallback()``'s while Redis is unreachable."""
        if self.down:
            return fallback()
        try:
            return await self._scripts[script](keys=[key] if isinstance(key, str) else key, args=args)
        except self._errors as err:
            self._lost(err)
            return fallback()

    async def command(self, step: Callable[[], Awaitable[Any]], fallback: Callable[[], Awaitable[T]]) -> Any:
        """One plain command's answer, or the local store's while Redis is unreachable."""
        if self.down:
            return await fallback()
        try:
            return await step()
        except self._errors as err:
            self._lost(err)
            return await fallback()

    def _lost(self, err: BaseException) -> None:
        if self.down:
            return
        self.down = True
        log.warning(
            "shared state: Redis at %s is unreachable (%s: %s); each process uses its own state meanwhile",
            redact_url(self.url),
            type(err).__name__,
            err,
        )
        self._pinging = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        await self._forget_connections()
        while True:
            await asyncio.sleep(RECONNECT_EVERY)
            try:
                await self.client.ping()
            except self._errors:
                await self._forget_connections()
                continue
            for backend in self._backends:  # what was counted locally meanwhile is dropped
                backend.local = LocalBackend(backend.limits)
            self.down = False
            log.warning("shared state: Redis at %s answers again; shared state resumed", redact_url(self.url))
            return

    async def _forget_connections(self) -> None:
        """Every pooled connection went to a server that left: the next ones are made anew (through
        Sentinel, to whichever server is the primary now). A cluster client re-reads the cluster's
        layout itself after a failed command."""
        pool = getattr(self.client, "connection_pool", None)
        if pool is not None:
            try:
                await pool.disconnect()
            except self._errors:
                pass

    # -- key-value: stored conversations ------------------------------------------------------
    def _kv(self, key: str) -> str:
        return f"{self.prefix}:kv:{key}"

    async def get(self, key: str) -> dict[str, Any] | None:
        raw = await self.command(lambda: self.client.get(self._kv(key)), lambda: self._local_kv.get(key))
        value: dict[str, Any] | None = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
        return value

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        await self.command(
            lambda: self.client.set(self._kv(key), json.dumps(value), px=max(1, math.ceil(ttl * 1000))),
            lambda: self._local_kv.put(key, value, ttl),
        )

    async def delete(self, key: str) -> bool:
        return bool(await self.command(lambda: self.client.delete(self._kv(key)), lambda: self._local_kv.delete(key)))

    def session_key(self, session: str) -> str:
        return f"{self.prefix}:session:{session}"

    async def aclose(self) -> None:
        if self._pinging is not None:
            self._pinging.cancel()
        await asyncio.gather(self.busy.settle(), *(b._settled() for b in self._backends))
        await self.client.aclose()


def connect(url: str, *, timeout: float, retry: Any) -> Any:
    """The redis-py client a URL names (see ``SCHEMES``); ``timeout`` bounds every command and connect."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    options: dict[str, Any] = dict(socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry)
    if scheme in ("redis", "rediss", "unix"):
        import redis.asyncio as aioredis

        return aioredis.Redis.from_url(url, **options)
    parts = urllib.parse.urlsplit(f"redis://{rest}")
    nodes = _nodes(parts.netloc.rpartition("@")[2], url)
    auth: dict[str, Any] = dict(
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password=urllib.parse.unquote(parts.password) if parts.password else None,
    )
    tls = scheme.startswith("rediss")
    if scheme.endswith("+sentinel"):
        from redis.asyncio.sentinel import Sentinel

        service, _, db = parts.path.strip("/").partition("/")
        if not service:
            raise ConfigError(
                f"TURNOUT_STATE_URL {redact_url(url)!r} names no service: "
                "redis+sentinel://host:26379,host2:26379/<service>[/<db>]"
            )
        sentinels = Sentinel(
            nodes,
            sentinel_kwargs=dict(socket_timeout=timeout, socket_connect_timeout=timeout),
            **({"ssl": True} if tls else {}),  # type: ignore[arg-type]
        )
        return sentinels.master_for(service, db=int(db or 0), **auth, **options)
    if scheme.endswith("+cluster"):
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in nodes], ssl=tls, **auth, **options)
    raise ConfigError(f"TURNOUT_STATE_URL {redact_url(url)!r}: the scheme is not one of {', '.join(SCHEMES)}")


SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "redis+cluster://",
    "rediss+cluster://",
)
"""What ``TURNOUT_STATE_URL`` may start with: one server (TLS: ``rediss``), a socket, the primary Redis
Sentinel names for a service, or a Redis Cluster (any of its nodes; the rest are found)."""


def _nodes(hosts: str, url: str) -> list[tuple[str, int]]:
    """``host:port,host2:port`` as pairs (port 26379 for a sentinel, 6379 for a cluster node by default)."""
    default = 26379 if "+sentinel" in url.split("://", 1)[0] else 6379
    nodes = []
    for item in filter(None, hosts.split(",")):
        host, sep, port = item.rpartition(":")
        if not sep or "]" in port:  # no port (a bracketed IPv6 address has colons of its own)
            host, port = item, ""
        if port and not port.isdigit():
            raise ConfigError(f"TURNOUT_STATE_URL {redact_url(url)!r}: {item!r} is not host:port")
        nodes.append((host.strip("[]"), int(port) if port else default))
    if not nodes:
        raise ConfigError(f"TURNOUT_STATE_URL {redact_url(url)!r} names no host")
    return nodes


class RedisBackend:
    """One backend's state in Redis, with a :class:`LocalBackend` for when Redis is away.

    It remembers what the last answers said (the breaker, the window use, the probe this process
    holds), so ``is_open`` and ``view`` need no round trip; ``refresh`` reads it all anew.
    """

    def __init__(self, store: RedisState, name: str, key: str, limits: Limits) -> None:
        self.store = store
        self.name = name
        self.key = key
        self.limits = limits
        self.local = LocalBackend(limits)
        self._probing = False
        self._owed: list[int] = []  # token corrections not sent yet: second, tokens, second, tokens, ...
        self._sending: Optional[asyncio.TimerHandle] = None
        self._correcting: set[asyncio.Future[Any]] = set()
        # as last seen; times on this process's clock
        self._open_until = 0.0
        self._half_open = False
        self._fails = self._openings = self._used_r = self._used_t = 0
        self._full_until = 0.0
        self._full_what = ""
        self._limits = f"{limits.rpm or 0} {limits.tpm or 0} {limits.probe_lease:.3f} {_scripts.KEEP_MS}".encode()

    def _args(self, tokens: int, mode: str, ended: str = "", session: str = "") -> list[Any]:
        return [tokens, mode, self._limits, ended, session, *self._take_owed()]

    def _take_owed(self) -> list[int]:
        owed, self._owed = self._owed, []
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None
        return owed

    def _send_owed(self) -> None:
        """No admission came to carry the corrections: they go alone (kept referenced until sent)."""
        self._sending = None
        owed = self._take_owed()
        if owed:
            step = asyncio.ensure_future(self.store.run("USED", self.key, owed, lambda: None))
            self._correcting.add(step)
            step.add_done_callback(self._correcting.discard)

    def _saw(self, reply: bytes) -> tuple[int, float, str, list[bytes]]:
        answer = reply.split(b"|")
        code, wait, why = int(answer[0]), float(answer[1]), answer[2].decode()
        self._fails, self._openings = int(answer[3]), int(answer[4])
        if len(answer) > 7 and int(answer[6]) >= 0:
            self._used_r, self._used_t = int(answer[6]), int(answer[7])
        self._half_open = code == 2 or why == "probed by another request"
        self._open_until = _clock.now() + wait if why == "cooling down" else 0.0
        if code == -1 and why not in ("rpm", "tpm"):
            self._full_until, self._full_what = _clock.now() + wait, why
        return code, wait, why, answer

    async def _corrected(self) -> None:
        """This process's token corrections still on their way, waited for."""
        if self._correcting:
            await asyncio.gather(*self._correcting)

    async def _settled(self) -> None:
        """Every correction this process owes, sent and landed."""
        self._send_owed()
        await self._corrected()

    async def admit(
        self, tokens: int, *, hold: bool = True, hedge: bool = False, session: Optional[Session] = None
    ) -> Admission:
        await self._corrected()
        busy = self.store.busy if self.limits.busy and not self.store.cluster else None
        if self.store.cluster:
            session = None  # the session's key is in another slot: this process's own memory decides
        ended = busy.spec(self.name) if busy is not None else ""
        # only the keys this step uses: a request without least-busy or a session touches one key (one slot
        # of a Redis Cluster); the unused places repeat it
        keys = [
            self.key,
            *((self.store.busy.key, self.store.busy.procs) if busy is not None else (self.key,) * 2),
            self.store.session_key(session.key) if session is not None else self.key,
        ]
        mode = "hedge" if hedge else "hold" if hold else "count"
        answer = await self.store.run(
            "ADMIT",
            keys,
            self._args(tokens, mode, ended, _session_arg(self.name, session)),
            lambda: self.local.admit_now(tokens, hold, hedge),
        )
        if isinstance(answer, Admission):
            if busy is not None:
                busy.unsent(ended)
            return answer
        code, wait, why, fields = self._saw(answer)
        if busy is not None:
            busy.saw(fields[8] if len(fields) > 8 else None)
        if code == 3:
            return Admission(False, moved=why)
        if code > 0:
            self._probing = self._probing or code == 2
            if busy is not None:
                busy.started(self.name)
            elif self.store.cluster:
                self.local.in_flight += 1  # counted in this process only (see RedisState.cluster)
            return Admission(True, probe=code == 2, tokens=tokens, second=int(fields[5]), fails=self._fails)
        return Admission(False, wait=wait, why=_WHY.get(why, why), full=code < 0)

    def done(self, admission: Admission) -> None:
        self.local.done(admission)
        if self.limits.busy:
            self.store.busy.ended(self.name)

    def busy(self) -> int:
        if self.store.down or self.store.cluster:
            return self.local.busy()
        return self.store.busy.count(self.name)

    async def again(self, tokens: int) -> Admission:
        await self._corrected()
        answer = await self.store.run(
            "ADMIT", self.key, self._args(tokens, "again"), lambda: self.local.again_now(tokens)
        )
        if isinstance(answer, Admission):
            return answer
        code, wait, why, fields = self._saw(answer)
        if code > 0:
            return Admission(True, tokens=tokens, second=int(fields[5]), fails=self._fails)
        return Admission(False, wait=wait, why=why, full=True)

    async def succeeded(self, admission: Admission) -> None:
        self._open_until, self._half_open = 0.0, False
        if admission.probe:
            self._probing = False
        if admission.fails or admission.probe:  # a count that was 0 when the request went needs no reset
            self._fails = 0
            await self.store.command(
                lambda: self.store.client.hset(self.key, mapping={"fails": 0, "open_until": 0, "probe_until": 0}),
                lambda: self.local.succeeded(admission),
            )

    async def failed(self, *, cool: bool = False, open_for: Optional[float] = None) -> bool:
        self._probing = False
        answer = await self.store.run(
            "FAILED",
            self.key,
            [
                self.limits.allowed_fails,
                self.limits.cooldown,
                int(cool),
                -1 if open_for is None else open_for,
                _scripts.KEEP_MS,
            ],
            lambda: self.local.failed_now(cool, open_for),
        )
        if isinstance(answer, bool):
            return answer
        is_open = int(answer[0]) == 1
        self._open_until = _clock.now() + float(answer[1]) if is_open else 0.0
        self._half_open = False
        self._fails, self._openings = int(answer[2]), int(answer[3])
        return is_open

    async def release(self, admission: Admission) -> None:
        if admission.probe:
            self._probing = False
            await self.store.command(
                lambda: self.store.client.hset(self.key, "probe_until", 0), lambda: self.local.release(admission)
            )

    async def full(self, seconds: float, what: str) -> None:
        until = _clock.now() + seconds
        if until > self._full_until:
            self._full_until, self._full_what = until, what
        await self.store.run(
            "FULL", self.key, [seconds, what, _scripts.KEEP_MS], lambda: self.local.full_now(seconds, what)
        )

    async def used(self, admission: Admission, tokens: int) -> None:
        if tokens == admission.tokens:
            return
        if self.store.down:
            self.local.used_now(admission, tokens)
            return
        self._owed += [admission.second, tokens - admission.tokens]
        if self._sending is None:
            self._sending = asyncio.get_running_loop().call_later(OWED_FOR, self._send_owed)

    async def can_retry(self) -> bool:
        answer = await self.store.run("BUDGET", self.key, [self.limits.budget_window], self.local.can_retry_now)
        if isinstance(answer, bool):
            return answer
        requests, retries = int(answer[0]), int(answer[1])
        return retries < self.limits.budget_min + self.limits.budget_ratio * requests

    def is_open(self) -> bool:
        if self.store.down:
            return self.local.is_open()
        return _clock.now() < self._open_until or self._probing

    def view(self) -> View:
        if self.store.down:
            return self.local.view()
        now = _clock.now()
        if now < self._open_until:
            state = "open"
        else:
            state = "half-open" if self._half_open else "closed"
        full = now < self._full_until
        return View(
            state,
            max(0.0, self._open_until - now),
            self._fails,
            self._openings,
            self._used_r,
            self._used_t,
            self._full_what if full else None,
            self._full_until - now if full else 0.0,
            shared=True,
        )

    async def refresh(self) -> View:
        await self._settled()
        answer = await self.store.run("VIEW", self.key, [], lambda: None)
        if answer is None:
            return self.local.view()
        redis_now = float(answer[0])
        fields = {_text(answer[1][i]): _text(answer[1][i + 1]) for i in range(0, len(answer[1]), 2)}
        number = _numbers(fields)
        ring = Ring()
        for i in range(SPAN):
            if f"s{i}" in fields:
                ring.slots[i] = [int(number(f"s{i}")), int(number(f"r{i}")), int(number(f"t{i}")), int(number(f"x{i}"))]
        self._used_r, self._used_t, _ = ring.totals(int(redis_now))
        self._fails, self._openings = int(number("fails")), int(number("openings"))
        open_until, full_until, now = number("open_until"), number("full_until"), _clock.now()
        self._open_until = now + open_until - redis_now if open_until > redis_now else 0.0
        self._half_open = 0 < open_until <= redis_now
        self._full_until = now + full_until - redis_now if full_until > redis_now else 0.0
        self._full_what = fields.get("full_what", "")
        return self.view()


def _session_arg(name: str, session: Optional[Session]) -> str:
    """The session for the admission script: this backend, the key's lifetime (ms), the others it may move to."""
    if session is None:
        return ""
    return "\t".join((name, str(max(1, math.ceil(session.ttl * 1000))), *session.others))


class InFlight:
    """Requests in flight on each backend, counted across processes for ``least-busy`` (see ``_scripts``).

    This process's own counts are exact; the other processes' are as the last script answered,
    read again when older than ``FRESH`` (``fresh()``). Ended requests ride with the next admission,
    or go alone after ``OWED_FOR``; while this process has requests in flight its lease is renewed
    every ``LEASE / 3`` seconds, so a long stream keeps counting and a dead process stops.
    """

    def __init__(self, store: RedisState) -> None:
        self.store = store
        self.key = f"{store.prefix}:inflight"
        self.procs = f"{store.prefix}:procs"
        self.proc = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.mine: Counter[str] = Counter()
        self.others: dict[str, int] = {}
        self.seen_at = -math.inf
        self._ended: list[str] = []
        self._sending: Optional[asyncio.TimerHandle] = None
        self._beating: Optional[asyncio.Task[None]] = None
        self._reading: Optional[asyncio.Future[None]] = None
        self._steps: set[asyncio.Future[Any]] = set()

    def count(self, name: str) -> int:
        return self.others.get(name, 0) + self.mine[name]

    def spec(self, name: str = "-") -> str:
        """This process, its lease, the backend to count one more on, and the requests ended since it last said."""
        ended, self._ended = self._ended, []
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None
        return "\t".join((self.proc, f"{LEASE:.3f}", name, *ended))

    def unsent(self, spec: str) -> None:
        """Redis did not take ``spec``: its ended requests are owed still."""
        self._ended.extend(spec.split("\t")[3:])

    def saw(self, others: bytes | None) -> None:
        if others is None:
            return
        counts: dict[str, int] = {}
        for item in others.split():
            name, _, n = item.decode().rpartition("=")
            counts[name] = int(n)
        self.others = counts
        self.seen_at = _clock.now()

    def started(self, name: str) -> None:
        self.mine[name] += 1
        if self._beating is None or self._beating.done():
            self._beating = asyncio.ensure_future(self._beat())

    def ended(self, name: str) -> None:
        if self.mine[name] > 0:
            self.mine[name] -= 1
            self._ended.append(name)
            if self._sending is None:
                self._sending = asyncio.get_running_loop().call_later(OWED_FOR, self._send)

    def _send(self) -> None:
        self._sending = None
        if self._ended:
            step = asyncio.ensure_future(self._read())
            self._steps.add(step)
            step.add_done_callback(self._steps.discard)

    async def _read(self) -> None:
        spec = self.spec()
        answer = await self.store.run("BUSY", [self.key, self.procs], [spec], lambda: None)
        if answer is None:
            self.unsent(spec)
        else:
            self.saw(answer)

    async def fresh(self) -> None:
        """The other processes' counts, read now if the last seen are older than ``FRESH`` (one read for
        every request that asks meanwhile)."""
        if self.store.down or _clock.now() - self.seen_at < FRESH:
            return
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read())
        await asyncio.shield(self._reading)

    async def _beat(self) -> None:
        while sum(self.mine.values()) > 0:
            await asyncio.sleep(LEASE / 3)
            if _clock.now() - self.seen_at >= LEASE / 3:
                await self._read()

    async def settle(self) -> None:
        """At close: no more lease renewals; the requests that ended are said to have ended."""
        if self._beating is not None:
            self._beating.cancel()
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None
        if self._ended and not self.store.down:
            await self._read()
        if self._steps:
            await asyncio.gather(*self._steps)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _numbers(fields: dict[str, str]) -> Callable[[str], float]:
    def number(name: str) -> float:
        try:
            return float(fields.get(name) or 0)
        except ValueError:
            return 0.0

    return number
