"""The ``turnout`` command: what turnout made of the environment, and whether each backend answers.

    turnout config [--json]          resolved backends, every value beside its source
    turnout health [--json]          every backend probed at once; exit 0 if any is up
    turnout models [--json]          every backend's models, with MODELS aliases
    turnout chat [PROMPT] [-v]       a routed completion, streamed
    turnout serve [--port 8001]      the router as an OpenAI-compatible HTTP server (turnout[serve])

Exit status: 0 done, 1 backends failed, 2 bad configuration or usage, 130 Ctrl-C.

Only argparse is imported up front: the subcommands import turnout's
settings, adapters and the openai SDK when they run, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130

_EPILOG = """\
configuration comes from the environment and .env only (TURNOUT_BACKENDS,
TURNOUT_BACKEND__<NAME>__<FIELD>, provider keys such as GROQ_API_KEY);
`turnout config` shows what each value is and where it came from.
exit status: 0 ok, 1 backends failed, 2 bad configuration, 130 interrupted"""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; each subcommand names the function that runs it."""
    parser = argparse.ArgumentParser(
        prog="turnout",
        description="Many LLM backends behind one OpenAI-shaped client.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"turnout {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config = commands.add_parser("config", help="the resolved backends in priority order, with every value's source")
    config.add_argument("--json", action="store_true", help="machine-readable output")
    config.set_defaults(run="config:run")

    health = commands.add_parser("health", help="check every backend at once: up/down, latency, models")
    _probe_options(health)
    health.set_defaults(run="probe:health")

    models = commands.add_parser("models", help="every model each backend serves, with aliases from MODELS")
    _probe_options(models)
    models.set_defaults(run="probe:models")

    chat = commands.add_parser(
        "chat",
        help="send one prompt through the router",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Send one prompt through the router and print the answer (streamed).",
        epilog="without --model: the first alias in the first backend's MODELS; if that backend declares\n"
        "no MODELS, the first model listed by the highest-priority backend that answers /models.",
    )
    chat.add_argument("prompt", nargs="?", help="the prompt (default: read from stdin)")
    chat.add_argument("-m", "--model", help="model name or alias; <backend>/<model> pins one backend")
    chat.add_argument("-s", "--system", help="a system message sent before the prompt")
    chat.add_argument("--no-stream", dest="stream", action="store_false", help="wait for the whole answer")
    chat.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show each attempt, retry, wait, failover and who served (-vv: the router's log too)",
    )
    chat.set_defaults(run="chat:main")

    serve = commands.add_parser(
        "serve",
        help="the router behind an OpenAI-compatible HTTP server (needs turnout[serve])",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the OpenAI API under /v1 (chat/completions, completions, embeddings, models,\n"
        "audio, moderations, images) through the configured backends.",
        epilog="TURNOUT_SERVE_API_KEYS (comma list or @file) makes every request need\n"
        "`Authorization: Bearer <key>`; without keys only a loopback address is allowed.\n"
        "SIGTERM finishes the requests in flight (up to --grace seconds), then exits 0.",
    )
    serve.add_argument(
        "--host", default=None, help="address to listen on (default: TURNOUT_SERVE_HOST, else 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=_port, default=None, help="port (default: TURNOUT_SERVE_PORT, else 8001; 0: any free port)"
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="worker processes, each with its own connections and breakers (default: 1)",
    )
    serve.add_argument(
        "--grace",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, how long requests in flight may take to finish (default: 30)",
    )
    serve.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback address without TURNOUT_SERVE_API_KEYS"
    )
    serve.add_argument(
        "-v", "--verbose", action="count", default=0, help="also log the router's retries and failovers (single worker)"
    )
    serve.set_defaults(run="serve:main")
    return parser


def _probe_options(command: argparse.ArgumentParser) -> None:
    """What ``health`` and ``models`` both take: they ask every backend at once."""
    command.add_argument("--json", action="store_true", help="machine-readable output")
    command.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="give up on a backend after this long (default: 10)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; turn the errors users cause into a message and an exit status."""
    args = build_parser().parse_args(argv)
    try:
        from . import common

        with common.redacted_output():
            return _dispatch(args)
    except KeyboardInterrupt:
        sys.stderr.write("\n" if sys.stderr.isatty() else "turnout: interrupted\n")
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    from .._errors import AllBackendsFailedError, ConfigError
    from . import common

    common.show_log()
    try:
        return _command(args.run)(args)
    except ConfigError as err:
        hint = "" if args.command == "config" else "\n(run `turnout config` to see every value and its source)"
        common.error(f"configuration error: {err}{hint}")
        return EXIT_CONFIG
    except AllBackendsFailedError as err:
        common.backend_errors("every backend failed:", err.errors)
        return EXIT_FAILED
    except common.BackendsDown as err:
        common.backend_errors(str(err), err.errors)
        return EXIT_FAILED
    except common.APIError as err:  # a bad request, no backend for the model, a broken stream
        common.error(common.describe(err))
        return EXIT_FAILED
    except common.UsageError as err:
        common.error(str(err))
        return EXIT_CONFIG
    except BrokenPipeError:  # `turnout models | head`: the reader left, which is fine
        common.silence_stdout()
        return EXIT_OK


def _command(target: str) -> Callable[[argparse.Namespace], int]:
    """``"module:function"`` in turnout.cli, imported only when that subcommand runs."""
    import importlib

    module, _, function = target.partition(":")
    command: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(f"turnout.cli.{module}"), function)
    return command


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers (1 or more)")
    return int(text)


def _version() -> str:
    """From the installed distribution's metadata, so ``--version`` does not import the SDKs."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("turnout")
    except PackageNotFoundError:
        return "unknown"
