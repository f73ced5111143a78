"""The openai SDK's own suite, plain and with turnout's clients swapped in (run by scripts/sdk-suite).

Each side runs on its own copy of the SDK's source, against the Steady mock
server the SDK's scripts/mock starts. The turnout side's copy differs in one
way: after every ``from openai import ... OpenAI/AsyncOpenAI`` in its tests, a
``from turnout import ...`` rebinds those names (nothing else is changed).
Every test that passes on the plain SDK and fails with turnout is put in one
of the categories below (documented in docs/sdk-compatibility.md), or in
"unexplained".
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

SWAPPED = ("OpenAI", "AsyncOpenAI")
SDK_MODULES = ("openai", "openai._client")

# (name, pattern searched in "<test id>\n<failure text>"): the first that matches names the failure.
# Each is a design difference, documented in docs/sdk-compatibility.md ("Conformance").
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("copy-other-backend", r"copy\(\) of a turnout client cannot change"),
    ("copy-to-another-host", r"to another host needs its own api_key"),
    ("deleted-stays-deleted", r"is deleted|was deleted"),
    ("placeholder-key", r"rnout-routed|api_key_provider|before_after_refresh|auth_headers"),
    (
        "sdk-internals",
        r"_build_request|_client\._client|_base_client|_platform|_idempotency_header|copy_signature"
        r"|_should_retry|http_client\._transport|_transport|httpx2_family|turnout\.client\._(Sync)?Handle"
        r"|KeyError: 'workload_identity'|rollout_examples|provider_survives_with_options",
    ),
    (
        "router-retries",
        r"test_retr|retries_taken|retry_count|_calculate_retry_timeout|x-stainless-retry-count"
        r"|retries_and_failure|resigns_retries|before_retry|retries_are_disabled|honors_retry|retries_transient"
        r"|retries_are_bounded|Token exchange failed with status",
    ),
    ("settings-check-first", r"ConfigError: keyword argument backend\.\w+\.base_url"),
    ("base-url-setter", r"assigned_through_setter|subclass_mutated_origin"),
    ("workload-identity-exchange", r"x509|workload"),
    ("aggregated-models", r"no backend lists model|'NoneType' object is not iterable|test_models\.|models\.list"),
    ("body-read-first", r"content_upload_with_iterator|body should not have been read|non-replayable|one_shot"),
    ("turnout-timeout", r"Timeout\(|timeout_option|native_timeouts|direct_(a)?sync_injection|timeout"),
    ("stream-first-event", r"ended the stream before its first (event|token)"),
    ("router-errors", r"all \d+ backend\(s\) failed"),
    ("not-routed", r"bypassed them \(websocket|websocket|realtime"),
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--steady", type=Path, required=True)
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    only = os.environ.get("SDK_SUITE_ONLY")
    if only == "report":
        return _report(args.home)
    port = _free_port()
    server = _start_steady(args.steady, args.source, port, args.home / "steady.log")
    try:
        for side in ("baseline", "turnout"):
            if only in (None, "", side):
                _run(side, args.source, args.home, port, args.pytest_args)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return _report(args.home)


# -- running one side ---------------------------------------------------------------


def _run(side: str, source: Path, home: Path, port: int, pytest_args: list[str]) -> None:
    tree = home / side
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(source, tree, ignore=shutil.ignore_patterns(".git", "node_modules", "src", ".venv"))
    if side == "turnout":
        changed = sum(_swap(path) for path in (tree / "tests").rglob("*.py"))
        print(f"==> {changed} test modules now import OpenAI/AsyncOpenAI from turnout", file=sys.stderr)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TURNOUT_"))}
    env.update(
        TEST_API_BASE_URL=f"http://127.0.0.1:{port}",
        DEFER_PYDANTIC_BUILD="false",
        PYTHONDONTWRITEBYTECODE="1",
        TURNOUT_STRICT="1",
    )
    workers = os.environ.get("SDK_SUITE_WORKERS", "2")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"-n{workers}",
        "-o",
        "timeout=120",
        "--tb=line",
        f"--junitxml={home / f'{side}.xml'}",
        *pytest_args,
    ]
    print(f"==> {side}: {' '.join(command[2:])}", file=sys.stderr)
    started = time.monotonic()
    with open(home / f"{side}.log", "w") as log:
        subprocess.run(command, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    print(f"==> {side}: {time.monotonic() - started:.0f}s (log: {home / f'{side}.log'})", file=sys.stderr)


def _swap(path: Path) -> bool:
    """Rebind OpenAI/AsyncOpenAI to turnout's right after each import of them from the SDK."""
    text = path.read_text()
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    lines = text.splitlines(keepends=True)
    inserts: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in SDK_MODULES and node.level == 0:
            names = [(a.name, a.asname or a.name) for a in node.names if a.name in SWAPPED]
            if names:
                aliases = ", ".join(n if n == a else f"{n} as {a}" for n, a in names)
                inserts.append(
                    (node.end_lineno or node.lineno, " " * node.col_offset + f"from turnout import {aliases}\n")
                )
    for line, statement in sorted(inserts, reverse=True):
        lines.insert(line, statement)
    if inserts:
        path.write_text("".join(lines))
    return bool(inserts)


# -- the mock server ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_steady(steady: Path, source: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    spec = source / "api_reference" / "openapi.transformed.yml"
    flags = [f"--validator-{k}-format=brackets" for k in ("query-array", "form-array", "query-object", "form-object")]
    out = open(log, "wb")
    server = subprocess.Popen(
        ["node", str(steady), "--host", "127.0.0.1", "-p", str(port), *flags, str(spec)],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    for _ in range(600):
        if server.poll() is not None:
            raise SystemExit(f"the mock server exited: see {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_x-steady/health", timeout=1).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"the mock server did not start in 60s: see {log}")


# -- comparing -------------------------------------------------------------------------------


def _outcomes(xml: Path) -> dict[str, tuple[str, str]]:
    """test id -> (passed|failed|skipped, failure text)."""
    found: dict[str, tuple[str, str]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            found[key] = ("failed", f"{bad.get('message') or ''}\n{bad.text or ''}")
        elif case.find("skipped") is not None:
            found[key] = ("skipped", "")
        else:
            found[key] = ("passed", "")
    return found


def category(test: str, text: str) -> str:
    haystack = f"{test}\n{text}"
    return next((name for name, pattern in CATEGORIES if re.search(pattern, haystack)), "unexplained")


def _report(home: Path) -> int:
    missing = [side for side in ("baseline", "turnout") if not (home / f"{side}.xml").is_file()]
    if missing:
        print(f"no results yet for {' and '.join(missing)}: run without SDK_SUITE_ONLY first", file=sys.stderr)
        return 1
    base, ours = _outcomes(home / "baseline.xml"), _outcomes(home / "turnout.xml")
    passing = [t for t, (o, _) in base.items() if o == "passed"]
    failing = {t: ours.get(t, ("missing", "not run"))[1] for t in passing if ours.get(t, ("missing",))[0] != "passed"}
    kinds = Counter(category(t, text) for t, text in failing.items())
    print(f"plain SDK: {len(passing)} of {len(base)} tests pass")
    print(f"turnout:   {len(passing) - len(failing)} of those {len(passing)} pass; {len(failing)} fail")
    for name, count in kinds.most_common():
        print(f"  {count:6d}  {name}")
    with open(home / "failures.txt", "w") as out:
        for test, text in sorted(failing.items()):
            first = next((line for line in text.splitlines() if line.strip()), "")
            out.write(f"{category(test, text)}\t{test}\t{first[:300]}\n")
    print(f"each failure: {home / 'failures.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
