"""Restarts until a replica fits: the operator's fallback against blind halving, side by side.

Each row is a GPU budget: the KV cache memory per GPU that vLLM finds after weights,
activations and CUDA graphs (TP 4, bf16 KV cache, 48,128 bytes per token per GPU). A start
with a context above what that holds fails; a failed start of this model costs a weight
load (minutes), so restarts are the cost to minimise, and the context given away the other.

Policies, with a floor of 32768; all but the first start at the requested 262144 tokens:
- preflight: the operator starting from its memory plan, here 0.5 GiB per GPU optimistic
  (the reserve for activations and CUDA graphs is an estimate), then vLLM's estimate;
- estimate: the operator as it runs (`cures.detect` + `cures.decide` on pod statuses),
  vLLM reporting KVCacheInsufficient with its estimate of the largest context that fits;
- ladder: the same operator when the KV-cache failure carries no figures at all (the last
  resort): 262144, 196608, ...;
- halving: blind halving, 262144, 131072, 65536, ...
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from qwen_operator import api
from qwen_operator.api.vocabulary import MAX_MODEL_LEN_FLAG, SERVER_CONTAINER, LauncherReason
from qwen_operator.memory import cures, planner
from qwen_operator.memory.planner import CONTEXT_STEP
from qwen_operator.reconcile import snapshot

NOW = datetime(2026, 1, 1, tzinfo=UTC)

GIB = 1024**3
REQUESTED, FLOOR = 262144, 32768
BUDGETS_GIB = [12.0, 11.5, 11.0, 10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.5, 1.0]
PER_TOKEN = planner.KNOWN[api.DEFAULT_MODEL].kv_bytes_per_token_per_gpu(4, 2)
BLOCK = 16
"""vLLM allocates the KV cache in blocks of 16 tokens."""


def capacity(budget_gib: float) -> int:
    """The largest context vLLM accepts with this much KV cache memory per GPU."""
    return int(budget_gib * GIB // PER_TOKEN) // BLOCK * BLOCK


def pod(uid: str, context: int, record: dict[str, Any]) -> snapshot.Pod:
    """Pod 0 as the watch shows it after its server container failed with the launcher's record."""
    terminated = {"exitCode": 1, "reason": "Error", "message": json.dumps(record)}
    command = ["python3", "-m", "qwen_runtime", "--", "vllm", "serve", "m", MAX_MODEL_LEN_FLAG, str(context)]
    return snapshot.pod_from({
        "metadata": {"name": "q-0", "uid": uid},
        "spec": {"containers": [{"name": SERVER_CONTAINER, "command": command}]},
        "status": {"containerStatuses": [{
            "name": SERVER_CONTAINER, "ready": False, "restartCount": 1,
            "lastState": {"terminated": terminated},
        }]},
    })  # fmt: skip


def operator_policy(
    with_estimate: bool, plan_error_gib: float | None = None
) -> Callable[[int], tuple[int, int | None]]:
    """Restarts and final context of the operator's own decision, driven through status.

    With `plan_error_gib`, preflight starts from a memory plan that is that much optimistic."""
    res = api.parse_resource({"metadata": {"name": "q", "namespace": "b"}, "spec": {}})

    def run(fits: int) -> tuple[int, int | None]:
        history: tuple[api.ContextStep, ...] = ()
        planned = None
        if plan_error_gib is not None:
            planned = capacity(fits * PER_TOKEN / GIB + plan_error_gib) // CONTEXT_STEP * CONTEXT_STEP
        for restarts in range(32):
            decision = cures.choose(res, history, lambda _: planned, [], NOW)
            context = decision.effective
            if context <= fits:
                return restarts, context
            record: dict[str, Any] = {"reason": LauncherReason.KV_CACHE_INSUFFICIENT, "exitCode": 1}
            if with_estimate:
                record = {"reason": LauncherReason.KV_CACHE_INSUFFICIENT, "exitCode": 1,
                          "maxModelLen": context, "estimatedMaxModelLen": fits}  # fmt: skip
            failures = cures.detect([pod(f"u{restarts}", context, record)])
            decision = cures.choose(res, decision.history, lambda _: planned, failures, NOW)
            if decision.reduced is None:  # at the floor: stalled, a person decides
                return restarts + 1, None
            history = decision.history
        raise AssertionError("no convergence")

    return run


def halving(fits: int) -> tuple[int, int | None]:
    context, restarts = REQUESTED, 0
    while context > fits:
        restarts += 1
        if context // 2 < FLOOR:
            return restarts, None
        context //= 2
    return restarts, context


def _cell(result: tuple[int, int | None], fits: int) -> str:
    restarts, final = result
    if final is None:
        return f"{restarts:>2} restarts, stalled".ljust(35)
    given_away = 100 * (min(fits, REQUESTED) - final) / min(fits, REQUESTED)
    return f"{restarts:>2} restarts, {final:>6} ({given_away:4.1f}% lost)".ljust(35)


def main() -> int:
    policies = {
        "preflight (plan 0.5 GiB optimistic)": operator_policy(True, plan_error_gib=0.5),
        "estimate": operator_policy(True),
        "ladder": operator_policy(False),
        "halving": halving,
    }
    print(f"TP 4, bf16 KV cache ({PER_TOKEN} B/token/GPU); request {REQUESTED}, floor {FLOOR}")
    print(f"{'KV GiB/GPU':>10} {'fits':>7} | " + " | ".join(f"{name:<35}" for name in policies))
    totals = dict.fromkeys(policies, 0)
    started = time.perf_counter()
    for budget in BUDGETS_GIB:
        fits = capacity(budget)
        cells = []
        for name, policy in policies.items():
            result = policy(fits)
            totals[name] += result[0]
            cells.append(_cell(result, fits))
        print(f"{budget:>10.1f} {fits:>7} | " + " | ".join(cells))
    elapsed = time.perf_counter() - started
    print("total restarts: " + ", ".join(f"{name} {count}" for name, count in totals.items()))
    print(f"(simulated through detect + decide: {elapsed * 1000:.1f} ms for the whole table)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
