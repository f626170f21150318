"""Every kind of child the operator creates, in one table: what the rest derives from.

An entry says where the kind's API is (group, version, plural), which optional CRD it waits for,
whether it is deleted when no longer rendered (pruned), how it is replaced when a field fixed
at creation changes, whether the decision reads its status, whether it runs the servers, and
its templates with the condition under which each is rendered (and, for a template with
`each`, the entries it renders one document for). The watches and their indices
(process/handlers.py), the API paths (process/kube.py), pruning and replacement (reconcile/),
rendering (children/render.py) and the RBAC rules in manifests/ (checked by a test) follow it.
Adding a child kind is one entry here and its template.

`TEMPLATES` is the apply order: the launcher's ConfigMap and the StatefulSet's governing
Service exist before the pods that need them; with a shared cache the claim and the download
Job come right after the launcher (the Job's pod mounts it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from qwen_operator.api.vocabulary import (
    HPA_KIND,
    INFERENCE_POOL_CRD,
    INFERENCE_POOL_KIND,
    LWS_CRD,
    LWS_KIND,
    PROMETHEUS_RULE_CRD,
    PROMETHEUS_RULE_KIND,
    SCALED_OBJECT_CRD,
    SCALED_OBJECT_KIND,
    SERVICE_MONITOR_CRD,
)
from qwen_operator.children import network

if TYPE_CHECKING:
    from qwen_operator.api.resource import QwenThinkingDeployment

Served = frozenset[str]
"""The optional CRDs the apiserver serves now."""


class Propagation(StrEnum):
    """A deletion's propagation policy (DeleteOptions.propagationPolicy)."""

    ORPHAN = "Orphan"
    BACKGROUND = "Background"
    FOREGROUND = "Foreground"


@dataclass(frozen=True)
class Template:
    """One template of a kind, and when the resource renders it."""

    file: str
    when: Callable[[QwenThinkingDeployment, Served], bool] = lambda res, served: True
    each: Callable[[QwenThinkingDeployment], tuple[Mapping[str, Any], ...]] | None = None
    """One document per entry, the entry under `each` in the template's values (a NetworkPolicy
    per pipeline group, as many as the replicas); None: one document."""


