"""A backend as the router sees it: an adapter plus how to route to it and retry it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from ..adapters import Adapter
from ..knobs import default

__all__ = ["Backend"]


@dataclass
class Backend:
    """An adapter with its routing knobs; their defaults are the settings' (``turnout.knobs``), and the
    settings hand every per-backend setting that has a field here to it (``settings._build``).

    models        alias -> this backend's model name (``{"fast": "llama3.1:8b"}``);
                  ``None`` accepts every model name unchanged
    priority      lower is tried first; ``None`` takes the backend's position in the list
    weight        share of load among backends of equal priority
    max_retries   retries of one request on this backend (attempts = max_retries + 1)
    backoff_base  waits grow as backoff_base ** retry seconds (1, 2, 4, ...), full jitter
    backoff_max   cap on one wait, seconds; also the cap on an honoured Retry-After
    first_token_timeout  seconds an attempt at a stream may take to its first real token (content, a
                  tool call ...) before it counts as a timeout and is retried or failed over;
                  ``None``: only the attempt's own timeout applies
    allowed_fails consecutive failed requests before the backend cools down
    cooldown      seconds a cooled-down backend is skipped before one probe request
    rpm           requests per minute this backend may be sent (``None``: no limit), counted in
                  the router's state: across processes when that is shared (Redis)
    tpm           tokens per minute, estimated before each request and corrected from its answer
    """

    adapter: Adapter
    models: Mapping[str, str] | None = default("models")
    priority: int | None = default("priority")
    weight: float = default("weight")
    max_retries: int = default("max_retries")
    backoff_base: float = default("backoff_base")
    backoff_max: float = default("backoff_max")
    first_token_timeout: Optional[float] = default("first_token_timeout")
    allowed_fails: int = default("allowed_fails")
    cooldown: float = default("cooldown")
    rpm: Optional[int] = default("rpm")
    tpm: Optional[int] = default("tpm")

    @property
    def name(self) -> str:
        return self.adapter.name
