"""One fresh interpreter's start-up costs: import time, client construction, resident memory.

Run by the harness as ``python -m bench.probe raw|turnout``; prints one JSON
line. Each sample is a new process, so import caches, lazily built SDK state
and the shared SSL context are all paid again, as a user's program pays them.

raw      from openai import AsyncOpenAI; build one; RSS of 10 more
turnout  from turnout import AsyncOpenAI (turnout's names load on first use, so this
         is what a program pays); build a Router of 20 backends; RSS of a 10-backend router
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

BASE_URL = "http://127.0.0.1:9/v1"  # never contacted: construction only


def rss_mib() -> float:
    """Resident set size from /proc (Linux), in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _raw() -> dict[str, object]:
    start = time.perf_counter()
    from openai import AsyncOpenAI  # noqa: F401

    imported = time.perf_counter() - start
    import openai

    start = time.perf_counter()
    first = openai.AsyncOpenAI(api_key="sk-bench", base_url=BASE_URL, max_retries=0, timeout=60)
    construct = time.perf_counter() - start
    gc.collect()
    before = rss_mib()
    many = [openai.AsyncOpenAI(api_key="sk-bench", base_url=BASE_URL, max_retries=0, timeout=60) for _ in range(10)]
    gc.collect()
    extra = rss_mib() - before
    del first, many
    return {"import_s": imported, "construct_s": construct, "rss10_mib": extra}


def _turnout() -> dict[str, object]:
    start = time.perf_counter()
    from turnout import AsyncOpenAI  # noqa: F401

    imported = time.perf_counter() - start
    after_import = set(sys.modules)
    import turnout
    from turnout import Backend, OpenAICompatAdapter, Router

    def router(n: int) -> Router:
        return Router(
            [Backend(OpenAICompatAdapter(f"b{i}", base_url=BASE_URL, api_key="sk-bench", timeout=60)) for i in range(n)]
        )

    start = time.perf_counter()
    twenty = router(20)
    construct = time.perf_counter() - start
    gc.collect()
    before = rss_mib()
    ten = turnout.AsyncOpenAI(router=router(10))
    gc.collect()
    extra = rss_mib() - before
    heavy = sorted(m for m in ("ollama", "pydantic_settings", "dotenv") if m in sys.modules)
    heavy_on_import = sorted(m for m in ("ollama", "pydantic_settings", "dotenv") if m in after_import)
    del twenty, ten
    return {
        "import_s": imported,
        "construct_s": construct,
        "rss10_mib": extra,
        "optional_modules_loaded": heavy,
        "optional_modules_on_import": heavy_on_import,
    }


def main() -> None:
    kind = sys.argv[1]
    print(json.dumps(_raw() if kind == "raw" else _turnout()), flush=True)


if __name__ == "__main__":
    main()
