"""The tenant policy: what a platform admin lets tenants ask for in a QwenThinkingDeployment.

Creating a resource is as strong as creating a pod in its namespace (docs/security.md): any
image, `--trust-remote-code`, an exposed Service, any priority class and toleration, any model
repository. This ValidatingAdmissionPolicy, with its parameters in a ConfigMap that the admin
owns, narrows that at `kubectl apply`, each refusal naming its rule. It is optional
(manifests/tenant-policy/, or the chart's `tenantPolicy.enabled`); without it nothing changes.

Why a ConfigMap and not a CRD of our own: the admin writes seven lists and a switch; a ConfigMap
needs no CRD to install, upgrade or version, and RBAC on the operator's namespace already says
who may change it. Lists are comma-separated strings (a ConfigMap holds strings only), split
and trimmed alike by the CEL and by Python.

Each rule is written twice, as CEL for the apiserver and as Python for `qwen-operator render
--policy FILE`, side by side, with one message: the e2e suite runs both over the same cases
(testkit/tenant_cases.py) and checks that the apiserver's refusal carries the CLI's message.
A parameter left out of the ConfigMap leaves its rule unenforced; one present but empty allows
nothing (but `allowTrustRemoteCode`, which allows only when "true").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from qwen_operator.api.defaults import DEFAULT_IMAGE, DEFAULT_MODEL
from qwen_operator.api.resource import QwenThinkingDeployment
from qwen_operator.api.vocabulary import GROUP, PLURAL

NAME = "qwen-operator-tenant-policy"
"""The policy's, its binding's and its ConfigMap's name in manifests/tenant-policy/."""
NAMESPACE = "qwen-operator-system"
"""Where the ConfigMap lives: the operator's namespace, which tenants cannot write."""

REGISTRIES = "allowedRegistries"
DIGESTS = "allowedDigests"
TRUST_REMOTE_CODE = "allowTrustRemoteCode"
SERVICE_TYPES = "allowedServiceTypes"
PRIORITY_CLASSES = "allowedPriorityClasses"
TOLERATIONS = "allowedTolerations"
MODELS = "allowedModels"
KEYS = (REGISTRIES, DIGESTS, TRUST_REMOTE_CODE, SERVICE_TYPES, PRIORITY_CLASSES, TOLERATIONS, MODELS)
"""Every parameter; any other key in the ConfigMap is refused (a typo must not unenforce a rule)."""

TRUST_REMOTE_CODE_PATTERN = "^--trust-rem(o(t(e(-(c(o(d(e)?)?)?)?)?)?)?)?([= ].*)?$"
"""`--trust-remote-code` as vLLM's parser takes it (`_` read as `-`): whole, with a value, or
abbreviated down to `--trust-rem` (shorter is ambiguous with `--trust-request-chat-template`,
and argparse refuses it). Valid in Python's re and in CEL's RE2 alike."""


TRUSTED = "--trust-remote-code, which runs code from the model repository in the server,"
"""What the trust-remote-code rule's message says is refused."""


def _message(field: str, what: str, keys: str) -> str:
    """The message of every refusal: the field, what was asked for, and the parameter that
    refused it."""
    return f"{field}: {what} is not allowed by the tenant policy ({keys})"


class PolicyError(ValueError):
    """The parameters file is no tenant policy ConfigMap."""


@dataclass(frozen=True)
class Params:
    """The tenant policy's parameters: the data of its ConfigMap, read as the CEL reads it."""

    data: Mapping[str, str]

    @classmethod
    def from_configmap(cls, doc: Any) -> Params:
        if not isinstance(doc, dict) or doc.get("kind") != "ConfigMap":
            raise PolicyError("expected the tenant policy's ConfigMap (kind: ConfigMap)")
        data = doc.get("data") or {}
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise PolicyError("data: every value is a string (a comma-separated list)")
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise PolicyError(f"data: unknown key {unknown[0]!r}; the keys are {', '.join(KEYS)}")
        return cls(dict(data))

    def enforced(self, key: str) -> bool:
        return key in self.data

    def listed(self, key: str) -> list[str]:
        """The comma-separated values of `key`, trimmed, empty ones dropped ([] when absent)."""
        return [v.strip() for v in self.data.get(key, "").split(",") if v.strip()]