@dataclass(frozen=True)
class ChildKind:
    kind: str
    group: str
    """"" for the core API."""
    version: str
    plural: str
    templates: tuple[Template, ...]
    crd: str | None = None
    """The CRD whose API must be served for the kind to be rendered (and watched); None: built in."""
    pruned: bool = False
    """Deleted when the resource no longer renders it (the spec dropped it, or its CRD went)."""
    replaced: Propagation | None = None
    """When the apiserver refuses a change to a field fixed at creation, the object is deleted with
    this propagation and created anew; None: never deleted by the operator for that."""
    workload: bool = False
    """Runs the server pods: the one child with the user's free-form values (tested first), and
    deleted in the foreground when parallelism.pipeline crosses 1."""
    status_kept: bool = False
    """The decision reads its status (a rollout, a Job's conditions, a claim's phase)."""
    fixed_fields: frozenset[str] = field(default_factory=frozenset)
    """Fields the apiserver will not change after creation: a refusal naming one is a replace."""
    pods_need: bool = False
    """The workload's pods cannot be created without it (admission refuses a pod whose
    ServiceAccount does not exist): a new one is applied before a new workload (plan.order)."""
    replaced_because: str = "a field fixed at creation changed"
    """What the Replacing event says."""
    mounted: bool = False
    """The pods mount it: a pruned one is deleted only once no pod of the resource, and no pod
    template of its children, names it (decide.in_use). The launcher's ConfigMap: its name
    changes with its sources, and a pod still running the old launcher keeps the old one."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path_prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def deleted(self) -> bool:
        """The operator ever deletes one (RBAC's `delete`)."""
        return self.pruned or self.replaced is not None or self.workload


def _multi_node(res: QwenThinkingDeployment) -> bool:
    return res.spec.parallelism.pipeline > 1


def _shared(res: QwenThinkingDeployment) -> bool:
    return res.spec.model.cache.mode == "Shared"


def _pooled(res: QwenThinkingDeployment, served: Served) -> bool:
    return res.spec.inference_pool is not None and INFERENCE_POOL_CRD in served


def _alerting(res: QwenThinkingDeployment, served: Served) -> bool:
    return res.spec.monitoring.prometheus_rule and PROMETHEUS_RULE_CRD in served


def _autoscaled_by_keda(res: QwenThinkingDeployment, served: Served) -> bool:
    return res.spec.autoscaling is not None and SCALED_OBJECT_CRD in served


def _autoscaled_by_hpa(res: QwenThinkingDeployment, served: Served) -> bool:
    return res.spec.autoscaling is not None and SCALED_OBJECT_CRD not in served


SERVICE_ACCOUNT = ChildKind(
    "ServiceAccount", "", "v1", "serviceaccounts", (Template("serviceaccount.yaml.j2"),), pods_need=True
)  # fmt: skip
CONFIG_MAP = ChildKind(
    "ConfigMap", "", "v1", "configmaps",
    (
        Template("configmap-launcher.yaml.j2"),
        Template("configmap-replicas.yaml.j2", lambda res, _: not _multi_node(res)),
    ),
    pruned=True, mounted=True, replaced=Propagation.BACKGROUND,
    fixed_fields=frozenset({"data", "binaryData", "immutable"}),
    replaced_because="its data are not the launcher's, and it is immutable",
)  # fmt: skip
"""Two ConfigMaps, both mounted by the server pods (one kind: one watch, one RBAC rule).

The launcher's sources: immutable and named by their digest (children/launcher.py). A new
launcher is a new ConfigMap, the old one pruned once unmounted; an object of the same name with
other data (deleted and created again by someone else) cannot be updated, so it is replaced.

Each replica's own settings, `<resource>-replicas` (children/replicas.py): mutable, updated in
place when a cure concerns one replica; rendered for a StatefulSet only (pruned once a
LeaderWorkerSet's pods no longer mount it)."""
PVC = ChildKind(
    "PersistentVolumeClaim", "", "v1", "persistentvolumeclaims",
    (Template("pvc-weights.yaml.j2", lambda res, _: _shared(res)),), status_kept=True,
)  # fmt: skip
JOB = ChildKind(
    "Job", "batch", "v1", "jobs", (Template("job-weights.yaml.j2", lambda res, _: _shared(res)),),
    replaced=Propagation.BACKGROUND, status_kept=True,
    fixed_fields=frozenset({"spec.template", "spec.selector"}),
)  # fmt: skip
SERVICE = ChildKind(
    "Service", "", "v1", "services",
    (Template("service-headless.yaml.j2", lambda res, _: not _multi_node(res)), Template("service.yaml.j2")),
)  # fmt: skip
STATEFUL_SET = ChildKind(
    "StatefulSet", "apps", "v1", "statefulsets",
    (Template("statefulset.yaml.j2", lambda res, _: not _multi_node(res)),),
    replaced=Propagation.ORPHAN, workload=True, status_kept=True, fixed_fields=frozenset({"spec"}),
)  # fmt: skip
LEADER_WORKER_SET = ChildKind(
    LWS_KIND, "leaderworkerset.x-k8s.io", "v1", "leaderworkersets",
    (Template("leaderworkerset.yaml.j2", lambda res, _: _multi_node(res)),),
    crd=LWS_CRD, replaced=Propagation.BACKGROUND, workload=True, status_kept=True,
    fixed_fields=frozenset({"spec.leaderWorkerTemplate.size"}),
)  # fmt: skip
PDB = ChildKind("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets", (Template("pdb.yaml.j2"),))
SERVICE_MONITOR = ChildKind(
    "ServiceMonitor", "monitoring.coreos.com", "v1", "servicemonitors",
    (Template("servicemonitor.yaml.j2", lambda _, served: SERVICE_MONITOR_CRD in served),),
    crd=SERVICE_MONITOR_CRD,
)  # fmt: skip
SCALED_OBJECT = ChildKind(
    SCALED_OBJECT_KIND, "keda.sh", "v1alpha1", "scaledobjects",
    (Template("scaledobject.yaml.j2", _autoscaled_by_keda),), crd=SCALED_OBJECT_CRD, pruned=True,
)  # fmt: skip
HPA = ChildKind(
    HPA_KIND, "autoscaling", "v2", "horizontalpodautoscalers",
    (Template("horizontalpodautoscaler.yaml.j2", _autoscaled_by_hpa),), pruned=True,
)  # fmt: skip
INFERENCE_POOL = ChildKind(
    INFERENCE_POOL_KIND, "inference.networking.k8s.io", "v1", "inferencepools",
    (Template("inferencepool.yaml.j2", _pooled),),
    crd=INFERENCE_POOL_CRD, pruned=True,
)  # fmt: skip
PROMETHEUS_RULE = ChildKind(
    PROMETHEUS_RULE_KIND, "monitoring.coreos.com", "v1", "prometheusrules",
    (Template("prometheusrule.yaml.j2", _alerting),),
    crd=PROMETHEUS_RULE_CRD, pruned=True,
)  # fmt: skip

NETWORK_POLICY = ChildKind(
    "NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies",
    (
        Template("networkpolicy.yaml.j2", lambda res, _: res.spec.network.policy),
        Template(
            "networkpolicy-group.yaml.j2", lambda res, _: res.spec.network.policy and _multi_node(res),
            each=network.groups,
        ),
    ),
    pruned=True,
)  # fmt: skip
"""Pruned: a group's policy goes when spec.replicas drops to its index or below (children/network.py)."""

KINDS: tuple[ChildKind, ...] = (
    SERVICE_ACCOUNT, CONFIG_MAP, PVC, JOB, SERVICE, STATEFUL_SET, LEADER_WORKER_SET, PDB, NETWORK_POLICY,
    SERVICE_MONITOR, SCALED_OBJECT, HPA, INFERENCE_POOL, PROMETHEUS_RULE,
)  # fmt: skip
"""Every child kind, in apply order."""

BY_KIND = {c.kind: c for c in KINDS}

TEMPLATES: tuple[tuple[ChildKind, Template], ...] = tuple((c, t) for c in KINDS for t in c.templates)
"""Every template in apply order, with its kind."""

WORKLOAD_KINDS = frozenset(c.kind for c in KINDS if c.workload)
PRUNED_KINDS = frozenset(c.kind for c in KINDS if c.pruned)
MOUNTED_KINDS = frozenset(c.kind for c in KINDS if c.mounted)
STATUS_KINDS = frozenset(c.kind for c in KINDS if c.status_kept)
OPTIONAL_CRDS: dict[str, str] = {c.crd: c.version for c in KINDS if c.crd is not None}
"""CRDs whose presence changes what the operator creates (watched, never required), with the
version the operator writes: the CRD counts as served only while that version is."""
OPTIONAL_KINDS = tuple(c for c in KINDS if c.crd is not None)


def templates_for(res: QwenThinkingDeployment, served: Served) -> tuple[Template, ...]:
    """The templates this resource renders, in apply order."""
    return tuple(t for _, t in TEMPLATES if t.when(res, served))


@dataclass(frozen=True)
class Access:
    """One RBAC rule the operator needs: API group, resource, verbs."""

    group: str
    resource: str
    verbs: frozenset[str]


APPLIED = frozenset({"get", "list", "watch", "create", "patch"})
"""Watched, looked up by name before the first apply (one not ours is left alone:
reconcile/plan.py), and applied server-side (a PATCH, authorized as create when the object is new)."""

OTHER_ACCESS: tuple[Access, ...] = (
    Access("serving.qwen-operator.io", "qwenthinkingdeployments", frozenset({"list", "watch"})),
    Access("serving.qwen-operator.io", "qwenthinkingdeployments/status", frozenset({"patch"})),
    Access("", "pods", frozenset({"list", "watch", "delete"})),
    Access("", "pods/log", frozenset({"get"})),
    Access("", "events", frozenset({"list", "watch", "create"})),
)
"""What the operator reads and writes in a served namespace besides its children: its resources
and their status, pods (watched, and server pods deleted one by one by the rollout:
reconcile/rollout.py), the server's log (its launcher's start report,
reconcile/starts.py), events."""

CLUSTER_ACCESS: tuple[Access, ...] = (
    Access("", "nodes", frozenset({"list", "watch"})),
    Access("apiextensions.k8s.io", "customresourcedefinitions", frozenset({"list", "watch"})),
    Access("authentication.k8s.io", "tokenreviews", frozenset({"create"})),
    Access("authorization.k8s.io", "subjectaccessreviews", frozenset({"create"})),
)
"""What the operator needs outside any namespace: GPU nodes (the memory plan), CRDs (which
optional APIs are served), and the reviews that decide who may read its /metrics
(process/access.py; cluster-scoped kinds). Kept apart so that serving named namespaces binds
every other rule only in those namespaces (a RoleBinding each) and this alone cluster-wide."""


def access() -> tuple[Access, ...]:
    """Every rule the operator needs in a namespace it serves (manifests/clusterrole.yaml): children
    are watched (list, watch) and applied server-side (create, patch); some are deleted
    (`ChildKind.deleted`). Bound cluster-wide when it serves every namespace, else in each one."""
    children = tuple(
        Access(c.group, c.plural, APPLIED | ({"delete"} if c.deleted else frozenset())) for c in KINDS
    )
    return (*children, *OTHER_ACCESS)


def cluster_access() -> tuple[Access, ...]:
    """The rules on cluster-scoped resources (manifests/clusterrole-cluster.yaml), always bound
    cluster-wide."""
    return CLUSTER_ACCESS
