"""The synchronous client runs the router on the calling thread (``turnout._portal``), backends sending
synchronously: from many threads at once, with a backend failing, nothing is lost and nothing leaks; where the
router needs a loop of its own (hedging) or the thread runs one already, the background portal serves it."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

import turnout
import turnout._portal
from tests.support.loopback import Fault, OpenAIServer
from turnout.adapters import OpenAICompatAdapter
from turnout.router import Backend, Router

MSG = [{"role": "user", "content": "hi there"}]


def router_for(*servers: OpenAIServer, **options: object) -> Router:
    return Router(
        [Backend(OpenAICompatAdapter(f"b{i}", preset="vllm", base_url=s.base_url)) for i, s in enumerate(servers)],
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def portal(mocker: Any) -> Any:
    """Counts the calls served by the background portal loop."""
    return mocker.spy(turnout._portal, "run")


def open_loops() -> set[int]:
    gc.collect()
    return {id(o) for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed()}


def sockets() -> int:
    """This process's open sockets (the loopback servers' ends included)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:  # listdir's own, closed since
            pass
    return count


def settles(condition: Any, limit: float = 4.0) -> bool:
    """Whether ``condition`` holds within ``limit`` seconds: the loopback servers close their ends of
    a connection on their own threads, a moment after the client has closed its own."""
    end = time.monotonic() + limit
    while not condition() and time.monotonic() < end:
        time.sleep(0.02)
    return bool(condition())


def test_32_threads_share_one_client_with_a_failing_backend_and_nothing_is_lost_or_leaked(
    make_openai_server: Any, portal: Any
) -> None:
    sick, good = make_openai_server(), make_openai_server()
    sick.fail(Fault(status=503))  # every request: each thread's calls fail over until the breaker opens
    threads, loops, socks = set(threading.enumerate()), open_loops(), sockets()
    client = turnout.OpenAI(router=router_for(sick, good, timeout=30), max_retries=0)

    def ask(i: int) -> str:
        reply = client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": f"n{i}"}])
        assert turnout.served_by(reply) == "b1"
        return reply.choices[0].message.content or ""

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(ask, range(1000)))
    assert answers == [f"echo: n{i}" for i in range(1000)]
    stats = client.router.stats()
    assert stats["b1"]["successes"] == 1000, "the counters add up across threads"
    assert portal.call_count == 0, "served on the calling threads, not the background portal"
    del pool
    assert not open_loops() - loops, "each thread's loop is closed when its thread ends"
    client.close()  # on this thread's own loop, which stays for its next call
    assert asyncio.run(good.released()) and asyncio.run(sick.released()), "every backend's connections closed"
    assert settles(lambda: not set(threading.enumerate()) - threads), "no thread left behind"
    assert settles(lambda: sockets() <= socks + 3), "nothing left open but this thread's loop (its self-pipe)"


def test_a_sync_stream_is_the_same_events_as_the_async_clients(openai_server: OpenAIServer, portal: Any) -> None:
    client = turnout.OpenAI(router=router_for(openai_server))
    with client.chat.completions.create(model="test-model", messages=MSG, stream=True) as stream:
        sync_events = [chunk.model_dump(exclude={"id", "created"}) for chunk in stream]

    async def streamed() -> list[dict[str, object]]:
        async with turnout.AsyncOpenAI(router=router_for(openai_server)) as aclient:
            events = await aclient.chat.completions.create(model="test-model", messages=MSG, stream=True)
            return [chunk.model_dump(exclude={"id", "created"}) async for chunk in events]

    assert sync_events == asyncio.run(streamed()) and len(sync_events) > 2
    assert portal.call_count == 0
    client.close()


def test_a_sync_call_keeps_its_deadline_though_the_send_blocks(openai_server: OpenAIServer) -> None:
    """A blocking send cannot be cancelled by the loop: it is given what is left of the deadline instead."""
    client = turnout.OpenAI(router=router_for(openai_server), max_retries=0)
    openai_server.fail(Fault(hang=True), times=1)
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="test-model", messages=MSG, timeout=0.3)
    assert time.monotonic() - start < 10, "cut at the deadline, not after the backend's 60 s timeout"
    assert client.chat.completions.create(model="test-model", messages=MSG).choices[0].message.content
    client.close()


