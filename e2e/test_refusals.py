"""Resources the schema accepts and the cluster refuses (issue 13): each says why, and stays idle.

A missing Secret, a missing claim, a PriorityClass that does not exist, a ResourceQuota, a
LimitRange, the namespace's Pod Security level, a namespace being deleted. Each resource reads
`Stalled` or `Reconciling` with the reason and the apiserver's (or scheduler's, or kubelet's)
message; the operator's own children are all there or none is; the operator neither crashes
nor loops: once the status is said, it writes nothing more. Where only a retry can notice the
cure (a quota on a child the operator applies: no watch reports quotas), it backs off, and the
retries are in its metrics.

The StatefulSet controller says nothing in its status when admission refuses its pods: only a
FailedCreate Event. The operator watches those Events alone (a field selector) in its cache.
The kubelet's CreateContainerConfigError is reported as a kubelet would (kwok runs no kubelet).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.conftest import Cluster  # noqa: E402
from e2e.devcluster.kube import kubectl, wait_for  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    API_KEY,
    GROUP,
    NAME,
    PLURAL,
    RESTRICTED,
    VERSION,
    Operator,
    apply_yaml,
    audit_entries,
    audit_offset,
    condition,
    get_qtd,
    instance,
    sample,
    settle,
    wait_phase,
)

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e
QUIET_SECONDS = 5
MANUAL = {"name": "QWEN_E2E_MANUAL_KUBELET", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
CHILD_KINDS = ("serviceaccounts", "configmaps", "services", "statefulsets", "poddisruptionbudgets")
ALL_CHILDREN = dict.fromkeys(CHILD_KINDS, 1) | {"services": 2, "configmaps": 2}
"""A converged resource's children: two Services (the API, the headless one) and two ConfigMaps (the
launcher, the replicas' own settings)."""


@pytest.fixture
def namespaces(core_v1: client.CoreV1Api, custom: client.CustomObjectsApi) -> Iterator[Callable[[str], str]]:
    """Fresh namespaces enforcing Pod Security "restricted", removed (resources first) at the end."""
    made: list[str] = []

    def make(purpose: str) -> str:
        name = f"e2e-{purpose}-{uuid.uuid4().hex[:5]}"
        core_v1.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RESTRICTED))
        )
        made.append(name)
        return name

    yield make
    for name in made:
        with contextlib.suppress(Exception):
            custom.delete_collection_namespaced_custom_object(GROUP, VERSION, name, PLURAL)
        with contextlib.suppress(Exception):
            core_v1.delete_namespace(name, propagation_policy="Background")


