"""The ``compat`` group: real libraries that take an openai client, unmodified, handed turnout's clients.

Pinned in requirements/compat.txt and requirements/compat-no-deps.txt.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def need(module: str) -> ModuleType:
    """Import ``module`` or skip the test module, except that with CI=true a missing library fails
    collection: CI must never go green without the libraries these tests exist for."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = f"{module} cannot be imported ({exc}); install requirements/compat*.txt"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {missing}", pytrace=False)
    pytest.skip(missing, allow_module_level=True)
