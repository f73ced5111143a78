"""Highly available Redis for the tests, as people run it in production, on loopback: a primary, its
replica and a Sentinel watching them; or a Redis Cluster of three primaries, each with a replica.
Real ``redis-server`` processes (see ``tests/support/redis_server.py``); ``redis-cli --cluster create`` joins a
cluster. Killing a primary makes the Sentinel, or the cluster, promote its replica.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from typing import Callable

import redis

from tests.support.redis_server import RedisServer

__all__ = ["SentinelGroup", "Cluster", "eventually"]

LIMIT = 30.0


def eventually(check: Callable[[], object], what: str, limit: float = LIMIT) -> None:
    """Until ``check()`` is true; bounded, it fails naming ``what``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"not within {limit:g}s: {what}")


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


def _synced(port: int) -> bool:
    """A primary, or a replica that has its primary's data (one that never synced is not promoted)."""
    info = _client(port).info("replication")
    return info["role"] == "master" or info.get("master_link_status") == "up"


class SentinelGroup:
    """A primary, its replica, and one Sentinel (quorum 1) that fails over half a second after the primary
    stops answering."""

    service = "turnout-primary"

    def __init__(self) -> None:
        self.servers: list[RedisServer] = []

    def __enter__(self) -> SentinelGroup:
        primary = self._start(RedisServer())
        replica = self._start(RedisServer(None, "--replicaof", "127.0.0.1", str(primary.port)))
        eventually(lambda: _synced(replica.port), "the replica is in sync")
        self.sentinel = self._start(
            RedisServer(
                sentinel=(
                    f"sentinel monitor {self.service} 127.0.0.1 {primary.port} 1\n"
                    f"sentinel down-after-milliseconds {self.service} 500\n"
                    f"sentinel failover-timeout {self.service} 5000\n"
                )
            )
        )
        eventually(lambda: _client(self.sentinel.port).sentinel_slaves(self.service), "the Sentinel knows the replica")
        return self

    def _start(self, server: RedisServer) -> RedisServer:
        self.servers.append(server)
        return server.start()

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}"

    def primary_port(self) -> int:
        return int(_client(self.sentinel.port).sentinel_get_master_addr_by_name(self.service)[1])

    def server_on(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def __exit__(self, *exc: object) -> None:
        for server in reversed(self.servers):
            server.__exit__()


class Cluster:
    """Three primaries and three replicas; a node is counted failed after one second."""

    def __init__(self) -> None:
        self.nodes: list[RedisServer] = []

    def __enter__(self) -> Cluster:
        for _ in range(6):
            node = RedisServer(
                _cluster_port(),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
            )
            self.nodes.append(node)
            node.start()
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for node in self.nodes:
            eventually(
                lambda node=node: _client(node.port).cluster("info")["cluster_state"] == "ok",
                f"node {node.port} sees the cluster whole",
            )
            eventually(lambda node=node: _synced(node.port), f"node {node.port}, if a replica, is in sync")
        return self

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def primary_of(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot now (asked of a node still up)."""
        alive = next(n for n in self.nodes if n.proc is not None and n.proc.poll() is None)
        client = redis.RedisCluster(host="127.0.0.1", port=alive.port, socket_timeout=2)
        try:
            node = client.get_node_from_key(key)
            return next(n for n in self.nodes if n.port == int(node.port))
        finally:
            client.close()

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            node.__exit__()