def stalled_or_reconciling(
    custom: client.CustomObjectsApi, ns: str, type_: str, reason: str
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get_qtd(custom, ns, NAME)
        cond = condition(obj, type_)
        current = (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
        return obj if current and (cond.get("status"), cond.get("reason")) == ("True", reason) else None

    try:
        return wait_for(check, timeout=90, describe=f"{ns}: {type_}=True reason {reason}")
    except AssertionError as exc:
        status = (get_qtd(custom, ns, NAME).get("status") or {}).get("conditions")
        raise AssertionError(f"{exc}\nconditions: {json.dumps(status, indent=1)[:3000]}") from None


def children(api_client: client.ApiClient, ns: str) -> dict[str, int]:
    """How many of each kind the operator applies exist for the resource."""
    out = {}
    for kind in CHILD_KINDS:
        listed = kubectl("get", kind, "-n", ns, "-l", instance(NAME), "-o", "name").stdout.split()
        out[kind] = len(listed)
    return out


def config_error_status(message: str) -> dict[str, Any]:
    """What a kubelet reports when it cannot make the init container's environment."""
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": message}}
    init = {"waiting": {"reason": "PodInitializing"}}
    return {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": at},
                       {"type": "Initialized", "status": "False", "lastTransitionTime": at}],
        "initContainerStatuses": [{"name": "fetch-weights", "image": "img", "imageID": "", "ready": False,
                                   "restartCount": 0, "state": waiting}],
        "containerStatuses": [{"name": "server", "image": "img", "imageID": "", "ready": False,
                               "restartCount": 0, "state": init}],
    }  # fmt: skip


def quiet(operator: Operator, cluster: Cluster, namespaces: list[str]) -> tuple[float, int]:
    """Reconciliations, and writes to these namespaces in the audit log, over QUIET_SECONDS."""
    offset = audit_offset(cluster)
    before = operator.counter("qwen_operator_reconciliations_total")
    settle(QUIET_SECONDS)
    passes = operator.counter("qwen_operator_reconciliations_total") - before
    writes = 0
    if cluster.audit_log is not None:
        writes = sum(
            1
            for e in audit_entries(cluster.audit_log, offset)
            if e.get("verb") not in ("get", "list", "watch")
            and (e.get("objectRef") or {}).get("namespace") in namespaces
        )
    return passes, writes


def quota(core_v1: client.CoreV1Api, ns: str, name: str, hard: dict[str, str]) -> None:
    """A ResourceQuota, once the quota controller counted it (admission refuses all before that)."""
    core_v1.create_namespaced_resource_quota(ns, {"metadata": {"name": name}, "spec": {"hard": hard}})

    def counted() -> bool:
        return bool(
            (core_v1.read_namespaced_resource_quota(name, ns).status or client.V1ResourceQuotaStatus()).hard
        )

    wait_for(counted, 30, f"the quota controller's first count of {name}")


def refused_dry_runs(cluster: Cluster, offset: int, ns: str, at_least: int) -> list[datetime] | None:
    """When the operator's refused dry runs in `ns` were received, once there are `at_least`."""
    assert cluster.audit_log is not None
    stamps = [
        datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00"))
        for e in audit_entries(cluster.audit_log, offset)
        if (e.get("objectRef") or {}).get("namespace") == ns
        and "dryRun=All" in e.get("requestURI", "")
        and (e.get("responseStatus") or {}).get("code") == 403
    ]
    return stamps if len(stamps) >= at_least else None


def test_refused_by_the_cluster_each_says_why_and_stays_idle(
    operator: Operator, cluster: Cluster, namespaces: Callable[[str], str], custom: client.CustomObjectsApi,
    core_v1: client.CoreV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    """Six causes at once, one namespace each."""
    ns = {key: namespaces(key) for key in ("secret", "claim", "priority", "quota", "limits", "podsecurity")}
    quota(core_v1, ns["quota"], "gpus", {"requests.nvidia.com/gpu": "2"})
    limits = {"limits": [{"type": "Container", "max": {"memory": "64Gi"}}]}
    core_v1.create_namespaced_limit_range(ns["limits"], {"metadata": {"name": "small"}, "spec": limits})
    hf = {"huggingFace": {"tokenSecretRef": {"name": "hf-token"}}}
    apply_yaml(ns["secret"], sample(model={"source": hf}, runtime={"env": [MANUAL]}))
    apply_yaml(ns["claim"], sample(model={"source": {"pvc": {"claimName": "missing-weights"}}}))
    apply_yaml(ns["priority"], sample(scheduling={"priorityClassName": "urgent-e2e"}))
    apply_yaml(ns["quota"], sample())
    apply_yaml(ns["limits"], sample())
    apply_yaml(ns["podsecurity"], sample(runtime={"addCapabilities": ["IPC_LOCK"]}))

    expected = {  # namespace key: (condition, reason, words of the message)
        "claim": ("Reconciling", "Scheduling", 'persistentvolumeclaim "missing-weights" not found'),
        "priority": ("Stalled", "PriorityClassNotFound", "no PriorityClass with name urgent-e2e"),
        "quota": ("Stalled", "QuotaExceeded", "exceeded quota: gpus"),
        "limits": ("Stalled", "LimitRangeViolated", "maximum memory usage per Container is 64Gi"),
        "podsecurity": ("Stalled", "PodSecurityViolation", 'violates PodSecurity "restricted:latest"'),
    }
    for key, (type_, reason, words) in expected.items():
        obj = stalled_or_reconciling(custom, ns[key], type_, reason)
        message = condition(obj, type_)["message"]
        assert words in message, (key, message)
        assert condition(obj, "Ready")["status"] == "False", key
        print(f"{key}: {type_}={reason}: {message[:160]}")
    wait_for(lambda: core_v1.list_namespaced_pod(ns["secret"]).items, 60, "the secret namespace's pod")
    pod = f"{NAME}-0"
    core_v1.patch_namespaced_pod_status(
        pod, ns["secret"], {"status": config_error_status('secret "hf-token" not found')}
    )
    obj = stalled_or_reconciling(custom, ns["secret"], "Stalled", "CreateContainerConfigError")
    assert 'secret "hf-token" not found' in condition(obj, "Stalled")["message"]
    phases = {key: get_qtd(custom, name, NAME)["status"]["phase"] for key, name in ns.items()}
    assert phases == {"secret": "Pending", "claim": "Progressing", "priority": "Failed", "quota": "Pending",
                      "limits": "Failed", "podsecurity": "Failed"}  # fmt: skip
    for key, name in ns.items():  # the operator's part is whole: every child, or (none here) none
        assert children(api_client, name) == ALL_CHILDREN, key

    passes, writes = quiet(operator, cluster, list(ns.values()))
    print(
        f"{QUIET_SECONDS} s after: {passes:.0f} reconciliations (FailedCreate events repeat), {writes} writes"
    )
    assert writes == 0 and operator.healthy()


def test_a_quota_on_a_child_creates_nothing_backs_off_and_recovers(
    operator: Operator, cluster: Cluster, namespaces: Callable[[str], str], custom: client.CustomObjectsApi,
    core_v1: client.CoreV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    """No LoadBalancer Services in this namespace: the operator's dry run of its Service is refused,
    so it creates nothing, and tries again, backing off (no watch tells it when quotas change)."""
    ns = namespaces("lbquota")
    quota(core_v1, ns, "no-lb", {"services.loadbalancers": "0"})
    retries = operator.counter("qwen_operator_retries_total", reason="WriteForbidden")
    offset = audit_offset(cluster)
    apply_yaml(ns, sample(service={"type": "LoadBalancer"}, auth=API_KEY))  # an exposed API needs a key
    obj = stalled_or_reconciling(custom, ns, "Stalled", "WriteForbidden")
    assert (
        "exceeded quota: no-lb" in condition(obj, "Stalled")["message"]
        and obj["status"]["phase"] == "Pending"
    )
    wait_for(
        lambda: operator.counter("qwen_operator_retries_total", reason="WriteForbidden") >= retries + 3,
        30, "three retries",
    )  # fmt: skip
    assert children(api_client, ns) == dict.fromkeys(CHILD_KINDS, 0)  # nothing half-created
    if cluster.audit_log is not None:
        stamps = wait_for(lambda: refused_dry_runs(cluster, offset, ns, at_least=4), 30, "4 refused dry runs")
        gaps = [round((b - a).total_seconds(), 1) for a, b in itertools.pairwise(stamps)]
        print(f"refused dry runs {len(stamps)}, seconds between them: {gaps}")
        # the first pass writes the status, whose event brings one more pass at once; then 2 s, 5 s
        assert len(stamps) == 4 and gaps[-2] >= 1.9 and gaps[-1] >= 4.9
    core_v1.delete_namespaced_resource_quota("no-lb", ns)
    wait_phase(custom, ns, NAME, "Ready", timeout=90)  # the next retry (10 s at most by now) creates it all
    assert children(api_client, ns) == ALL_CHILDREN
    assert operator.healthy()


def test_a_namespace_being_deleted_is_said_and_nothing_is_created_again(
    operator: Operator, cluster: Cluster, namespaces: Callable[[str], str], custom: client.CustomObjectsApi,
    core_v1: client.CoreV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    """A ValidatingAdmissionPolicy keeps the resource from being deleted, so it outlives its
    children while the namespace terminates: the operator would re-create them and cannot."""
    ns = namespaces("terminating")
    apply_yaml(ns, sample())
    wait_phase(custom, ns, NAME, "Ready")
    policy = f"hold-{ns}"
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": policy},
         "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [
             {"apiGroups": [GROUP], "apiVersions": ["*"], "resources": [PLURAL], "operations": ["DELETE"]}]},
             "validations": [{"expression": "false", "message": "held by the e2e test"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": policy},
         "spec": {"policyName": policy, "validationActions": ["Deny"], "matchResources": {
             "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}},
    ]}))  # fmt: skip
    try:
        wait_for(
            lambda: kubectl("delete", f"qtd/{NAME}", "-n", ns, "--dry-run=server", check=False).returncode,
            30, "the policy in force",
        )  # fmt: skip
        core_v1.delete_namespace(ns, propagation_policy="Background")
        obj = stalled_or_reconciling(custom, ns, "Reconciling", "NamespaceTerminating")
        assert "is being deleted" in condition(obj, "Reconciling")["message"]
        assert condition(obj, "Stalled")["status"] == "False"
        wait_for(
            lambda: sum(children(api_client, ns).values()) == 0, 60, "the children deleted with the namespace"
        )
        passes, writes = quiet(operator, cluster, [ns])
        print(f"terminating namespace, {QUIET_SECONDS} s: {passes:.0f} reconciliations, {writes} writes")
        assert sum(children(api_client, ns).values()) == 0 and writes == 0 and operator.healthy()
    finally:
        kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy, check=False)
    wait_for(
        lambda: not [n for n in core_v1.list_namespace().items if n.metadata.name == ns],
        90,
        "the namespace gone",
    )
    assert operator.healthy()
