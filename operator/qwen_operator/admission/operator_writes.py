"""The admission policy on the operator's own ServiceAccount: what it may write, whatever RBAC says.

Serving every namespace, the operator's ClusterRole lets it create StatefulSets, Jobs and
LeaderWorkerSets anywhere, which is creating pods anywhere, and patch Services and ConfigMaps
cluster-wide (kube-system's among them). RBAC cannot narrow that to the objects the operator
owns nor look inside a pod template, so this ValidatingAdmissionPolicy does, for requests whose
user is that ServiceAccount only:

- it writes (creates, updates, deletes) only objects labelled `app.kubernetes.io/managed-by:
  qwen-operator`, and updates only objects that already carried the label (no takeover);
- nothing in kube-system, kube-public or kube-node-lease;
- its pod templates (StatefulSet, Job, both LeaderWorkerSet templates) run as the resource's own
  ServiceAccount (`<instance>-server`, which the operator creates: never another's, never the
  namespace's `default`) without its token, with no hostPath volume, no host network, PID or
  IPC namespace, and no privileged container.

A compromised or confused operator (issue 22's confused deputy) is thereby held to what it
renders. The kinds it matches come from the registry, so a new child kind is covered at once.
"""

from __future__ import annotations

from typing import Any

from qwen_operator.api.vocabulary import INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from qwen_operator.children.registry import KINDS
from qwen_operator.children.render import service_account_name

NAME = "qwen-operator-writes"
"""The policy's and its binding's name in the kustomize base (the chart prefixes the release)."""
NAMESPACE = "qwen-operator-system"
SERVICE_ACCOUNT = "qwen-operator"
PROTECTED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
POD_TEMPLATES: dict[tuple[str, str], tuple[tuple[str, bool], ...]] = {
    ("apps", "statefulsets"): (("spec.template.spec", False),),
    ("batch", "jobs"): (("spec.template.spec", False),),
    ("leaderworkerset.x-k8s.io", "leaderworkersets"): (
        ("spec.leaderWorkerTemplate.workerTemplate.spec", False),
        ("spec.leaderWorkerTemplate.leaderTemplate.spec", True),
    ),
}
"""(group, resource) -> where its pod specs are, and whether the template may be absent (the
LeaderWorkerSet's leader template: tested with has() first)."""
OPERATIONS = ("CREATE", "UPDATE", "DELETE")


def username(namespace: str = NAMESPACE, service_account: str = SERVICE_ACCOUNT) -> str:
    """The user a ServiceAccount's token authenticates as."""
    return f"system:serviceaccount:{namespace}:{service_account}"


def match_condition(user: str) -> str:
    """The CEL that selects the operator's requests (the chart writes the same with its own user)."""
    return f"request.userInfo.username == '{user}'"


def _labelled(obj: str) -> str:
    return (
        f"has({obj}.metadata.labels) && '{MANAGED_BY_LABEL}' in {obj}.metadata.labels && "
        f"{obj}.metadata.labels['{MANAGED_BY_LABEL}'] == '{MANAGED_BY}'"
    )


def _pod_specs() -> str:
    """A CEL list of the pod specs of the object written (none for other kinds, or a delete)."""
    branches = []
    for (group, resource), paths in POD_TEMPLATES.items():
        parts = []
        for path, optional in paths:
            parent = path.rsplit(".", 1)[0]
            parts.append(f"(has(object.{parent}) ? [object.{path}] : [])" if optional else f"[object.{path}]")
        branches.append(
            f"request.resource.group == '{group}' && request.resource.resource == '{resource}' ? "
            + " + ".join(parts)
        )
    return "request.operation == 'DELETE' ? [] : " + " : ".join(branches) + " : []"


def _validation(expression: str, message: str) -> dict[str, str]:
    return {"expression": expression, "message": message}


def policy(name: str = NAME, user: str | None = None) -> dict[str, Any]:
    """The ValidatingAdmissionPolicy for the ServiceAccount `user` (default: the kustomize base's)."""
    user = user or username()
    groups: dict[str, list[str]] = {}
    for child in KINDS:
        groups.setdefault(child.group, []).append(child.plural)
    rules = [
        {"apiGroups": [group], "apiVersions": ["*"], "resources": plurals, "operations": list(OPERATIONS)}
        for group, plurals in groups.items()
    ]
    who = "the operator's ServiceAccount"
    labels = "variables.obj.metadata.labels"
    suffix = service_account_name("")
    own = f"('{INSTANCE_LABEL}' in {labels} ? {labels}['{INSTANCE_LABEL}'] : '') + '{suffix}'"
    label = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": rules},
            "matchConditions": [{"name": "operator-service-account", "expression": match_condition(user)}],
            "variables": [
                {"name": "obj", "expression": "request.operation == 'DELETE' ? oldObject : object"},
                {"name": "podSpecs", "expression": _pod_specs()},
            ],
            "validations": [
                _validation(
                    _labelled("variables.obj"),
                    f"{who} may write only objects labelled {label}",
                ),
                _validation(
                    f"request.operation != 'UPDATE' || ({_labelled('oldObject')})",
                    f"{who} may not take over an object it did not create (not labelled {label})",
                ),
                _validation(
                    f"!(request.namespace in {list(PROTECTED_NAMESPACES)})",
                    f"{who} may write nothing in {', '.join(PROTECTED_NAMESPACES)}",
                ),
                _validation(
                    "variables.podSpecs.all(p, has(p.serviceAccountName) && "
                    f"p.serviceAccountName == {own} && "
                    "(!has(p.serviceAccount) || p.serviceAccount == p.serviceAccountName) && "
                    "has(p.automountServiceAccountToken) && !p.automountServiceAccountToken)",
                    f"pod templates of {who} run as the resource's own ServiceAccount "
                    f"({service_account_name('<instance>')}) without its token: "
                    "automountServiceAccountToken false",
                ),
                _validation(
                    "variables.podSpecs.all(p, !has(p.volumes) || p.volumes.all(v, !has(v.hostPath)))",
                    f"pod templates of {who} may not mount a hostPath volume",
                ),
                _validation(
                    "variables.podSpecs.all(p, !(has(p.hostNetwork) && p.hostNetwork) && "
                    "!(has(p.hostPID) && p.hostPID) && !(has(p.hostIPC) && p.hostIPC))",
                    f"pod templates of {who} may not use the host's network, PID or IPC namespace",
                ),
                _validation(
                    "variables.podSpecs.all(p, (p.containers + (has(p.initContainers) ? p.initContainers : "
                    "[])).all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || "
                    "!c.securityContext.privileged))",
                    f"pod templates of {who} may not run a privileged container",
                ),
            ],
        },
    }


def binding(name: str = NAME, policy_name: str = NAME) -> dict[str, Any]:
    """Its binding: everywhere (the policy's match condition picks the user), refusing."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": policy_name, "validationActions": ["Deny"]},
    }
