"""The server pods pass Pod Security "restricted" as rendered (the apiserver's admission proves it
in e2e/test_operator.py); opt-in capabilities leave it knowingly."""

from __future__ import annotations

import copy
from typing import Any

from qwen_operator.children import render, security
from testkit.wrappers import parsed


def _pod(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    sts = next(c for c in render.render(parsed(spec)) if c["kind"] == "StatefulSet")
    pod: dict[str, Any] = sts["spec"]["template"]["spec"]
    return pod


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The rules of the "restricted" profile (v1.36) that a pod like ours could break."""
    found = []
    ctx = pod.get("securityContext") or {}
    if (ctx.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        found.append("pod seccompProfile")
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{c['name']}: allowPrivilegeEscalation")
        if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
            found.append(f"{c['name']}: capabilities drop ALL")
        if set((sc.get("capabilities") or {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{c['name']}: capabilities add")
        if not (sc.get("runAsNonRoot") or ctx.get("runAsNonRoot")):
            found.append(f"{c['name']}: runAsNonRoot")
        handlers = [c.get(probe) or {} for probe in ("livenessProbe", "readinessProbe", "startupProbe")]
        handlers += [hook or {} for hook in (c.get("lifecycle") or {}).values()]
        if any((h.get(action) or {}).get("host") for h in handlers for action in ("httpGet", "tcpSocket")):
            found.append(f"{c['name']}: probe or lifecycle host")  # baseline since v1.34; exec is free
    if any("hostPath" in v for v in pod.get("volumes", [])):
        found.append("hostPath volume")
    return found


def test_every_container_is_restricted() -> None:
    pod = _pod()
    assert restricted_violations(pod) == []
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == 1000
    assert pod["securityContext"]["fsGroup"] == 1000  # the weights volume is the group's


def test_the_pipeline_groups_pods_are_restricted_with_their_hooks() -> None:
    """Both LeaderWorkerSet templates: the leader's preStop sleeps, the worker's runs
    `qwen_runtime wait-leader` (an exec hook: "restricted" limits no command, only a handler's
    `host`, which would reach another address than the pod's)."""
    pods = _pod_specs({"parallelism": {"pipeline": 2}})
    for where in ("leader", "worker"):
        assert restricted_violations(pods[where]) == [], where
    assert set(pods["leader"]["containers"][0]["lifecycle"]["preStop"]) == {"sleep"}
    assert set(pods["worker"]["containers"][0]["lifecycle"]["preStop"]) == {"exec"}
    elsewhere = copy.deepcopy(pods["worker"])
    elsewhere["containers"][0]["lifecycle"] = {"preStop": {"httpGet": {"host": "10.0.0.1", "port": 8000}}}
    assert restricted_violations(elsewhere) == ["server: probe or lifecycle host"]


def test_a_non_root_server_has_a_writable_home_and_caches() -> None:
    pod = _pod()
    server = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in server["env"]}
    for name, path in security.CACHES.items():
        assert env[name] == path and path.startswith(security.HOME), name
    assert {"name": "home", "emptyDir": {}} in pod["volumes"]
    assert {"name": "home", "mountPath": security.HOME} in server["volumeMounts"]
    (shm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"]["medium"] == "Memory"


def test_ipc_lock_is_opt_in_and_leaves_restricted() -> None:
    pod = _pod({"runtime": {"addCapabilities": ["IPC_LOCK"]}})
    assert pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["IPC_LOCK"]}
    assert restricted_violations(pod) == ["server: capabilities add"]
    assert "add" not in pod["initContainers"][0]["securityContext"]["capabilities"]


def _pod_specs(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every pod template the operator renders for `spec`, by where it sits."""
    out: dict[str, dict[str, Any]] = {}
    for child in render.render(parsed(spec)):
        if child["kind"] in ("StatefulSet", "Job"):
            out[child["kind"]] = child["spec"]["template"]["spec"]
        elif child["kind"] == "LeaderWorkerSet":
            group = child["spec"]["leaderWorkerTemplate"]
            out["leader"], out["worker"] = group["leaderTemplate"]["spec"], group["workerTemplate"]["spec"]
    return out


def test_no_pod_gets_a_service_account_token_or_the_namespaces_services() -> None:
    """Nothing in the server or the download talks to the apiserver: no token to steal from a
    compromised server (or from a model's remote code), and no `<SERVICE>_PORT` variables, which
    would list the namespace's Services and, for a Service named vllm, set vLLM's VLLM_PORT."""
    pods = {
        **_pod_specs({"model": {"cache": {"mode": "Shared"}}}),
        **_pod_specs({"parallelism": {"pipeline": 2}}),
    }
    assert set(pods) == {"StatefulSet", "Job", "leader", "worker"}
    for where, pod in pods.items():
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["enableServiceLinks"] is False, where
        assert pod["serviceAccountName"] == "q-server", where  # their own, never `default`


def test_the_pods_service_account_is_their_own_and_mounts_no_token() -> None:
    (account,) = [c for c in render.render(parsed({})) if c["kind"] == "ServiceAccount"]
    assert account["metadata"]["name"] == "q-server" and account["automountServiceAccountToken"] is False
    assert account["metadata"]["ownerReferences"][0]["kind"] == "QwenThinkingDeployment"
