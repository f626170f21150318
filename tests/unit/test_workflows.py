"""The GitHub Actions workflows (.github/workflows/): the release publishes what the
manifests, the chart and the operator refer to, pinned and signed, and CI runs `make test`.
actionlint's verdict is tests/tools/test_workflows.py.

What these tests cannot show: that a signature verifies. Keyless signing needs the OIDC
identity of a real workflow run (`id-token: write` on GitHub), so the signing steps are checked
for their shape (what is signed, by digest, with which permission), not run.
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


# `uses: owner/repo[/path]@<40-hex commit> # vX.Y.Z`, a local action or workflow, or a
# container by digest. A tag or a branch can be moved to other code; a commit cannot.
PINNED = re.compile(
    r"uses: (?:[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40} # v\d+(?:\.\d+)*"
    r"|\./[\w./-]+"
    r"|docker://[\w./:-]+@sha256:[0-9a-f]{64})"
)


def unpinned(text: str) -> list[str]:
    """Every `uses:` line of a workflow that is not pinned (a YAML-aware count is below)."""
    lines = [line.strip().removeprefix("- ") for line in text.splitlines()]
    return [line for line in lines if line.startswith("uses:") and not PINNED.fullmatch(line)]


def test_every_action_is_pinned_to_a_commit_with_its_tag() -> None:
    for path in sorted(WORKFLOWS.glob("*.y*ml")):
        text = path.read_text()
        assert unpinned(text) == [], path.name
        # Every `uses` YAML sees is one of the lines checked above (no flow style, no other key).
        doc = workflow(path.name)
        used = [s["uses"] for j in doc["jobs"].values() for s in j.get("steps", []) if "uses" in s]
        used += [j["uses"] for j in doc["jobs"].values() if "uses" in j]
        assert len(used) == sum(line.strip().removeprefix("- ").startswith("uses:")
                                for line in text.splitlines())  # fmt: skip
        for ref in used:
            assert any(f"uses: {ref} # v" in line or line.strip().endswith(f"uses: {ref}")
                       for line in text.splitlines()), ref  # fmt: skip


def test_the_pin_check_refuses_tags_branches_and_short_shas() -> None:
    sha = "11d5960a326750d5838078e36cf38b85af677262"
    good = [
        f"    - uses: actions/checkout@{sha} # v4.4.0",
        f"      uses: github/codeql-action/init@{sha} # v3.28.0",
        "    uses: ./.github/workflows/ci.yaml",
        "    - uses: docker://alpine:3.22@sha256:" + "a" * 64,
    ]
    bad = [
        "    - uses: actions/checkout@v4",
        "    - uses: actions/checkout@v4.4.0",
        "    - uses: actions/checkout@main",
        f"    - uses: actions/checkout@{sha[:12]} # v4.4.0",
        f"    - uses: actions/checkout@{sha}",  # no tag to say what it is
        f"    - uses: actions/checkout@{sha} # main",
        f"    - uses: actions/checkout@{sha.upper()} # v4.4.0",
        "    - uses: docker://alpine:3.22",
    ]
    assert unpinned("\n".join(good)) == []
    assert len(unpinned("\n".join(bad))) == len(bad)


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


def signing(job: dict[str, Any]) -> list[str]:
    assert job["permissions"]["id-token"] == "write"  # the OIDC token keyless signing needs
    assert steps_using(job, "sigstore/cosign-installer")
    return [s["run"] for s in job["steps"] if "cosign sign" in s.get("run", "")]


def test_release_signs_each_image_keyless_by_the_digest_it_pushed() -> None:
    job = workflow("release.yaml")["jobs"]["images"]
    (build,) = steps_using(job, "docker/build-push-action")
    (sign,) = [s for s in job["steps"] if "cosign sign" in s.get("run", "")]
    assert signing(job) == ['cosign sign --yes "${IMAGE}@${DIGEST}"']
    assert sign["env"] == {
        "IMAGE": "${{ env.REGISTRY }}/${{ env.NAMESPACE }}/${{ matrix.image }}",
        "DIGEST": f"${{{{ steps.{build['id']}.outputs.digest }}}}",
    }
    names = [s.get("uses", "").split("@")[0] or s.get("name") for s in job["steps"]]
    assert names.index("sigstore/cosign-installer") > names.index("docker/build-push-action")


def test_release_signs_the_chart_it_pushed() -> None:
    job = workflow("release.yaml")["jobs"]["chart"]
    (push,) = [s for s in job["steps"] if "helm push" in s.get("run", "")]
    assert "set -o pipefail" in push["run"]
    assert 'echo "digest=${digest}" >> "$GITHUB_OUTPUT"' in push["run"]
    (sign,) = [s for s in job["steps"] if "cosign sign" in s.get("run", "")]
    assert signing(job) == ['cosign sign --yes "${REGISTRY}/${NAMESPACE}/charts/qwen-operator@${DIGEST}"']
    assert sign["env"] == {"DIGEST": f"${{{{ steps.{push['id']}.outputs.digest }}}}"}
    # cosign writes the signature with docker's credentials, not helm's.
    assert steps_using(job, "docker/login-action")


def test_release_reads_no_shared_cache() -> None:
    release = workflow("release.yaml")
    for name, job in release["jobs"].items():
        for step in job.get("steps", []):
            assert step.get("uses", "").split("@")[0] != "actions/cache", name
            settings = step.get("with", {})
            assert "cache-from" not in settings and "cache-to" not in settings, name
    (build,) = steps_using(release["jobs"]["images"], "docker/build-push-action")
    assert build["with"]["no-cache"] is True
    # The tests the release runs first (ci.yaml, called) restore no cache on a tag either.
    (job,) = workflow("ci.yaml")["jobs"].values()
    for cache in steps_using(job, "actions/cache"):
        assert cache["if"] == "${{ !startsWith(github.ref, 'refs/tags/') }}"


def test_release_builds_the_operator_on_a_base_pinned_by_digest() -> None:
    job = workflow("release.yaml")["jobs"]["images"]
    matrix = {m["image"]: m for m in job["strategy"]["matrix"]["include"]}
    (build,) = steps_using(job, "docker/build-push-action")
    assert build["with"]["build-args"] == "${{ matrix.build-args }}"
    arg = matrix["qwen-operator"]["build-args"]
    name, _, image = arg.partition("=")
    assert name == "PYTHON_IMAGE"
    dockerfile = (REPO / "Dockerfile").read_text()
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert default, "the Dockerfile takes its base from PYTHON_IMAGE"
    # The same tag as the Dockerfile's default, and its digest.
    assert re.fullmatch(re.escape(default[1]) + r"@sha256:[0-9a-f]{64}", image), image
    assert dockerfile.count("FROM ${PYTHON_IMAGE}") == 2
    assert re.findall(r"^FROM (.*)$", dockerfile, re.MULTILINE) == [
        "${PYTHON_IMAGE} AS build",
        "${PYTHON_IMAGE}",
    ]