# -- what a rule reads, in CEL (variables of the policy) and in Python -------------------------


def _cel_list(key: str) -> str:
    return (
        f"'{key}' in variables.data ? variables.data['{key}'].split(',').map(s, s.trim())"
        ".filter(s, s != '') : []"
    )


VARIABLES: tuple[tuple[str, str], ...] = (
    ("data", "has(params.data) ? params.data : {}"),
    ("spec", "has(object.spec) ? object.spec : {}"),
    *((key, _cel_list(key)) for key in KEYS if key != TRUST_REMOTE_CODE),
    (
        "image",
        "has(variables.spec.runtime) && has(variables.spec.runtime.image) && "
        f"variables.spec.runtime.image != '' ? variables.spec.runtime.image : '{DEFAULT_IMAGE}'",
    ),
    ("imageHost", "variables.image.split('/')[0]"),
    (
        "imageRef",
        "variables.image.contains('/') && (variables.imageHost.contains('.') || "
        "variables.imageHost.contains(':') || variables.imageHost == 'localhost') ? variables.image : "
        "'docker.io/' + (variables.image.contains('/') ? '' : 'library/') + variables.image",
    ),
    (
        "imageDigest",
        "variables.image.contains('@') ? "
        "variables.image.substring(variables.image.lastIndexOf('@') + 1) : ''",
    ),
    (
        "extraArgs",
        "has(variables.spec.runtime) && has(variables.spec.runtime.extraArgs) ? "
        "variables.spec.runtime.extraArgs : []",
    ),
    (
        "serviceType",
        "has(variables.spec.service) && has(variables.spec.service.type) ? variables.spec.service.type : "
        "'ClusterIP'",
    ),
    (
        "priorityClass",
        "has(variables.spec.scheduling) && has(variables.spec.scheduling.priorityClassName) ? "
        "variables.spec.scheduling.priorityClassName : ''",
    ),
    (
        "tolerations",
        "has(variables.spec.scheduling) && has(variables.spec.scheduling.tolerations) ? "
        "variables.spec.scheduling.tolerations : []",
    ),
    (
        "model",
        "has(variables.spec.model) && has(variables.spec.model.id) ? variables.spec.model.id : "
        f"'{DEFAULT_MODEL}'",
    ),
)
"""The policy's variables: the parameters as lists, and the fields the rules read with the
operator's defaults filled in (an empty image is the stock vLLM image, an absent model id the
default model), as the parsed resource has them in Python."""


def image_ref(image: str) -> str:
    """The image with Docker's implicit registry spelled out (`vllm/x` is `docker.io/vllm/x`,
    `ubuntu` is `docker.io/library/ubuntu`): what the registries are matched against."""
    host = image.split("/")[0]
    if "/" in image and ("." in host or ":" in host or host == "localhost"):
        return image
    return "docker.io/" + ("" if "/" in image else "library/") + image


def _under(ref: str, entry: str) -> bool:
    """The image is under a registry, path or repository entry: at a `/` boundary, or the
    repository itself with a tag or digest."""
    if entry.endswith("/"):
        return ref.startswith(entry)
    return ref == entry or any(ref.startswith(entry + sep) for sep in "/:@")


_CEL_UNDER = (
    "variables.{key}.exists(r, r.endsWith('/') ? variables.imageRef.startsWith(r) : "
    "(variables.imageRef == r || variables.imageRef.startsWith(r + '/') || "
    "variables.imageRef.startsWith(r + ':') || variables.imageRef.startsWith(r + '@')))"
)


