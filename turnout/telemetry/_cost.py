"""What an answer cost, in USD: a price the user set, else genai-prices' own calculation, else unknown.

A local server costs 0. A price nobody knows is ``None`` (never a made-up 0), said once in the log
for each backend and model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from ._facts import Facts

__all__ = ["Price", "Pricer", "PROVIDER_IDS", "parse_price"]

log = logging.getLogger("turnout")


@dataclass(frozen=True)
class Price:
    """USD per million tokens; cached input tokens at ``cached`` (default: the input price)."""

    input: float
    output: float
    cached: Optional[float] = None

    def of(self, facts: Facts) -> Optional[float]:
        if facts.input_tokens is None and facts.output_tokens is None:
            return None
        cached = facts.cached_tokens or 0
        fresh = max((facts.input_tokens or 0) - cached, 0)
        cached_rate = self.input if self.cached is None else self.cached
        return (fresh * self.input + cached * cached_rate + (facts.output_tokens or 0) * self.output) / 1e6


FREE = Price(0.0, 0.0)

PROVIDER_IDS: Mapping[str, str] = {
    # turnout's preset -> genai-prices' provider id, where that package knows the provider
    "openai": "openai",
    "openrouter": "openrouter",
    "groq": "groq",
    "xai": "x-ai",
    "cerebras": "cerebras",
    "together": "together",
    "fireworks": "fireworks",
    "deepseek": "deepseek",
    "mistral": "mistral",
    "perplexity": "perplexity",
    "gemini": "google",
    "huggingface": "huggingface_together",
}
"""Providers absent here (deepinfra, nvidia, sambanova, github) are priced only by a price the user sets."""

_FLAVORS = {"chat": "chat", "completions": "chat", "responses": "responses", "embeddings": "embeddings"}


def parse_price(text: str) -> dict[str, Price]:
    """``input,output[,cached]`` (USD per million tokens) for every model, or per model as
    ``model=input/output[/cached];model2=...`` (``*`` for the rest)."""
    prices: dict[str, Price] = {}
    text = text.strip()
    if "=" not in text:
        return {"*": _one(text, ",")}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        model, _, numbers = part.partition("=")
        prices[model.strip()] = _one(numbers, "/")
    return prices


def _one(text: str, sep: str) -> Price:
    numbers = [float(n) for n in text.split(sep)]
    if len(numbers) not in (2, 3) or any(n < 0 for n in numbers):
        raise ValueError("needs input and output prices (and optionally cached), each >= 0")
    return Price(*numbers)


class Pricer:
    """Each backend's prices: configured, free (local), or looked up in genai-prices by its provider."""

    def __init__(
        self,
        configured: Mapping[str, Mapping[str, Price]],
        local: Mapping[str, bool],
        providers: Mapping[str, Optional[str]],
    ) -> None:
        self._configured = configured
        self._local = local
        self._providers = providers
        self._told: set[tuple[str, str]] = set()

    def cost(self, backend: str, model: Optional[str], endpoint: str, facts: Facts) -> Optional[float]:
        """USD for this answer, or ``None`` when no price is known (or it said nothing of its usage)."""
        if facts.usage is None:
            return None
        own = self._configured.get(backend)
        if own:
            price = own.get(model or "") or own.get("*")
            if price is not None:
                return price.of(facts)
        if self._local.get(backend):
            return 0.0
        provider = self._providers.get(backend)
        cost = _listed(provider, model, endpoint, facts) if provider and model else None
        if cost is None and (backend, model or "") not in self._told:
            self._told.add((backend, model or ""))
            log.info(
                "no price known for model %s on backend %s: its cost is unknown (set "
                "TURNOUT_BACKEND__%s__PRICE to price it)",
                model,
                backend,
                backend.upper(),
            )
        return cost


def _listed(provider: str, model: str, endpoint: str, facts: Facts) -> Optional[float]:
    """genai-prices' price of the answer, from its own reading of the usage the answer sent."""
    try:
        from genai_prices import calc_price, extract_usage
    except ImportError:
        return None
    try:
        usage: Any = extract_usage(
            {"model": model, "usage": facts.usage}, provider_id="openai", api_flavor=_FLAVORS.get(endpoint, "chat")
        ).usage
        return float(calc_price(usage, model, provider_id=provider).total_price)
    except (LookupError, ValueError, TypeError, KeyError):
        return None
