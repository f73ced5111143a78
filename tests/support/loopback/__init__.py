"""Loopback servers speaking real wire protocols, with switchable faults, for the tests and benchmarks."""

from .faults import Fault, RecordedRequest
from .ollama_server import OllamaServer
from .openai_server import OpenAIServer

__all__ = ["Fault", "OllamaServer", "OpenAIServer", "RecordedRequest"]
