"""A llama.cpp server that dies is named as dead, with how it died and its last log lines.

A llama.cpp build that does not suit the CPU dies of SIGSEGV on its first
prompt; without this, the demo and the tests only show connection errors.
These tests take the session ``llamacpp`` fixture only so they skip (or, with
CI=true, fail) exactly where the real server cannot run; each starts its own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.llamacpp import LlamaCppServer, LlamaCppServerDied

ROOT = Path(__file__).resolve().parents[2]


def test_a_server_whose_model_is_missing_is_dead_with_its_exit_status_and_log(
    tmp_path: Path, llamacpp: LlamaCppServer
) -> None:
    missing = tmp_path / "no-such-model.gguf"
    server = LlamaCppServer(missing, embeddings=False)
    with pytest.raises(LlamaCppServerDied) as died:
        server.start()
    message = str(died.value)
    assert re.match(
        r"the llama\.cpp server \(pid \d+\) died with exit code 1 before answering /v1/models; "
        r"its last log lines:\n",
        message,
    ), message
    assert f"Model path does not exist: {missing}" in message  # the server's own last words
    assert not server.running and server.pid is None


def test_a_server_that_crashes_after_answering_is_dead_with_the_signal_name(llamacpp: LlamaCppServer) -> None:
    server = LlamaCppServer(embeddings=False, n_ctx=256)
    with pytest.raises(LlamaCppServerDied) as on_exit:
        with server:
            pid = server.pid
            os.kill(pid, signal.SIGSEGV)  # what a build that does not suit the CPU does to it
            server.wait(30)
            death = server.death()
            assert death is not None and death.startswith(
                f"the llama.cpp server (pid {pid}) died with SIGSEGV after answering /v1/models; its last log lines:\n"
            )
            assert "Fatal Python error: Segmentation fault" in death
            with pytest.raises(LlamaCppServerDied) as asked_for_url:  # a test set up against it fails saying so
                server.base_url  # noqa: B018  (reading it is what raises)
            assert str(asked_for_url.value) == death
    assert str(on_exit.value) == death  # leaving the with block says so too, even if nobody asked
    assert not server.running and server.death() is None


def test_the_demo_exits_non_zero_saying_its_server_died(tmp_path: Path, llamacpp: LlamaCppServer) -> None:
    missing = tmp_path / "no-such-model.gguf"
    env = {**os.environ, "TURNOUT_DEMO_MODEL": str(missing)}
    demo = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "failover_demo.py")],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 1, demo
    assert re.search(
        r"the llama\.cpp server \(pid \d+\) died with exit code 1 before answering /v1/models; "
        r"its last log lines:\n",
        demo.stderr,
    ), demo.stderr
    assert f"Model path does not exist: {missing}" in demo.stderr
