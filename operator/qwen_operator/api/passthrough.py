"""The Kubernetes types the spec passes into the pod template as they are: tolerations, affinity
and an env variable's source.

Typed field by field, not kept as free-form objects, so that every string, list and map in them
has a bound the apiserver enforces: a free-form object is bounded only by the request size, and
a LeaderWorkerSet carries the pod template twice, so a 1.4 MB resource rendered a 2.8 MB child
that etcd (1.5 MiB a request) can never store, and held megabytes of the operator's memory. The
bounds are generous for a serving pod and add up (tests/unit/test_bounds.py renders a resource at
every one of them) to children well under etcd's limit.

Mostly sizes are checked here, and the few rules that keep one object to one of its forms (a
value or a source; one source); what the values mean (a toleration's operator, an affinity's
weight) Kubernetes checks when the StatefulSet is applied, and the resource says so in its
Stalled condition, as before. The label selector, shared with spec.network's peers, also checks
its keys, values and operators."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from qwen_operator.api.defaults import MAX_LABEL_VALUE, MAX_QUALIFIED_NAME
from qwen_operator.api.patterns import LABEL_KEY, LABEL_VALUE, IntOrQuantity
from qwen_operator.api.rules import ApiObject, Rule

__all__ = [
    "MAX_EXPRESSIONS",
    "MAX_NAMES",
    "MAX_NODE_TERMS",
    "MAX_POD_TERMS",
    "MAX_VALUES",
    "Affinity",
    "EnvVarSource",
    "FileKeySelector",
    "KeySelector",
    "LabelSelector",
    "LabelSelectorRequirement",
    "NodeAffinity",
    "NodeFieldRequirement",
    "NodeSelector",
    "NodeSelectorRequirement",
    "NodeSelectorTerm",
    "ObjectFieldSelector",
    "PodAffinity",
    "PodAffinityTerm",
    "PreferredSchedulingTerm",
    "ResourceFieldSelector",
    "SelectorOperator",
    "Toleration",
    "WeightedPodAffinityTerm",
    "keys_within",
]

MAX_NODE_TERMS = 4
"""Node selector terms (ORed), and preferred node terms."""
MAX_POD_TERMS = 2
"""Pod affinity terms of each kind (required, preferred) of podAffinity and of podAntiAffinity:
spreading a resource's replicas, or keeping them near or away from another workload, takes one."""
MAX_EXPRESSIONS = 4
"""Requirements of a node selector term; labels, and requirements, of a label selector."""
MAX_VALUES = 8
"""Values of one requirement (zones, GPU products, node pools)."""
MAX_NAMES = 4
"""Namespaces, or label keys, one pod affinity term lists."""

_Key = Annotated[str, StringConstraints(max_length=MAX_QUALIFIED_NAME)]
"""A label key, a topology key, a resource name: a qualified name ([prefix/]name), at most 317."""
_Value = Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]
"""A label value (or a namespace's name): at most 63 characters."""
_LabelValue = Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE, pattern=LABEL_VALUE)]
"""A label value a selector matches: checked here too (the selectors of spec.network are
Kubernetes' objects the operator writes whole, and were typed so before affinity was)."""
_Name = Annotated[str, StringConstraints(max_length=253)]
"""An object's name (a Secret's, a ConfigMap's, a node's) or a key of one: at most 253."""
_Operator = Annotated[str, StringConstraints(max_length=32)]
"""An operator or an effect (In, Exists, NoSchedule, ...): checked by Kubernetes, bounded here."""


def keys_within(mapping: Mapping[str, object] | None) -> bool:
    """Every key of a map is at most a qualified name long (a map key has no maxLength in a CRD)."""
    return all(len(k) <= MAX_QUALIFIED_NAME for k in mapping or {})


# -- tolerations ------------------------------------------------------------------------------


class Toleration(ApiObject):
    """A Kubernetes Toleration of the server pods."""

    key: _Key | None = None
    """Taint key the toleration matches; empty with operator Exists matches every taint."""
    operator: _Operator | None = None
    """Exists or Equal (the default)."""
    value: _Value | None = None
    """Taint value the toleration matches (operator Equal)."""
    effect: _Operator | None = None
    """NoSchedule, PreferNoSchedule or NoExecute; empty matches every effect."""
    toleration_seconds: int | None = None
    """With NoExecute: how long the pod stays bound after the taint appears."""


