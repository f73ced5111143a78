"""The ``turnout`` command, run as users run it: a subprocess configured by environment variables.

Each test starts loopback servers, points ``TURNOUT_*`` variables at them,
and runs ``python -m turnout`` in an empty directory (no stray .env) with
an environment cleaned of real provider keys. Every run also checks that
the fake key it was given never appears in its output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.support.loopback import Fault, OllamaServer, OpenAIServer

SECRET = "sk-test-SECRET123456"
MASKED = "sk-…3456"

Run = Callable[..., subprocess.CompletedProcess]


def clean_env(**variables: str) -> dict[str, str]:
    """os.environ without provider keys or turnout settings, plus ``variables``."""
    from turnout.adapters import PRESETS

    drop = {v for p in PRESETS.values() for v in (*p.key_envs, p.url_env) if v}
    drop |= {"OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS", "OPENAI_ADMIN_KEY", "OLLAMA_API_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("TURNOUT_")}
    return {**env, "PYTHONIOENCODING": "utf-8", **variables}


def backend(name: str, base_url: str, provider: str = "vllm", **fields: str) -> dict[str, str]:
    """The variables of one backend: ``TURNOUT_BACKEND__<NAME>__<FIELD>``."""
    values = {"provider": provider, "base_url": base_url, **fields}
    return {f"TURNOUT_BACKEND__{name.upper()}__{k.upper()}": v for k, v in values.items()}


def backends(*sections: tuple[str, dict[str, str]], **extra: str) -> dict[str, str]:
    """TURNOUT_BACKENDS in the given order, each section's variables, and ``extra``."""
    env = {"TURNOUT_BACKENDS": ",".join(name for name, _ in sections)}
    for _, section in sections:
        env.update(section)
    return {**env, **extra}


@pytest.fixture
def turnout(tmp_path: Path) -> Run:
    """Run ``python -m turnout *args`` with ``env`` (cleaned), bounded, and assert no secret leaked."""

    def run(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "turnout", *args],
            env=clean_env(**env),
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
        )
        assert SECRET not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        return done

    return run


@pytest.fixture
def dead_url(free_port: int) -> str:
    """An address that refuses connections at once."""
    return f"http://127.0.0.1:{free_port}/v1"


