"""Benchmarks: turnout beside the raw openai SDK. Run with ``python -m bench`` (see BENCHMARKS.md)."""
