"""The string patterns and field types of the API: read by three regex engines (Go's in the
apiserver, Rust's in pydantic, Python's), and the credential patterns a spec may not hold."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import PlainValidator, StringConstraints, WithJsonSchema

__all__ = [
    "ARGUMENT",
    "CREDENTIAL_NAMES",
    "CREDENTIAL_SUFFIX",
    "DNS_SUBDOMAIN",
    "ENV_NAME",
    "EXPANSION",
    "IMAGE",
    "K8S_GROUP_PATTERN",
    "K8S_KIND_PATTERN",
    "LABEL_KEY",
    "LABEL_VALUE",
    "MAX_INT_OR_STRING",
    "PERCENT_PATTERN",
    "PRINTABLE",
    "QUANTITY_PATTERN",
    "RELATIVE_PATH",
    "RESOURCE_NAME",
    "REVISION",
    "SECRET_KEY",
    "TOKEN_PATTERN",
    "DnsName",
    "IntOrPercent",
    "IntOrQuantity",
    "OptionalDnsName",
    "Quantity",
]

CREDENTIAL_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_TOKEN", "VLLM_API_KEY", "OPENAI_API_KEY")
CREDENTIAL_SUFFIX = (
    "(_TOKEN|_API_KEY|_APIKEY|_PASSWORD|_PASSWD|_SECRET|_SECRET_KEY|_ACCESS_KEY|_PRIVATE_KEY|_CREDENTIALS)$"
)
"""Environment variable names that hold credentials: never a literal value in the spec."""
TOKEN_PATTERN = "(hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9_-]{20,})"
"""A Hugging Face or OpenAI-style token, wherever it sits in an env value or an argument."""

EXPANSION = "$("
"""Kubernetes expands `$(VAR)` in a container's command, args and env values, before the process
starts: `servedName: "$(VLLM_API_KEY)"` would put the API key, read from its Secret into the
environment, back on the command line that anyone who can read the pod's processes sees. Refused
wherever a user's string reaches those places, even escaped as `$$(`: one rule, easy to check."""

QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]+))?$"
)
"""A non-negative Kubernetes resource quantity as the apiserver parses it. The pattern that
Kubernetes publishes also admits a fractional exponent (`1e.5`), which the parser refuses."""
PERCENT_PATTERN = r"^[0-9]+%$"
Quantity = Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN, max_length=64)]

# Patterns are read by three regex engines (Go's in the apiserver, Rust's in pydantic, Python's):
# ASCII classes spelled out, no \w \d \s (Unicode-aware in two of them, not in Go's).
_DNS_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = f"^{_DNS_LABEL}(\\.{_DNS_LABEL})*$"
"""Names of Secrets, claims, PriorityClasses and StorageClasses (at most 253 characters)."""
_LABEL_NAME = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = f"^({_DNS_LABEL}(\\.{_DNS_LABEL})*/)?{_LABEL_NAME}$"
LABEL_VALUE = "^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
RESOURCE_NAME = f"^{_DNS_LABEL}(\\.{_DNS_LABEL})*/{_LABEL_NAME}$"
"""An extended resource: a domain, a slash and a name (nvidia.com/gpu)."""
ENV_NAME = "^[-._A-Za-z][-._A-Za-z0-9]*$"
SECRET_KEY = "^[-._A-Za-z0-9]+$"
_SEGMENT = "[A-Za-z0-9_-][A-Za-z0-9._-]*"
REVISION = f"^{_SEGMENT}(/{_SEGMENT})*$"
"""A branch, tag or commit; no segment starts with a dot, so never `..`."""
RELATIVE_PATH = f"^/?({_SEGMENT}(/{_SEGMENT})*)?/?$"
IMAGE = "^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"
PRINTABLE = "^[!-~]*$"
"""Printable ASCII, no space: a name clients send and logs print."""
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
ARGUMENT = f"^([^\\x00-\\x1f\\x7f{_DASHES}][^\\x00-\\x1f\\x7f]*)?$"
"""No control character, and no dash look-alike first (a pasted `—max-num-seqs` is no flag to
vLLM: it would stop at "unrecognized arguments"). The dashes are the characters themselves."""
DnsName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
OptionalDnsName = Annotated[str, StringConstraints(max_length=253, pattern=f"^$|{DNS_SUBDOMAIN}")]


MAX_INT_OR_STRING = 64


def _int_or_string(value: Any, pattern: str, example: str) -> int | str:
    """A Kubernetes int-or-string: a non-negative integer, or a string matching `pattern`."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and len(value) <= MAX_INT_OR_STRING and re.fullmatch(pattern, value):
        return value
    raise ValueError(f"{value!r} must be a non-negative integer or a string like {example}")


def _int_or_string_schema(pattern: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"x-kubernetes-int-or-string": True, "pattern": pattern, "minimum": 0, "maxLength": MAX_INT_OR_STRING}
    )


IntOrQuantity = Annotated[
    int | str,
    PlainValidator(lambda v: _int_or_string(v, QUANTITY_PATTERN, "8, 500m or 96Gi")),
    _int_or_string_schema(QUANTITY_PATTERN),
]
IntOrPercent = Annotated[
    int | str,
    PlainValidator(lambda v: _int_or_string(v, PERCENT_PATTERN, "25%")),
    _int_or_string_schema(PERCENT_PATTERN),
]
K8S_GROUP_PATTERN = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
K8S_KIND_PATTERN = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
"""An API group and a kind, as the Gateway API validates them."""
