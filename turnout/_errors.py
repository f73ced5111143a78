"""turnout's own exceptions.

Backends fail with the openai SDK's own exception classes, whatever protocol
they speak, so existing ``except openai.APIError`` code keeps working. turnout
adds only what the SDK has no word for:

    TurnoutError
    ├── ConfigError (also ValueError)        bad configuration, raised at construction
    ├── BrokenStreamError (also openai.APIConnectionError)
    │                                         a stream ended before it was complete
    └── AllBackendsFailedError               every candidate failed; each instance is
                                              also the openai class of the decisive failure
"""

from __future__ import annotations

import httpx2
import openai

__all__ = ["TurnoutError", "ConfigError", "BrokenStreamError"]


class TurnoutError(Exception):
    """Base of every exception turnout defines."""


class ConfigError(TurnoutError, ValueError):
    """The configuration cannot work: names the variable, the value (masked) and what is accepted."""


class BrokenStreamError(TurnoutError, openai.APIConnectionError):
    """A stream stopped before its end: the connection dropped or the server gave up.

    ``chunks`` counts the chunks delivered before the break; once any were
    delivered the router raises this instead of replaying on another backend.
    """

    def __init__(self, message: str, *, request: httpx2.Request, chunks: int = 0) -> None:
        super().__init__(message=message, request=request)
        self.chunks = chunks
