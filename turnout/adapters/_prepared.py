"""A chat request's bulky parts, put in wire form once per request rather than once per attempt.

The openai SDK transforms every ``create()`` call's parameters against their
TypedDicts before sending: for a 500-message conversation with tools that is
~85 ms of CPU, paid again on every retry and every failover. The router
transforms ``messages`` and ``tools`` once, with the SDK's own transform, and
marks the result :class:`Prepared`; an adapter that sees the mark sends it as
it is (the OpenAI-compatible adapter through ``extra_body``, which the SDK
merges into the body untransformed) instead of transforming it again.
"""

from __future__ import annotations

from typing import Any

from openai._utils import async_maybe_transform
from openai.types.chat import completion_create_params

__all__ = ["Prepared", "prepare", "split_prepared"]

BULKY = ("messages", "tools")
WORTH_IT = 16
"""Below this many messages and tools the transform costs ~0.2 ms, mostly fixed: leave it to the SDK."""


class Prepared(list):  # type: ignore[type-arg]
    """A list already in the SDK's wire form: send it as it is."""

    __slots__ = ()


async def prepare(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``messages`` and ``tools`` in wire form, marked, when they are long enough for
    the SDK's transform to cost something; the caller's dict is not changed."""
    bulky = {k: params[k] for k in BULKY if k in params and not isinstance(params[k], Prepared)}
    if not all(isinstance(v, (list, tuple)) for v in bulky.values()) or sum(map(len, bulky.values())) < WORTH_IT:
        return params
    wire = await async_maybe_transform(bulky, completion_create_params.CompletionCreateParamsNonStreaming)
    return {**params, **{k: Prepared(wire[k]) for k in bulky}}


def split_prepared(params: dict[str, Any]) -> dict[str, Any]:
    """For the SDK's ``create()``: prepared parts move into ``extra_body`` (merged untransformed, winning
    over the body), and ``messages`` stays as an empty list the SDK transforms in no time."""
    prepared = {k: params[k] for k in BULKY if isinstance(params.get(k), Prepared)}
    if not prepared:
        return params
    rest = {k: v for k, v in params.items() if k not in prepared}
    rest["extra_body"] = {**(rest.get("extra_body") or {}), **prepared}
    if "messages" in prepared:
        rest["messages"] = []
    return rest
