"""Each replica's own settings: a ConfigMap the server pods mount, one entry per pod name.

Some out-of-memory cures concern one GPU, not the model (memory/cures.py): a CUDA out of memory
outside the KV cache on that node, or memory another process holds there. Their cure, a lower
`--gpu-memory-utilization`, goes to the replica that failed alone. Writing it into the pod
template would change every replica's template, and the rollout would then restart the healthy
replicas too (tens of minutes each); so it goes into `<resource>-replicas`, a ConfigMap of the
operator's own, mutable (unlike the launcher's), mounted as an optional volume at `MOUNT`. The
launcher reads its pod's entry when it starts (qwen_runtime.replica) and overrides the flag: the
template does not change, and the setting takes effect at the replica's next start (the operator
deletes the failed pod once the ConfigMap has it: reconcile/rollout.py `restarts`).

An entry is keyed by the pod's name (a StatefulSet's pod keeps its name across restarts) and
holds a JSON object, e.g. `{"gpuMemoryUtilization": 0.89}`. Rendered for a StatefulSet only: a
pipeline group (LeaderWorkerSet) is one argv for all its pods and is rolled by its own
controller, so its cures stay in the template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from qwen_runtime import replica

VOLUME = "replica-settings"
MOUNT = "/etc/qwen-runtime/replicas"
"""Where the pods mount the ConfigMap (a directory, one file per pod name)."""
POD_NAME_VAR = replica.POD_NAME_VAR
SETTINGS_DIR_VAR = replica.SETTINGS_DIR_VAR


def configmap_name(resource_name: str) -> str:
    """`<resource>-replicas` (a resource name is at most 52 characters)."""
    return f"{resource_name}-replicas"


def entry(utilization: float) -> str:
    """One pod's entry, as the launcher parses it (qwen_runtime.replica.parse)."""
    return json.dumps({replica.UTILIZATION: utilization}, separators=(", ", ": "))


def data(utilizations: Mapping[str, float]) -> dict[str, str]:
    """The ConfigMap's data: one entry per pod with a setting of its own, by name."""
    return {pod: entry(value) for pod, value in sorted(utilizations.items())}


def env() -> list[dict[str, Any]]:
    """The server's environment for the launcher: its pod's name and where the entries are."""
    return [
        {"name": POD_NAME_VAR, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": SETTINGS_DIR_VAR, "value": MOUNT},
    ]
