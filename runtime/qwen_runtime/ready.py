"""Readiness that means the model can serve: ``python3 -m qwen_runtime ready --model NAME``.

vLLM's ``/health`` answers 200 once the engine is up; the served model being listed by
``/v1/models`` says the OpenAI server will route a request to it. The kubelet runs this as an
exec probe (exit 0: ready), so no traffic arrives before the model can answer. The API key,
when there is one, comes from the container's own ``VLLM_API_KEY`` (vLLM guards ``/v1``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

API_KEY_VAR = "VLLM_API_KEY"


def _get(url: str, timeout: float, key: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def check(port: int, model: str, timeout: float, key: str | None) -> str | None:
    """None when the server is healthy and serves `model`, else why not."""
    base = f"http://127.0.0.1:{port}"
    try:
        status, _ = _get(f"{base}/health", timeout, None)
        if status != 200:
            return f"/health answered {status}"
        status, body = _get(f"{base}/v1/models", timeout, key)
    except OSError as error:
        return f"no answer: {error}"
    if status != 200:
        return f"/v1/models answered {status}"
    try:
        served = [str(m.get("id")) for m in json.loads(body).get("data") or []]
    except (ValueError, AttributeError):
        return "/v1/models answered no JSON list"
    return None if model in served else f"model {model!r} not served (served: {', '.join(served) or 'none'})"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m qwen_runtime ready", description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", required=True, help="the served model name (--served-model-name)")
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds per request")
    args = parser.parse_args(list(argv))
    problem = check(args.port, args.model, args.timeout, os.environ.get(API_KEY_VAR) or None)
    if problem is not None:
        sys.stderr.write(f"not ready: {problem}\n")
        return 1
    return 0
