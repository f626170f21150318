"""qwen-operator: serves Qwen3-235B-A22B-Thinking-2507-FP8 with vLLM on Kubernetes."""

__version__ = "0.1.0"
