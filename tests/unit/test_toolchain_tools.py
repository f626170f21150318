"""The GitOps tools' Go modules (e2e/devcluster/toolchain/{helm,actionlint,kstatus,luahealth,netpol,...})
pin exactly the versions in versions.py, and their cache never shares the control plane's."""

from __future__ import annotations

import re

import pytest

from e2e.devcluster.toolchain import build, tools, versions


@pytest.mark.parametrize("name", sorted(tools.TOOLS))
def test_go_mod_requires_the_pinned_versions(name: str) -> None:
    tool = tools.TOOLS[name]
    gomod = (tool.module_dir / "go.mod").read_text()
    assert gomod.startswith(tools.HEADER)
    assert f"module qwen-operator/e2e/devcluster/toolchain/{name}\n" in gomod
    for module, version in tool.requires:
        assert re.search(
            rf"^\s*(require )?{re.escape(module)} {re.escape(version)}( // indirect)?$", gomod, re.MULTILINE
        ), f"{name}/go.mod lacks {module} {version}: `python -m e2e.devcluster.toolchain tools-gomod`"
    if tool.package != ".":
        assert f"tool {tool.package}\n" in gomod
    else:
        assert (tool.module_dir / "main.go").is_file()
    assert (tool.module_dir / "go.sum").is_file()


def test_each_tool_has_its_own_cache_directory() -> None:
    dirs = {tools.bin_dir(name) for name in tools.TOOLS}
    assert len(dirs) == len(tools.TOOLS)
    assert all(d.parent == build.cache_root() / "tools" for d in dirs)
    assert not any(
        v in versions.cache_key() for v in (versions.HELM, versions.ACTIONLINT, versions.CLI_UTILS)
    )


def test_helm_reports_its_version_and_the_kubernetes_it_targets() -> None:
    flags = tools.ldflags(tools.TOOLS["helm"])
    assert f"helm.sh/helm/v3/internal/version.version={versions.HELM}" in flags
    assert "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1" in flags
