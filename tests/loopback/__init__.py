"""Loopback servers speaking real wire protocols, with switchable faults, for the tests and benchmarks."""

from .faults import Fault, RecordedRequest
from .openai_server import OpenAIServer

__all__ = ["Fault", "OpenAIServer", "RecordedRequest"]
