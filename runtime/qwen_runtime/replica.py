"""A replica's own settings: what the operator set for this pod alone, read once at start.

Some out-of-memory cures concern one GPU, not the model: a peak outside the KV cache on that
node, or memory another process holds there. The operator then lowers the GPU memory
utilization of that replica alone, without touching the pod template (which would restart every
replica). It writes the setting into its ConfigMap ``<resource>-replicas``, one entry per pod
name, which the server pods mount (an optional volume) at the directory ``SETTINGS_DIR_VAR``
names; the pod learns its own name from the downward API (``POD_NAME_VAR``, else ``HOSTNAME``).

An entry is one JSON object, e.g. ``{"gpuMemoryUtilization": 0.89}``. The launcher reads its
pod's entry before it starts vLLM and overrides ``--gpu-memory-utilization`` in the command
line; a value that is not a number in (0, 1] is ignored, with a line on stderr that says so.
Either way it says on stderr what it used. No entry, or no directory: the command line as the
pod template has it.

Standard library only: it runs in the stock vLLM image.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .argv import GPU_MEMORY_UTILIZATION, flag_value

POD_NAME_VAR = "QWEN_POD_NAME"
"""The pod's name (the downward API's metadata.name)."""
SETTINGS_DIR_VAR = "QWEN_REPLICA_SETTINGS"
"""The directory of the mounted ConfigMap: one file per pod name."""
UTILIZATION = "gpuMemoryUtilization"
"""An entry's key for ``--gpu-memory-utilization``."""
MAX_ENTRY_BYTES = 4096
"""An entry is a small JSON object: anything larger is not one of the operator's."""


@dataclass(frozen=True)
class Settings:
    """What the launcher found for its pod, and what it says about it."""

    pod: str
    utilization: float | None = None
    """The replica's own --gpu-memory-utilization, when the entry has a valid one."""
    problem: str = ""
    """Why an entry was ignored, if it was."""


def pod_name(environ: Mapping[str, str]) -> str:
    return environ.get(POD_NAME_VAR) or environ.get("HOSTNAME") or ""


def valid_utilization(value: object) -> float | None:
    """A GPU memory utilization as vLLM takes it: a finite number in (0, 1]; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and 0 < number <= 1 else None


def parse(pod: str, text: str) -> Settings:
    """An entry's text, checked: a JSON object whose ``gpuMemoryUtilization`` is valid."""
    try:
        entry = json.loads(text)
    except ValueError as error:
        return Settings(pod, problem=f"not JSON ({error})")
    if not isinstance(entry, dict):
        return Settings(pod, problem="not a JSON object")
    if UTILIZATION not in entry:
        return Settings(pod)
    utilization = valid_utilization(entry[UTILIZATION])
    if utilization is None:
        return Settings(pod, problem=f"{UTILIZATION} {entry[UTILIZATION]!r} is not a number in (0, 1]")
    return Settings(pod, utilization)


def read(environ: Mapping[str, str]) -> Settings | None:
    """This pod's entry, or None: no directory named, no pod name, or no entry for the pod."""
    directory, pod = environ.get(SETTINGS_DIR_VAR, ""), pod_name(environ)
    if not directory or not pod or "/" in pod or pod.startswith("."):
        return None
    path = os.path.join(directory, pod)
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_ENTRY_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        return Settings(pod, problem=f"cannot read {path}: {error.strerror or error}")
    if len(raw) > MAX_ENTRY_BYTES:
        return Settings(pod, problem=f"{path} is over {MAX_ENTRY_BYTES} bytes")
    try:
        return parse(pod, raw.decode("utf-8"))
    except UnicodeDecodeError:
        return Settings(pod, problem=f"{path} is not UTF-8")


def override(command: Sequence[str], settings: Settings | None) -> list[str]:
    """The command line with the replica's own utilization: every ``--gpu-memory-utilization``
    (``--flag V``, ``--flag=V``, ``_`` for ``-``) takes its value. A command without the flag
    is left as it is (not a ``vllm serve`` the operator rendered)."""
    out = list(command)
    if settings is None or settings.utilization is None:
        return out
    value = f"{settings.utilization:g}"
    for index, arg in enumerate(out):
        name, equals, _ = arg.partition("=")
        if name.replace("_", "-") != GPU_MEMORY_UTILIZATION:
            continue
        if equals:
            out[index] = f"{name}={value}"
        elif index + 1 < len(out):
            out[index + 1] = value
    return out


def describe(command: Sequence[str], settings: Settings | None) -> str:
    """The line the launcher prints: what it used, and from where."""
    used = flag_value(command, GPU_MEMORY_UTILIZATION) or "vLLM's default"
    if settings is None:
        return f"{GPU_MEMORY_UTILIZATION} {used} (the pod template's; no setting for this replica)"
    if settings.problem:
        return (
            f"{GPU_MEMORY_UTILIZATION} {used} (the pod template's): the setting of pod {settings.pod} "
            f"was ignored: {settings.problem}"
        )
    if settings.utilization is None:
        return f"{GPU_MEMORY_UTILIZATION} {used} (the pod template's; pod {settings.pod}'s setting has none)"
    if flag_value(command, GPU_MEMORY_UTILIZATION) is None:
        return f"pod {settings.pod}'s own {GPU_MEMORY_UTILIZATION} ignored: the command has no such flag"
    return f"{GPU_MEMORY_UTILIZATION} {used} (pod {settings.pod}'s own setting)"


def apply(command: Sequence[str], environ: Mapping[str, str]) -> tuple[list[str], str]:
    """The command to run for this pod, and the line that says what it used ("" when the pod
    has no settings directory: not a server the operator rendered)."""
    if not environ.get(SETTINGS_DIR_VAR):
        return list(command), ""
    settings = read(environ)
    final = override(command, settings)
    return final, describe(final, settings)
