"""Several processes, one view of the backends: real worker processes (tests/support/state_workers.py), each with
its own router, against the loopback servers and a real Redis server run by the test.

Counts are read at the servers, which see every request whatever process sent it.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import uuid
from typing import Any, Iterator

import pytest

from tests.support import state_workers
from tests.support.loopback import Fault, OpenAIServer

SPAWN = multiprocessing.get_context("spawn")  # no fork of a process running server threads
WAIT = 60.0


class Worker:
    """One worker process and its two queues; the warnings it logged are kept in ``logs``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.commands, self.replies = SPAWN.Queue(), SPAWN.Queue()
        self.stop = SPAWN.Event()
        self.logs: list[str] = []
        self.proc = SPAWN.Process(
            target=state_workers.main, args=(spec, self.commands, self.replies, self.stop), daemon=True
        )

    def ask(self, *command: Any) -> Any:
        self.commands.put(command)
        return self.answer(command[0])

    def answer(self, kind: str, limit: float = WAIT) -> Any:
        end = time.monotonic() + limit
        while True:
            try:
                reply = self.replies.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"worker {self.proc.pid}: no {kind!r} answer within {limit:g}s") from None
            if reply[0] == "log":
                self.logs.append(reply[1])
            elif reply[0] == kind:
                return reply[1] if len(reply) > 1 else None

    def read_logs(self) -> list[str]:
        while True:
            try:
                reply = self.replies.get_nowait()
            except queue.Empty:
                return self.logs
            if reply[0] == "log":
                self.logs.append(reply[1])

    def close(self) -> None:
        if self.proc.is_alive():
            self.commands.put(("quit",))
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


@pytest.fixture
def workers() -> Iterator:
    """``workers(n, redis_url, backends)``: n worker processes, started and ready; all stopped afterwards."""
    made: list[Worker] = []

    def start(
        n: int,
        redis_url: str,
        backends: list[tuple[str, OpenAIServer, dict[str, Any]]],
        prefix: str | None = None,
        **router: Any,
    ) -> list[Worker]:
        spec = {
            "redis": redis_url,
            "prefix": prefix or f"test-{uuid.uuid4().hex[:8]}",
            "router": router,
            "backends": [(name, server.base_url, knobs) for name, server, knobs in backends],
        }
        batch = [Worker(spec) for _ in range(n)]
        made.extend(batch)
        for worker in batch:
            worker.proc.start()
        for worker in batch:
            worker.answer("ready")
        return batch

    yield start
    for worker in made:
        worker.close()


def wait_until(condition: Any, what: str, limit: float = 20.0) -> None:
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, f"not within {limit:g}s: {what}"
        time.sleep(0.01)


def test_one_processes_429_with_retry_after_cools_the_backend_in_all(workers, make_openai_server, redis_server) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    group = workers(3, redis_server.url, [("primary", primary, {"backoff_max": 5}), ("backup", backup, {})])
    primary.fail(Fault(status=429, retry_after="60"), times=1)
    assert [w.ask("chat") for w in group] == ["backup"] * 3
    assert len(primary.chat_requests()) == 1, "the other processes never tried it"
    primary.requests.clear()
    assert [w.ask("chat") for w in group] == ["backup"] * 3
    assert primary.chat_requests() == []


def test_an_rpm_limit_holds_across_four_processes_sending_as_fast_as_they_can(
    workers, make_openai_server, redis_server
) -> None:
    primary, backup = make_openai_server(), make_openai_server()
    group = workers(4, redis_server.url, [("primary", primary, {"rpm": 60}), ("backup", backup, {})])
    start_at = time.time() + 0.5
    for worker in group:
        worker.commands.put(("burst", start_at, 2.0, 4))
    results = [worker.answer("burst") for worker in group]
    assert [r["errors"] for r in results] == [[]] * 4
    served_by_primary = sum(r.get("primary", 0) for r in results)
    served_by_backup = sum(r.get("backup", 0) for r in results)
    assert len(primary.chat_requests()) == served_by_primary == 60, "every slot taken, none of them twice"
    assert len(backup.chat_requests()) == served_by_backup > 60, "the rest went to the next backend"
    assert sum(r.get("primary", 0) > 0 for r in results) >= 2, "the slots went to more than one process"


def test_redis_killed_mid_run_requests_keep_being_served_and_sharing_resumes_when_it_returns(
    workers, make_openai_server, make_redis_server
) -> None:
    redis = make_redis_server()
    primary, backup = make_openai_server(), make_openai_server()
    group = workers(2, redis.url, [("primary", primary, {"backoff_max": 5, "max_retries": 0}), ("backup", backup, {})])
    for worker in group:
        worker.commands.put(("loop",))
    wait_until(lambda: len(primary.chat_requests()) >= 20, "20 requests with Redis up")
    redis.kill()
    served_before = len(primary.chat_requests())
    wait_until(lambda: len(primary.chat_requests()) >= served_before + 50, "50 more requests with Redis gone")
    redis.start()  # the same port, empty
    wait_until(lambda: all(any("resumed" in m for m in w.read_logs()) for w in group), "both processes reconnected")
    primary.fail(Fault(status=429, retry_after="60"), times=1)
    seen_before, backup_before = len(primary.chat_requests()), len(backup.chat_requests())
    wait_until(lambda: len(backup.chat_requests()) >= backup_before + 40, "40 requests after the 429")
    for worker in group:
        worker.stop.set()
    results = [worker.answer("loop") for worker in group]
    assert [r["errors"] for r in results] == [[], []], "no request failed, Redis or not"
    assert len(primary.chat_requests()) - seen_before <= 2, (
        "after the 429 one process saw, the other skipped the backend too (one request may have been on its way)"
    )
    for worker in group:
        lost = [m for m in worker.read_logs() if "unreachable" in m]
        assert len(lost) == 1, worker.logs
        assert f"127.0.0.1:{redis.port}" in lost[0]
