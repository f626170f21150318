"""The GitHub Actions workflows (.github/workflows/): the release publishes what the
manifests, the chart and the operator refer to, and CI runs `make test`. actionlint's verdict
is tests/tools/test_workflows.py.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from e2e.devcluster.toolchain import versions
from qwen_operator import api

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
REGISTRY = "ghcr.io/qwen-operator"


def workflow(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def version() -> str:
    value: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return value


def test_every_action_is_pinned_to_a_release() -> None:
    for path in WORKFLOWS.glob("*.yaml"):
        for job in workflow(path.name)["jobs"].values():
            for step in job.get("steps", []):
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", step["uses"]), (path.name, step)


def test_ci_runs_make_test_as_the_project_ci_does() -> None:
    ci = workflow("ci.yaml")
    assert {"push", "pull_request", "workflow_call"} <= set(ci["on"])
    (job,) = ci["jobs"].values()
    assert job["timeout-minutes"] >= 90
    assert any(s.get("run") == "bash .ci/run" for s in job["steps"])


def test_release_runs_on_a_version_tag_and_tests_first() -> None:
    release = workflow("release.yaml")
    assert set(release["on"]) == {"push"}
    assert release["on"]["push"] == {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}
    assert release["permissions"] == {"contents": "read"}
    jobs = release["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yaml"
    assert "test" in jobs["images"]["needs"] and "images" in jobs["chart"]["needs"]


def test_release_builds_both_images_multi_arch_with_sbom_and_provenance() -> None:
    release = workflow("release.yaml")
    job = release["jobs"]["images"]
    assert job["permissions"]["packages"] == "write"
    matrix = {m["image"]: m for m in job["strategy"]["matrix"]["include"]}
    assert {k: (m["context"], m["file"]) for k, m in matrix.items()} == {
        "qwen-operator": (".", "Dockerfile"),
        "qwen-runtime": ("runtime", "runtime/Dockerfile"),
    }
    for m in matrix.values():
        assert (REPO / m["file"]).is_file()
    (build,) = steps_using(job, "docker/build-push-action")
    settings = build["with"]
    assert settings["platforms"].split(",") == ["linux/amd64", "linux/arm64"]
    assert settings["push"] is True
    assert settings["sbom"] is True
    assert settings["provenance"] == "mode=max"
    assert settings["tags"] == "${{ steps.meta.outputs.tags }}"
    assert steps_using(job, "docker/setup-qemu-action") and steps_using(job, "docker/setup-buildx-action")
    (meta,) = steps_using(job, "docker/metadata-action")
    assert meta["id"] == "meta"
    assert meta["with"]["images"] == "${{ env.REGISTRY }}/${{ env.NAMESPACE }}/${{ matrix.image }}"
    assert f"{release['env']['REGISTRY']}/{release['env']['NAMESPACE']}" == REGISTRY


def test_published_tags_are_what_the_manifests_and_the_operator_pull() -> None:
    """A tag vX.Y.Z pushes qwen-operator:X.Y.Z (manifests/deployment.yaml, the chart) and
    qwen-runtime:X.Y.Z-vllm<vLLM> (what runtime/Dockerfile says to build, on that vLLM)."""
    release = workflow("release.yaml")
    job = release["jobs"]["images"]
    (meta,) = steps_using(job, "docker/metadata-action")
    assert "type=semver,pattern={{version}}" in meta["with"]["tags"].splitlines()
    assert "suffix=${{ matrix.suffix }},onlatest=true" in meta["with"]["flavor"].splitlines()
    suffix = {m["image"]: m["suffix"] for m in job["strategy"]["matrix"]["include"]}
    vllm = release["env"]["VLLM_VERSION"]
    assert suffix == {"qwen-operator": "", "qwen-runtime": f"-vllm{vllm}"}
    assert f"ARG VLLM_IMAGE=vllm/vllm-openai:v{vllm}\n" in (REPO / "runtime" / "Dockerfile").read_text()
    runtime_image = f"{REGISTRY}/qwen-runtime:{version()}{suffix['qwen-runtime']}"
    assert f"docker build -t {runtime_image} runtime/" in (REPO / "runtime" / "Dockerfile").read_text()
    # The operator runs the stock vLLM image of that release, or this runtime image.
    assert api.DEFAULT_IMAGE in {runtime_image, f"vllm/vllm-openai:v{vllm}"}
    deployment = yaml.safe_load((REPO / "manifests" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{REGISTRY}/qwen-operator:{version()}"
    # The release's own check of the same promises (the tag against the checked-in versions).
    (check,) = [s for s in release["jobs"]["version"]["steps"] if s.get("id") == "check"]
    for path in ("pyproject.toml", "manifests/helm/qwen-operator/Chart.yaml", "manifests/deployment.yaml",
                 "runtime/Dockerfile"):  # fmt: skip
        assert path in check["run"]


def test_release_pushes_the_chart_it_tested() -> None:
    job = workflow("release.yaml")["jobs"]["chart"]
    (setup,) = steps_using(job, "azure/setup-helm")
    assert setup["with"]["version"] == versions.HELM
    script = "\n".join(s.get("run", "") for s in job["steps"])
    assert "helm lint --strict manifests/helm/qwen-operator" in script
    assert 'helm push "dist/qwen-operator-${VERSION}.tgz" "oci://${REGISTRY}/${NAMESPACE}/charts"' in script