# -- the command itself ------------------------------------------------------------------
def test_help_lists_every_subcommand_without_loading_the_sdk(turnout: Run) -> None:
    done = turnout("--help", env={})
    assert done.returncode == 0
    for command in ("config", "health", "models", "chat"):
        assert command in done.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from turnout.cli import build_parser; build_parser(); print('openai' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "False", "turnout --help must not import the openai SDK"


def test_no_subcommand_is_a_usage_error(turnout: Run) -> None:
    assert turnout(env={}).returncode == 2


# -- config ----------------------------------------------------------------------------------
def test_config_shows_backends_in_priority_order_with_sources_and_masked_keys(
    turnout: Run, openai_server: OpenAIServer
) -> None:
    env = backends(
        ("second", backend("second", openai_server.base_url, api_key=SECRET, models="fast=test-model")),
        ("first", backend("first", "http://127.0.0.1:9/v1", priority="-1")),
        TURNOUT_MAX_RETRIES="4",
    )
    done = turnout("config", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.index("1. first") < out.index("2. second")
    assert MASKED in out
    assert "environment TURNOUT_BACKEND__SECOND__BASE_URL" in out
    assert "environment TURNOUT_MAX_RETRIES" in out
    assert "fast=test-model" in out
    assert "preset vllm" in out  # capabilities come from the preset


def test_config_json_is_describe_in_priority_order(turnout: Run, openai_server: OpenAIServer) -> None:
    env = backends(
        ("local", backend("local", openai_server.base_url, api_key=SECRET)),
        ("backup", backend("backup", "http://127.0.0.1:9/v1", priority="7")),
    )
    done = turnout("config", "--json", env=env)
    assert done.returncode == 0
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert [b["name"] for b in report["backends"]] == ["local", "backup"]
    key = report["backends"][0]["fields"]["api_key"]
    assert key["value"] == MASKED
    assert key["source"] == {
        "kind": "environment",
        "variable": "TURNOUT_BACKEND__LOCAL__API_KEY",
        "file": None,
        "text": "environment TURNOUT_BACKEND__LOCAL__API_KEY",
    }
    assert report["backends"][1]["fields"]["priority"]["value"] == 7


def test_config_names_a_missing_key_and_exits_2(turnout: Run, openai_server: OpenAIServer) -> None:
    env = backends(("local", backend("local", openai_server.base_url)), ("groq", {}))
    done = turnout("config", env=env)
    assert done.returncode == 2
    assert "missing (set GROQ_API_KEY)" in done.stdout
    assert "problem:" in done.stdout
    report = json.loads(turnout("config", "--json", env=env).stdout)
    assert report["ok"] is False and report["problems"]


def test_config_shows_values_from_dotenv(turnout: Run, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"TURNOUT_BACKENDS=groq\nGROQ_API_KEY={SECRET}\n")
    done = turnout("config", env={})
    assert done.returncode == 0, done.stderr
    assert "GROQ_API_KEY in" in done.stdout and ".env" in done.stdout
    assert MASKED in done.stdout


def test_config_with_an_invalid_value_prints_the_error_and_exits_2(turnout: Run) -> None:
    done = turnout("config", env={"TURNOUT_BACKENDS": "vllm", "TURNOUT_MAX_RETRIES": "-1"})
    assert done.returncode == 2
    assert "TURNOUT_MAX_RETRIES" in done.stderr and done.stdout == ""


# -- health ----------------------------------------------------------------------------------
def test_health_all_up(turnout: Run, openai_server: OpenAIServer, ollama_server: OllamaServer) -> None:
    env = backends(
        ("local", backend("local", openai_server.base_url, api_key=SECRET)),
        ("box", backend("box", ollama_server.host, provider="ollama")),
    )
    done = turnout("health", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("local") and " up " in lines[0] and "1 model" in lines[0]
    assert lines[1].startswith("box") and " up " in lines[1]
    assert "2 of 2 backends up" in done.stdout
    # not a terminal: one progress line per backend on stderr, as each check finishes
    assert "turnout: local: up after" in done.stderr and "turnout: box: up after" in done.stderr


def test_health_some_down_still_exits_0_and_says_why(turnout: Run, openai_server: OpenAIServer, dead_url: str) -> None:
    env = backends(("local", backend("local", openai_server.base_url)), ("dead", backend("dead", dead_url)))
    done = turnout("health", env=env)
    assert done.returncode == 0
    assert "DOWN" in done.stdout and "dead: APIConnectionError" in done.stdout
    assert "1 of 2 backends up" in done.stdout
    report = json.loads(turnout("health", "--json", env=env).stdout)
    assert (report["up"], report["total"]) == (1, 2)
    local, dead = report["backends"]
    assert local["up"] is True and local["models"] == 1 and local["error"] is None
    assert dead["up"] is False and "APIConnectionError" in dead["error"]


def test_health_all_down_exits_1(turnout: Run, dead_url: str) -> None:
    done = turnout("health", "--json", env=backends(("dead", backend("dead", dead_url))))
    assert done.returncode == 1
    assert json.loads(done.stdout)["up"] == 0


def test_health_gives_up_on_a_hanging_backend_at_its_timeout(turnout: Run, make_openai_server: Callable) -> None:
    ok, stuck = make_openai_server(), make_openai_server()
    stuck.fail(Fault(hang=True))
    env = backends(("ok", backend("ok", ok.base_url)), ("stuck", backend("stuck", stuck.base_url)))
    start = time.monotonic()
    done = turnout("health", "--timeout", "3", env=env)  # room for a loaded machine's first request; the hang is 30 s
    assert time.monotonic() - start < 15
    assert done.returncode == 0
    assert "stuck: no answer within 3s" in done.stdout


def test_health_with_bad_configuration_exits_2_without_traceback(turnout: Run) -> None:
    done = turnout("health", env={"TURNOUT_BACKENDS": "nosuchprovider"})
    assert done.returncode == 2
    assert "nosuchprovider" in done.stderr and "configuration error" in done.stderr


def test_health_never_prints_a_key_a_server_echoes(turnout: Run, openai_server: OpenAIServer) -> None:
    openai_server.fail(Fault(status=401, message=f"Incorrect API key provided: {SECRET}"))
    env = backends(("local", backend("local", openai_server.base_url, api_key=SECRET)))
    done = turnout("health", env=env)  # the fixture asserts SECRET is absent
    assert done.returncode == 1
    assert "Incorrect API key provided: ****" in done.stdout


# -- models ----------------------------------------------------------------------------------
def test_models_lists_each_backend_with_aliases(turnout: Run, make_openai_server: Callable, dead_url: str) -> None:
    server = make_openai_server(models=["test-model", "other-model"])
    env = backends(
        ("local", backend("local", server.base_url, models="fast=test-model,ghost=missing-model")),
        ("dead", backend("dead", dead_url)),
    )
    done = turnout("models", env=env)
    assert done.returncode == 0, done.stderr
    assert "local (vllm): 2 models" in done.stdout
    assert "alias fast" in done.stdout
    assert "missing-model" in done.stdout and "in MODELS, not listed" in done.stdout
    assert "dead (vllm): unavailable: APIConnectionError" in done.stdout
    report = json.loads(turnout("models", "--json", env=env).stdout)
    local, dead = report["backends"]
    assert {"id": "test-model", "aliases": ["fast"], "listed": True} in local["models"]
    assert {"id": "missing-model", "aliases": ["ghost"], "listed": False} in local["models"]
    assert dead["error"].startswith("APIConnectionError")


def test_models_all_down_exits_1(turnout: Run, dead_url: str) -> None:
    done = turnout("models", env=backends(("dead", backend("dead", dead_url))))
    assert done.returncode == 1
    assert "dead: APIConnectionError" in done.stderr


# -- chat ------------------------------------------------------------------------------------
def test_chat_streams_the_answer_to_stdout(turnout: Run, openai_server: OpenAIServer) -> None:
    env = backends(("local", backend("local", openai_server.base_url, api_key=SECRET)))
    done = turnout("chat", "--model", "test-model", "--system", "be brief", "hello there", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "echo: hello there\n"
    sent = openai_server.chat_requests()[-1].json
    assert sent["stream"] is True
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]


def test_chat_no_stream(turnout: Run, openai_server: OpenAIServer) -> None:
    env = backends(("local", backend("local", openai_server.base_url)))
    done = turnout("chat", "--no-stream", "-m", "test-model", "hi", env=env)
    assert done.returncode == 0
    assert done.stdout == "echo: hi\n"
    assert not openai_server.chat_requests()[-1].json.get("stream")


def test_chat_reads_the_prompt_from_stdin(turnout: Run, openai_server: OpenAIServer) -> None:
    env = backends(("local", backend("local", openai_server.base_url)))
    done = turnout("chat", "-m", "test-model", env=env, stdin="from a pipe\n")
    assert done.returncode == 0
    assert done.stdout == "echo: from a pipe\n"
    assert openai_server.chat_requests()[-1].json["messages"] == [{"role": "user", "content": "from a pipe"}]
    assert turnout("chat", "-m", "test-model", env=env, stdin="  \n").returncode == 2


def test_chat_default_model_is_the_first_alias_of_the_first_backend(turnout: Run, openai_server: OpenAIServer) -> None:
    env = backends(("local", backend("local", openai_server.base_url, models="fast=test-model,slow=big")))
    done = turnout("chat", "-v", "hi", env=env)
    assert done.returncode == 0
    assert "model 'fast'" in done.stderr
    assert openai_server.chat_requests()[-1].json["model"] == "test-model"


def test_chat_default_model_is_else_the_first_listed_one(
    turnout: Run, make_openai_server: Callable, dead_url: str
) -> None:
    server = make_openai_server(models=["listed-first", "listed-second"])
    env = backends(
        ("dead", backend("dead", dead_url)), ("local", backend("local", server.base_url)), TURNOUT_MAX_RETRIES="0"
    )
    done = turnout("chat", "hi", env=env)
    assert done.returncode == 0, done.stderr
    assert server.chat_requests()[-1].json["model"] == "listed-first"


def test_chat_verbose_shows_attempts_retries_failover_and_who_served(
    turnout: Run, openai_server: OpenAIServer, dead_url: str
) -> None:
    env = backends(
        ("dead", backend("dead", dead_url)),
        ("live", backend("live", openai_server.base_url)),
        TURNOUT_MAX_RETRIES="1",
        TURNOUT_BACKOFF_MAX="0.05",
    )
    done = turnout("chat", "-v", "-m", "test-model", "hi", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "echo: hi\n"  # the narration stays on stderr
    log = done.stderr
    steps = [
        "dead: attempt 1",
        "dead: APIConnectionError",
        "retrying in",
        "dead: attempt 2",
        "dead: failed: APIConnectionError",
        "failing over from dead to live",
        "live: attempt 1",
        "served by live",
    ]
    positions = [log.index(step) for step in steps]
    assert positions == sorted(positions), log


def test_chat_when_every_backend_fails_names_each_and_exits_1(
    turnout: Run, make_openai_server: Callable, dead_url: str
) -> None:
    broken = make_openai_server()
    broken.fail(Fault(status=500, message="the GPU caught fire"))
    env = backends(
        ("dead", backend("dead", dead_url)), ("broken", backend("broken", broken.base_url)), TURNOUT_MAX_RETRIES="0"
    )
    done = turnout("chat", "-m", "test-model", "hi", env=env)
    assert done.returncode == 1
    assert "every backend failed" in done.stderr
    assert "dead: APIConnectionError" in done.stderr
    assert "broken: InternalServerError 500: the GPU caught fire" in done.stderr
    unlisted = turnout("chat", "hi", env=env)  # no --model: listing models fails on every backend too
    assert unlisted.returncode == 1 and "dead:" in unlisted.stderr and "broken:" in unlisted.stderr


def test_chat_with_bad_configuration_exits_2(turnout: Run) -> None:
    done = turnout("chat", "hi", env={"TURNOUT_BACKENDS": "groq"})
    assert done.returncode == 2
    assert "GROQ_API_KEY" in done.stderr


def test_ctrl_c_exits_130_without_traceback(tmp_path: Path, openai_server: OpenAIServer) -> None:
    openai_server.fail(Fault(hang=True))
    env = clean_env(**backends(("local", backend("local", openai_server.base_url, api_key=SECRET))))
    proc = subprocess.Popen(
        [sys.executable, "-m", "turnout", "chat", "-m", "test-model", "hi"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not openai_server.chat_requests() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert openai_server.chat_requests(), "the request never arrived"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in err and SECRET not in out + err


def test_a_ctrl_c_the_kernel_hands_to_another_thread_still_stops_the_command() -> None:
    """The cause of the lost Ctrl-C: a process-directed SIGINT may land on any thread that does not block it
    (the SDK's DNS look-ups run in a thread pool). Python then runs its handler only when the main thread next
    runs Python code, and a loop waiting on a hung backend does not until that wait ends."""
    import asyncio
    import threading

    from turnout.cli.common import run

    async def hung() -> None:
        def interrupt_from_another_thread() -> None:
            time.sleep(0.2)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)

        threading.Thread(target=interrupt_from_another_thread, daemon=True).start()
        await asyncio.sleep(60)  # a backend that answers nothing

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run(hung())
    assert time.monotonic() - start < 30, "the Ctrl-C waited for the hung request"