# -- an env variable's source -----------------------------------------------------------------


class KeySelector(ApiObject):
    """A key of a Secret or a ConfigMap in the resource's namespace."""

    name: _Name | None = None
    """Name of the Secret or ConfigMap."""
    key: _Name | None = None
    """Key inside it."""
    optional: bool | None = None
    """Whether the pod starts without it."""


class ObjectFieldSelector(ApiObject):
    """A field of the pod (metadata.name, status.podIP, ...)."""

    api_version: Annotated[str, StringConstraints(max_length=64)] | None = None
    """Version of the schema the field path is written in (v1)."""
    field_path: Annotated[str, StringConstraints(max_length=256)] | None = None
    """Path of the field."""


class ResourceFieldSelector(ApiObject):
    """A resource request or limit of a container (limits.memory, ...)."""

    container_name: _Value | None = None
    """The container; the server's by default."""
    resource: _Key | None = None
    """The resource: limits.cpu, requests.memory, ..."""
    divisor: IntOrQuantity | None = None
    """Unit the value is expressed in (1 by default)."""


class FileKeySelector(ApiObject):
    """A key of an env file on one of the pod's volumes."""

    volume_name: _Value | None = None
    """The volume."""
    path: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """Path of the file inside the volume."""
    key: _Name | None = None
    """The variable in the file."""
    optional: bool | None = None
    """Whether the pod starts without it."""


_SOURCES = ("configMapKeyRef", "fieldRef", "fileKeyRef", "resourceFieldRef", "secretKeyRef")


class EnvVarSource(ApiObject):
    """Where an env variable's value comes from (Kubernetes EnvVarSource): one source."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=" + ".join(f"(has(self.{s}) ? 1 : 0)" for s in _SOURCES) + " == 1",
            message=f"runtime.env[].valueFrom must set exactly one of {', '.join(_SOURCES)}",
            check=lambda s: len(s.model_dump(exclude_none=True)) == 1,
        ),
    )

    config_map_key_ref: KeySelector | None = None
    """A key of a ConfigMap."""
    field_ref: ObjectFieldSelector | None = None
    """A field of the pod."""
    file_key_ref: FileKeySelector | None = None
    """A key of an env file on a volume."""
    resource_field_ref: ResourceFieldSelector | None = None
    """A resource of a container."""
    secret_key_ref: KeySelector | None = None
    """A key of a Secret: the way to give the server a credential."""


# -- affinity ---------------------------------------------------------------------------------


class NodeSelectorRequirement(ApiObject):
    """A requirement on a node's labels."""

    key: _Key | None = None
    """The label key."""
    operator: _Operator | None = None
    """In, NotIn, Exists, DoesNotExist, Gt or Lt."""
    values: Annotated[list[_Value], Field(max_length=MAX_VALUES)] | None = None
    """Label values (one integer for Gt and Lt, none for Exists and DoesNotExist)."""


class NodeFieldRequirement(ApiObject):
    """A requirement on a node's fields (Kubernetes allows metadata.name, one value)."""

    key: _Key | None = None
    """The field: metadata.name."""
    operator: _Operator | None = None
    """In or NotIn."""
    values: Annotated[list[_Name], Field(max_length=1)] | None = None
    """The node's name."""


class NodeSelectorTerm(ApiObject):
    """Requirements a node must all meet."""

    match_expressions: Annotated[list[NodeSelectorRequirement], Field(max_length=MAX_EXPRESSIONS)] | None = (
        None
    )
    """Requirements on the node's labels."""
    match_fields: Annotated[list[NodeFieldRequirement], Field(max_length=1)] | None = None
    """A requirement on the node's fields: its name (more nodes by name are more terms)."""


class NodeSelector(ApiObject):
    """Terms of which a node must meet one."""

    node_selector_terms: Annotated[list[NodeSelectorTerm], Field(max_length=MAX_NODE_TERMS)] | None = None
    """The terms, ORed."""


