"""Ollama natively, through the official ``ollama`` SDK: requests in (``_requests``), answers out
(``_answers``), and the adapter that sends them and maps its errors (``_adapter``)."""

from ._adapter import DEFAULT_TIMEOUT, UNSUPPORTED, OllamaAdapter
from ._requests import MAX_IMAGE_BYTES

__all__ = ["DEFAULT_TIMEOUT", "MAX_IMAGE_BYTES", "OllamaAdapter", "UNSUPPORTED"]
