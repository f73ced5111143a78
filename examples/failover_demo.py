"""turnout's main job, end to end: a routed chat completion that fails over to a real local model.

It starts llama.cpp's server (from PyPI) with a tiny real model on a free
loopback port, then runs ``turnout chat -v`` configured by environment
variables only: a primary backend on a closed port (down), the local model as
fallback. You see the answer, the failover that happened and which backend
served it. The server it started is stopped at the end; if it died instead
(a llama.cpp build that crashes on this CPU), the demo says how, with the
server's last log lines, and exits non-zero.

    ./scripts/demo                         # the default question
    ./scripts/demo "Name three colours."   # your own
    TURNOUT_DEMO_MODEL=path/to/model.gguf ./scripts/demo   # serve another GGUF file
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.llamacpp import MODEL_ALIAS, LlamaCppServer, LlamaCppUnavailable  # noqa: E402

QUESTION = "What is the capital of France? Answer in one short sentence."


def closed_port() -> int:
    """A loopback port nothing listens on: the primary that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def turnout_env(local_url: str) -> dict[str, str]:
    """The whole configuration: environment variables, nothing else."""
    return {
        "TURNOUT_BACKENDS": "primary,local",
        "TURNOUT_BACKEND__PRIMARY__PROVIDER": "openai_compat",
        "TURNOUT_BACKEND__PRIMARY__BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
        "TURNOUT_BACKEND__PRIMARY__MAX_RETRIES": "1",
        "TURNOUT_BACKEND__LOCAL__PROVIDER": "llamacpp",
        "TURNOUT_BACKEND__LOCAL__BASE_URL": local_url,
    }


def main(argv: list[str]) -> int:
    prompt = " ".join(argv) or QUESTION
    model = os.environ.get("TURNOUT_DEMO_MODEL") or None
    print(
        f"starting llama.cpp's server with {model or 'SmolLM2-135M-Instruct'} on a free loopback port ...", flush=True
    )
    try:
        with LlamaCppServer(model) as server:
            return chat(server, prompt)
    except LlamaCppUnavailable as err:  # it could not start, or died (leaving the with block raises then)
        print(f"\ndemo failed: {err}", file=sys.stderr)
        return 1


def chat(server: LlamaCppServer, prompt: str) -> int:
    """Run ``turnout chat`` against the running server; its exit status."""
    config = turnout_env(server.base_url)
    print(
        f"llama.cpp server (llama-cpp-python {server.version}) up at {server.base_url} "
        f"in {server.startup_seconds:.1f}s\n"
    )
    print("configuration (environment only):")
    for name, value in config.items():
        print(f"  {name}={value}")
    command = [sys.executable, "-m", "turnout", "chat", "-v", "--model", MODEL_ALIAS, prompt]
    print(f"\n$ turnout chat -v --model {MODEL_ALIAS} {prompt!r}", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
    return subprocess.call(command, env={**env, **config}, stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
