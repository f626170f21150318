"""The API: the resource's types (the single source of truth), its cross-field rules, the
names other code and users depend on (labels, annotations, condition types, reasons), and
what is generated from them: the CRD and the API reference.

`qwen_operator.api.X` is the type or constant X of `api.types`, so callers say `api.ModelSpec`."""

from qwen_operator.api.types import *  # noqa: F403 (the package is the types' public face)
from qwen_operator.api.types import __all__ as __all__
