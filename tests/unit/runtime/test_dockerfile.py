"""The runtime image pins the vLLM release the rest of the project (and the CLI contract) is built against."""

from __future__ import annotations

import re
from pathlib import Path

import qwen_runtime
from qwen_operator.api import BAKED_IMAGE, DEFAULT_IMAGE
from tests.tools.contract.vllm_env import VLLM_VERSION  # the parser the contract tests check against

DOCKERFILE = Path(__file__).parents[3] / "runtime" / "Dockerfile"


def text() -> str:
    return DOCKERFILE.read_text()


def env() -> dict[str, str]:
    """ENV KEY=VALUE pairs, continuation lines joined."""
    joined = text().replace("\\\n", " ")
    pairs: dict[str, str] = {}
    for line in joined.splitlines():
        if line.startswith("ENV "):
            pairs.update(re.findall(r"(\w+)=(\S+)", line))
    return pairs


def test_base_image_is_the_pinned_vllm_release() -> None:
    assert f"ARG VLLM_IMAGE=vllm/vllm-openai:v{VLLM_VERSION}\n" in text()
    pins = re.findall(r"^ARG VLLM_IMAGE=\S+:v?([\w.]+)$", text(), re.M)
    assert pins == [VLLM_VERSION], f"runtime/Dockerfile pins {pins}"
    assert "FROM ${VLLM_IMAGE}\n" in text()


def test_operator_default_image_is_the_unmodified_vllm_release_this_dockerfile_builds_on() -> None:
    assert f"vllm/vllm-openai:v{VLLM_VERSION}" == DEFAULT_IMAGE
    assert f"ARG VLLM_IMAGE={DEFAULT_IMAGE}\n" in text()


def test_the_baked_image_is_what_this_dockerfile_builds() -> None:
    """The build line, the version label and the launcher's version all say the baked image's tag."""
    assert f"docker build -t {BAKED_IMAGE} runtime/\n" in text()
    (version,) = re.findall(r"^ARG QWEN_RUNTIME_VERSION=(\S+)$", text(), re.M)
    assert BAKED_IMAGE.endswith(f":{version}-vllm{VLLM_VERSION}"), (BAKED_IMAGE, version)
    assert qwen_runtime.__version__ == version


def test_environment_suits_a_long_model_load() -> None:
    values = env()
    joined = text().replace("\\\n", " ")
    assert not re.search(r"^(ENV|ARG)\b.*VLLM_ENGINE_READY_TIMEOUT_S", joined, re.M), (
        "the launcher sets it (qwen_runtime.engine), for the stock image too"
    )
    assert values["PYTHONUNBUFFERED"] == "1"
    assert values["PYTHONPATH"] == "/opt/qwen-runtime"


def test_launcher_is_copied_and_is_the_entrypoint() -> None:
    assert "COPY qwen_runtime /opt/qwen-runtime/qwen_runtime\n" in text()
    assert 'ENTRYPOINT ["python3", "-m", "qwen_runtime"]' in text()
    assert (DOCKERFILE.parent / "qwen_runtime" / "__main__.py").is_file()