def _image(res: QwenThinkingDeployment, params: Params) -> str | None:
    if not (params.enforced(REGISTRIES) or params.enforced(DIGESTS)):
        return None
    image = res.spec.runtime.image or DEFAULT_IMAGE
    ref = image_ref(image)
    digest = image[image.rindex("@") + 1 :] if "@" in image else ""
    if any(_under(ref, r) for r in params.listed(REGISTRIES)):
        return None
    if digest and digest in params.listed(DIGESTS):
        return None
    return _message("spec.runtime.image", f'image "{image}"', f"{REGISTRIES}, {DIGESTS}")


def _trust_remote_code(res: QwenThinkingDeployment, params: Params) -> str | None:
    if params.data.get(TRUST_REMOTE_CODE, "").strip().lower() == "true":
        return None
    if not any(re.match(TRUST_REMOTE_CODE_PATTERN, a.replace("_", "-")) for a in res.spec.runtime.extra_args):
        return None
    return _message("spec.runtime.extraArgs", TRUSTED, TRUST_REMOTE_CODE)


def _service_type(res: QwenThinkingDeployment, params: Params) -> str | None:
    kind = res.spec.service.type
    if not params.enforced(SERVICE_TYPES) or kind in params.listed(SERVICE_TYPES):
        return None
    return _message("spec.service.type", f'Service type "{kind}"', SERVICE_TYPES)


def _priority_class(res: QwenThinkingDeployment, params: Params) -> str | None:
    name = res.spec.scheduling.priority_class_name
    if not params.enforced(PRIORITY_CLASSES) or not name or name in params.listed(PRIORITY_CLASSES):
        return None
    return _message("spec.scheduling.priorityClassName", f'priority class "{name}"', PRIORITY_CLASSES)


def _tolerations(res: QwenThinkingDeployment, params: Params) -> str | None:
    if not params.enforced(TOLERATIONS):
        return None
    allowed = params.listed(TOLERATIONS)
    refused = [t.key or "" for t in res.spec.scheduling.tolerations if not (t.key and t.key in allowed)]
    if not refused:
        return None
    what = f'taint "{refused[0]}"' if refused[0] else "every taint"
    return _message("spec.scheduling.tolerations", f"a toleration of {what}", TOLERATIONS)


def _model(res: QwenThinkingDeployment, params: Params) -> str | None:
    model = res.spec.model.id
    if not params.enforced(MODELS):
        return None
    for entry in params.listed(MODELS):
        if model.startswith(entry[:-1]) if entry.endswith("*") else model == entry:
            return None
    return _message("spec.model.id", f'model "{model}"', MODELS)


@dataclass(frozen=True)
class TenantRule:
    """One rule, in CEL (true admits) and in Python (a message refuses), with one message."""

    key: str
    """The parameter it reads (the one its message names)."""
    cel: str
    message_cel: str
    """A CEL expression that builds the same message as `check`."""
    check: Callable[[QwenThinkingDeployment, Params], str | None]

    def as_validation(self) -> dict[str, str]:
        return {"expression": self.cel, "messageExpression": self.message_cel}


def _cel_message(field: str, what: str, keys: str) -> str:
    """`field: <what> is not allowed by the tenant policy (keys)`, with `what` a CEL expression."""
    return f"'{field}: ' + {what} + ' is not allowed by the tenant policy ({keys})'"


_FIRST_TOLERATION = (
    "variables.tolerations.filter(t, !(has(t.key) && t.key != '' && t.key in variables.allowedTolerations))"
    ".map(t, has(t.key) ? t.key : '')[0]"
)

