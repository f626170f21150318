"""The API: the resource's types (the single source of truth), its cross-field rules, the
names other code and users depend on (vocabulary: labels, annotations, condition types,
reasons), and what is generated from them: the CRD and the API reference.

The types live by concern: `defaults` (the model card's deployment and the bounds), `patterns`
(string patterns, field types, credential patterns), `passthrough` (the Kubernetes types
the pod template takes as they are, bounded), `vllm_flags` (what the operator manages on
vLLM's command line), `spec`, `status` and `resource` (the whole object and how it is read).
`qwen_operator.api.X` is any of them, so callers say `api.ModelSpec`."""

from qwen_operator.api.defaults import *  # noqa: F403
from qwen_operator.api.defaults import __all__ as _defaults
from qwen_operator.api.passthrough import *  # noqa: F403
from qwen_operator.api.passthrough import __all__ as _passthrough
from qwen_operator.api.patterns import *  # noqa: F403
from qwen_operator.api.patterns import __all__ as _patterns
from qwen_operator.api.resource import *  # noqa: F403
from qwen_operator.api.resource import __all__ as _resource
from qwen_operator.api.spec import *  # noqa: F403
from qwen_operator.api.spec import __all__ as _spec
from qwen_operator.api.status import *  # noqa: F403
from qwen_operator.api.status import __all__ as _status
from qwen_operator.api.vllm_flags import *  # noqa: F403
from qwen_operator.api.vllm_flags import __all__ as _vllm_flags
from qwen_operator.api.vocabulary import (
    API_VERSION as API_VERSION,
)
from qwen_operator.api.vocabulary import (
    CATEGORIES as CATEGORIES,
)
from qwen_operator.api.vocabulary import (
    GROUP as GROUP,
)
from qwen_operator.api.vocabulary import (
    KIND as KIND,
)
from qwen_operator.api.vocabulary import (
    PLURAL as PLURAL,
)
from qwen_operator.api.vocabulary import (
    SHORT_NAMES as SHORT_NAMES,
)
from qwen_operator.api.vocabulary import (
    SINGULAR as SINGULAR,
)
from qwen_operator.api.vocabulary import (
    VERSION as VERSION,
)

__all__ = [
    *_defaults, *_patterns, *_passthrough, *_vllm_flags, *_spec, *_status, *_resource,
    "API_VERSION", "CATEGORIES", "GROUP", "KIND", "PLURAL", "SHORT_NAMES", "SINGULAR", "VERSION",
]  # fmt: skip
