"""Benchmarks run by ``python -m bench`` (``make bench``); each prints its own numbers."""