RULES: tuple[TenantRule, ...] = (
    TenantRule(
        REGISTRIES,
        f"!('{REGISTRIES}' in variables.data) && !('{DIGESTS}' in variables.data) || "
        + _CEL_UNDER.format(key=REGISTRIES)
        + f" || (variables.imageDigest != '' && variables.imageDigest in variables.{DIGESTS})",
        _cel_message("spec.runtime.image", "'image \"' + variables.image + '\"'", f"{REGISTRIES}, {DIGESTS}"),
        _image,
    ),
    TenantRule(
        TRUST_REMOTE_CODE,
        f"('{TRUST_REMOTE_CODE}' in variables.data && "
        f"variables.data['{TRUST_REMOTE_CODE}'].trim().lowerAscii() == 'true') || "
        f"!variables.extraArgs.exists(a, a.replace('_', '-').matches('{TRUST_REMOTE_CODE_PATTERN}'))",
        _cel_message("spec.runtime.extraArgs", f"'{TRUSTED}'", TRUST_REMOTE_CODE),
        _trust_remote_code,
    ),
    TenantRule(
        SERVICE_TYPES,
        f"!('{SERVICE_TYPES}' in variables.data) || variables.serviceType in variables.{SERVICE_TYPES}",
        _cel_message("spec.service.type", "'Service type \"' + variables.serviceType + '\"'", SERVICE_TYPES),
        _service_type,
    ),
    TenantRule(
        PRIORITY_CLASSES,
        f"!('{PRIORITY_CLASSES}' in variables.data) || variables.priorityClass == '' || "
        f"variables.priorityClass in variables.{PRIORITY_CLASSES}",
        _cel_message(
            "spec.scheduling.priorityClassName",
            "'priority class \"' + variables.priorityClass + '\"'",
            PRIORITY_CLASSES,
        ),
        _priority_class,
    ),
    TenantRule(
        TOLERATIONS,
        f"!('{TOLERATIONS}' in variables.data) || variables.tolerations.all(t, has(t.key) && t.key != '' && "
        f"t.key in variables.{TOLERATIONS})",
        _cel_message(
            "spec.scheduling.tolerations",
            f"'a toleration of ' + ({_FIRST_TOLERATION} == '' ? 'every taint' : 'taint \"' + "
            f"{_FIRST_TOLERATION} + '\"')",
            TOLERATIONS,
        ),
        _tolerations,
    ),
    TenantRule(
        MODELS,
        f"!('{MODELS}' in variables.data) || variables.{MODELS}.exists(m, m.endsWith('*') ? "
        "variables.model.startsWith(m.substring(0, m.size() - 1)) : variables.model == m)",
        _cel_message("spec.model.id", "'model \"' + variables.model + '\"'", MODELS),
        _model,
    ),
)

_KNOWN_KEYS = {
    "expression": "variables.data.all(k, k in [" + ", ".join(f"'{k}'" for k in KEYS) + "])",
    "message": f"the tenant policy's ConfigMap has a key that is none of {', '.join(KEYS)}",
}
"""A misspelt parameter would leave its rule unenforced without a word: refuse instead."""


def violations(res: QwenThinkingDeployment, params: Params) -> list[str]:
    """The message of every rule the resource breaks, in the policy's order."""
    return [m for m in (rule.check(res, params) for rule in RULES) if m is not None]


def policy(name: str = NAME) -> dict[str, Any]:
    """The ValidatingAdmissionPolicy: QwenThinkingDeployments created or updated (not their
    status or scale), the parameters a ConfigMap."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": ["*"],
                        "resources": [PLURAL],
                        "operations": ["CREATE", "UPDATE"],
                    }
                ]
            },
            "variables": [{"name": n, "expression": e} for n, e in VARIABLES],
            "validations": [
                _KNOWN_KEYS,
                *(rule.as_validation() for rule in RULES),
            ],
        },
    }


def binding(
    name: str = NAME, policy_name: str = NAME, params_name: str = NAME, params_namespace: str = NAMESPACE
) -> dict[str, Any]:
    """Its binding: every namespace, the parameters from the operator's namespace; with the
    ConfigMap missing every create and update is refused (a policy that silently lapses would
    be no policy)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": policy_name,
            "validationActions": ["Deny"],
            "paramRef": {
                "name": params_name,
                "namespace": params_namespace,
                "parameterNotFoundAction": "Deny",
            },
        },
    }
