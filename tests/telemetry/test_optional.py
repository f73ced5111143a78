"""Without turnout[otel] and turnout[cost], telemetry imports nothing and the router has no subscriber."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.cli.test_cli import clean_env

SCRIPT = textwrap.dedent("""
    import sys
    for name in ("opentelemetry", "genai_prices", "prometheus_client"):
        sys.modules[name] = None  # as if not installed
    import turnout
    from turnout.telemetry import telemetry_of
    client = turnout.AsyncOpenAI(backends=["box"], backend={"box": {"provider": "vllm",
                                                                    "base_url": "http://127.0.0.1:9/v1"}})
    print(telemetry_of(client.router) is not None, "cost_usd" in client.router.stats()["box"])
    priced = turnout.AsyncOpenAI(backends=["box"], backend={"box": {"provider": "vllm", "price": "1,1",
                                                                    "base_url": "http://127.0.0.1:9/v1"}})
    print(telemetry_of(priced.router) is not None, priced.router.stats()["box"]["cost_usd"])
""")


def test_without_the_extras_nothing_is_subscribed_and_a_set_price_still_works() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "True", "0.0"]