def test_a_hedged_router_runs_on_the_portal_and_still_answers(make_openai_server: Any, portal: Any) -> None:
    slow, fast = make_openai_server(), make_openai_server()
    slow.fail(Fault(delay=2.0), times=1)
    client = turnout.OpenAI(router=router_for(slow, fast, hedge_after=0.05))
    reply = client.chat.completions.create(model="test-model", messages=MSG)
    assert turnout.served_by(reply) == "b1", "the hedge raced the slow backend: attempts side by side need a loop"
    assert portal.call_count >= 1
    client.close()


def test_a_sync_call_from_code_running_an_event_loop_is_served_on_the_portal(
    openai_server: OpenAIServer, portal: Any
) -> None:
    client = turnout.OpenAI(router=router_for(openai_server))

    async def inside_a_loop() -> str:
        return client.chat.completions.create(model="test-model", messages=MSG).choices[0].message.content or ""

    assert asyncio.run(inside_a_loop()) == "echo: hi there"
    assert portal.call_count == 1
    client.close()


def test_a_retry_waits_on_the_calling_threads_loop_and_the_call_goes_on(
    openai_server: OpenAIServer, portal: Any
) -> None:
    """A call's first step runs without the loop; its retry's wait is the loop's, and the rest of it a task."""
    client = turnout.OpenAI(router=router_for(openai_server))
    openai_server.fail(Fault(status=503, retry_after="0"), times=2)
    reply = client.chat.completions.create(model="test-model", messages=MSG)  # a backend retries twice by default
    assert reply.choices[0].message.content == "echo: hi there"
    assert client.router.stats()["b0"]["attempts"] == 3 and client.router.stats()["b0"]["retries"] == 2
    assert portal.call_count == 0
    client.close()


def test_event_hooks_run_in_a_task_of_the_calling_threads_loop(openai_server: OpenAIServer, portal: Any) -> None:
    """A hook is the caller's code, which may want a task (``asyncio.timeout``): with hooks, the call is one."""
    seen: list[tuple[str, bool, str]] = []

    async def hook(event: turnout.RouterEvent) -> None:
        seen.append((event.kind, asyncio.current_task() is not None, threading.current_thread().name))

    client = turnout.OpenAI(router=router_for(openai_server, on_event=hook))
    client.chat.completions.create(model="test-model", messages=MSG)
    assert [kind for kind, _, _ in seen] == ["request", "attempt", "success", "done"]
    assert all(task and thread == threading.current_thread().name for _, task, thread in seen)
    assert portal.call_count == 0
    client.close()


def test_a_first_token_limit_is_kept_for_the_sync_client(make_openai_server: Any, portal: Any) -> None:
    """A blocking read cannot be cut at the first-token limit: such a router is served on the portal."""
    server = make_openai_server()
    server.fail(Fault(stall_after=0), times=1)
    router = Router(
        [Backend(OpenAICompatAdapter("b0", preset="vllm", base_url=server.base_url), first_token_timeout=0.3)]
    )
    client = turnout.OpenAI(router=router)
    start = time.monotonic()
    with client.chat.completions.create(model="test-model", messages=MSG, stream=True) as stream:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "echo: hi there"
    assert time.monotonic() - start < 10, "the stalled attempt was cut at the limit, not after the server's 30 s"
    assert router.stats()["b0"]["attempts"] == 2, "and retried"
    assert portal.call_count >= 1
    client.close()


def test_ctrl_c_during_a_retrys_wait_stops_the_call_and_the_client_goes_on(
    openai_server: OpenAIServer, portal: Any
) -> None:
    """The wait runs on the thread's loop after the call's first step: an interrupt there cancels the call (the
    router's bookkeeping runs), is raised to the caller at once, and the next call is served as usual."""
    import signal

    client = turnout.OpenAI(router=router_for(openai_server))
    openai_server.fail(Fault(status=503, retry_after="20"), times=1)
    main = threading.get_ident()
    threading.Timer(0.3, lambda: signal.pthread_kill(main, signal.SIGINT)).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        client.chat.completions.create(model="test-model", messages=MSG)
    assert time.monotonic() - start < 10, "interrupted in the 20 s wait, not after it"
    assert client.router.stats()["b0"]["in_flight"] == 0, "the cancelled call let go of its admission"
    assert client.chat.completions.create(model="test-model", messages=MSG).choices[0].message.content
    assert portal.call_count == 0
    client.close()