class PreferredSchedulingTerm(ApiObject):
    """A term nodes that meet it are preferred for, by its weight."""

    weight: int | None = None
    """1 to 100."""
    preference: NodeSelectorTerm | None = None
    """The term."""


class NodeAffinity(ApiObject):
    """Which nodes the pods may run on, and which they prefer."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    """Nodes the pods may run on."""
    preferred_during_scheduling_ignored_during_execution: (
        Annotated[list[PreferredSchedulingTerm], Field(max_length=MAX_NODE_TERMS)] | None
    ) = None
    """Nodes the pods prefer."""


SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]


class LabelSelectorRequirement(ApiObject):
    """One requirement of a label selector (Kubernetes LabelSelectorRequirement)."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUALIFIED_NAME, pattern=LABEL_KEY)]
    """The label key the requirement reads."""
    operator: SelectorOperator
    """How the key's value is matched against `values`."""
    values: Annotated[list[_LabelValue], Field(max_length=MAX_VALUES)] | None = None
    """The values of In and NotIn; none for Exists and DoesNotExist."""


def _label_keys(labels: dict[str, str] | None) -> bool:
    return keys_within(labels) and all(re.match(LABEL_KEY, k) for k in labels or {})


class LabelSelector(ApiObject):
    """A Kubernetes label selector of pods or namespaces (an affinity term's, a network peer's);
    empty selects everything in its scope. Used in several places, so each bound counts several
    times: 4 labels and 4 requirements."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                "!has(self.matchLabels) || self.matchLabels.all(k, "
                f"k.size() <= {MAX_QUALIFIED_NAME} && k.matches(r'{LABEL_KEY}'))"
            ),
            message=(
                "matchLabels keys must be label keys ([prefix/]name, name at most 63 characters, "
                f"at most {MAX_QUALIFIED_NAME} in all)"
            ),
            check=lambda s: _label_keys(s.match_labels),
            field_path=".matchLabels",
        ),
    )

    match_labels: Annotated[dict[str, _LabelValue], Field(max_length=MAX_EXPRESSIONS)] | None = None
    """Labels every selected object carries."""
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=MAX_EXPRESSIONS)] | None = (
        None
    )
    """Requirements every selected object meets."""


class PodAffinityTerm(ApiObject):
    """Pods (in some namespaces) that the pods run in the same topology domain as, or not."""

    label_selector: LabelSelector | None = None
    """The pods."""
    namespace_selector: LabelSelector | None = None
    """Namespaces the pods are looked for in, by label."""
    namespaces: Annotated[list[_Value], Field(max_length=MAX_NAMES)] | None = None
    """Namespaces the pods are looked for in, by name; none: the resource's."""
    topology_key: _Key | None = None
    """The node label whose value is the domain (kubernetes.io/hostname, a zone)."""
    match_label_keys: Annotated[list[_Key], Field(max_length=MAX_NAMES)] | None = None
    """Label keys whose values, taken from the pod, are added to the selector."""
    mismatch_label_keys: Annotated[list[_Key], Field(max_length=MAX_NAMES)] | None = None
    """Label keys whose values, taken from the pod, the selected pods must not have."""


class WeightedPodAffinityTerm(ApiObject):
    """A pod affinity term the scheduler prefers, by its weight."""

    weight: int | None = None
    """1 to 100."""
    pod_affinity_term: PodAffinityTerm | None = None
    """The term."""


class PodAffinity(ApiObject):
    """Pods to run near (podAffinity) or away from (podAntiAffinity)."""

    required_during_scheduling_ignored_during_execution: (
        Annotated[list[PodAffinityTerm], Field(max_length=MAX_POD_TERMS)] | None
    ) = None
    """Terms the pods must meet."""
    preferred_during_scheduling_ignored_during_execution: (
        Annotated[list[WeightedPodAffinityTerm], Field(max_length=MAX_POD_TERMS)] | None
    ) = None
    """Terms the pods prefer to meet."""


class Affinity(ApiObject):
    """A Kubernetes Affinity of the server pods."""

    node_affinity: NodeAffinity | None = None
    """Nodes the pods run on."""
    pod_affinity: PodAffinity | None = None
    """Pods the pods run near."""
    pod_anti_affinity: PodAffinity | None = None
    """Pods the pods run away from."""
