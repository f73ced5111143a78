"""``turnout serve``: the router behind an OpenAI-compatible HTTP server (the ``serve`` extra).

Checked before anything listens: the extra is installed (else exit 2 saying
what to install), the configuration resolves (else exit 2 naming the
variable), and the address is loopback unless keys are set or ``--insecure``
is given (else exit 2 saying why).
"""

from __future__ import annotations

import argparse
import importlib.util

from .common import UsageError, load

_NEEDS = ("starlette", "uvicorn", "multipart")  # python-multipart is imported as ``multipart``


def main(args: argparse.Namespace) -> int:
    missing = [name for name in _NEEDS if _absent(name)]
    if missing:
        raise UsageError(
            f"`turnout serve` needs the serve extra, which is not installed (no "
            f"{', '.join('python-multipart' if m == 'multipart' else m for m in missing)}): "
            f"pip install 'turnout[serve]'"
        )
    from ..serve._run import exposure_problem, serve
    from ..settings import TurnoutSettings

    load()  # the backends resolve, and their keys join the redaction of everything printed
    settings = TurnoutSettings()
    host = args.host or settings.serve_host
    port = settings.serve_port if args.port is None else args.port
    problem = exposure_problem(host, bool(settings.serve_api_keys), args.insecure)
    if problem:
        raise UsageError(problem)
    try:
        return serve(settings, host=host, port=port, workers=args.workers, grace=args.grace, verbose=args.verbose > 0)
    except OSError as err:
        raise UsageError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a module set to None in sys.modules, a broken install
        return True
