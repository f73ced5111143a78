"""``turnout config``: what turnout made of the environment, every value beside where it came from.

It reads the configuration leniently (``resolve(strict=False)``) so a broken
setup is still shown whole, with its problems, instead of stopping at the
first one; the exit status is 2 when there are any.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..adapters.auth import CREDENTIAL_SOURCES
from ..knobs import KNOBS, names
from .common import dump_json, load, ranked

_SECONDS = frozenset(name for name, knob in KNOBS.items() if knob.unit == "s")
_MAX_VALUE_WIDTH = 32


def run(args: argparse.Namespace) -> int:
    logging.getLogger("turnout.settings").setLevel(logging.ERROR)  # its notes are part of this report
    config = load(strict=False)
    order = {b.name: i for i, b in enumerate(ranked(config))}
    report = config.describe()
    report["backends"].sort(key=lambda b: order[b["name"]])
    report["ok"] = not config.problems
    if args.json:
        dump_json(report)
    else:
        print(render(report), end="")
    return 0 if report["ok"] else 2


def render(report: dict[str, Any]) -> str:
    """The human form of ``ResolvedConfig.describe()``: one block per backend, in routing order."""
    count = len(report["backends"])
    router = {k: report[k] for k in ("env_file", *names("router"))}
    blocks = [_cells(router)] + [_cells(b["fields"]) for b in report["backends"]]
    widths = (
        max(len(c[0]) for block in blocks for c in block),
        max(len(c[1]) if len(c[1]) <= _MAX_VALUE_WIDTH else 0 for block in blocks for c in block),
    )
    lines = [f"{count} backend{'s' if count != 1 else ''}, in the order requests try them", "", "router"]
    lines += _rows(blocks[0], widths, indent="   ")
    for rank, (backend, block) in enumerate(zip(report["backends"], blocks[1:]), 1):
        lines += ["", f"{rank}. {backend['name']}  (selected by {backend['selected_by']['text']})"]
        lines += _rows(block, widths, indent="   ")
        lines += [f"   problem: {p}" for p in backend["problems"]]
    backend_problems = {p for b in report["backends"] for p in b["problems"]}
    rest = [p for p in report["problems"] if p not in backend_problems]
    lines += (
        [""] * bool(rest or report["notes"]) + [f"problem: {p}" for p in rest] + [f"note: {n}" for n in report["notes"]]
    )
    if report["problems"]:
        lines += ["", f"{len(report['problems'])} problem(s): requests cannot be routed until they are fixed"]
    return "\n".join(lines) + "\n"


def _cells(fields: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    cells = [(name, *_cell(name, field)) for name, field in fields.items()]
    auth = fields.get("auth", {}).get("value")
    if auth in CREDENTIAL_SOURCES:  # the key is not what is sent: say what is, and where it comes from
        cells = [
            (n, f"none (AUTH={auth})", "")
            if n == "api_key"
            else (n, f"{v}: {CREDENTIAL_SOURCES[auth]}", s)
            if n == "auth"
            else (n, v, s)
            for n, v, s in cells
        ]
    return cells


def _rows(cells: list[tuple[str, str, str]], widths: tuple[int, int], indent: str) -> list[str]:
    """Aligned across every block, so the sources read down one column (an over-long value pushes its own)."""
    return [f"{indent}{name:<{widths[0]}}  {value:<{widths[1]}}  {source}".rstrip() for name, value, source in cells]


def _cell(name: str, field: dict[str, Any]) -> tuple[str, str]:
    """(value, source) as shown: a missing key reads ``missing (set GROQ_API_KEY)`` in the value column."""
    value, source = field["value"], field["source"]
    if source["kind"] == "missing":
        return source["text"], ""
    if name == "api_key" and value is None:
        return "none (not needed)", source["text"]
    return _text(value, seconds=name in _SECONDS), source["text"]


def _text(value: Any, *, seconds: bool = False) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}" + ("s" if seconds else "")
    if isinstance(value, int):
        return f"{value}" + ("s" if seconds else "")
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return str(value)
