"""The environment the launcher gives vLLM, defined here once for the image and the operator."""

from __future__ import annotations

from collections.abc import Mapping

ENGINE_READY_TIMEOUT_VAR = "VLLM_ENGINE_READY_TIMEOUT_S"
ENGINE_READY_TIMEOUT_S = 2400
"""How long vLLM waits for its engine core processes to start (``VLLM_ENGINE_READY_TIMEOUT_S``).

vLLM's 600 s default is too short to load 236 GB of FP8 weights from a network
volume. 2400 s stays shorter than the operator's startup probe window (270 x 10 s
= 2700 s), so vLLM gives up first, prints "Timed out waiting for engine core
processes to start", and the launcher can say why (``EngineStartTimeout``)
instead of the kubelet killing a silent container. The launcher sets it when the
environment does not (``child_environment``), so the stock and the baked image
behave the same; a value from the pod spec or the user wins.
"""


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus the launcher's defaults for vLLM; variables already set are kept."""
    env = dict(environ)
    env.setdefault(ENGINE_READY_TIMEOUT_VAR, str(ENGINE_READY_TIMEOUT_S))
    return env
