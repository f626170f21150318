"""Launcher that runs vLLM inside the runtime image (standard library only)."""

__version__ = "0.1.0"
