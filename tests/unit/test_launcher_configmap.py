"""The launcher's ConfigMap cannot be swapped: immutable, named by its sources' digest, the digest
in the pod spec, and an old one deleted only once nothing mounts it (children/launcher.py,
reconcile/decide.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from qwen_operator import api
from qwen_operator.api.vocabulary import Component, labels
from qwen_operator.children import launcher, registry, render, replicas
from qwen_operator.reconcile import diff, snapshot
from qwen_operator.reconcile.decide import decide, in_use
from qwen_operator.reconcile.observe import Observed
from qwen_operator.reconcile.refusal import Kind as RefusalKind
from qwen_operator.reconcile.refusal import Refusal
from qwen_runtime import integrity
from testkit.fake import NOW
from testkit.wrappers import NAME, NS, Pod, children, live, parsed, resource

INSTALLED = Path(launcher.__file__).resolve().parents[3] / "runtime" / "qwen_runtime"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
OLD = f"{NAME}-launcher-0123456789"
"""A launcher ConfigMap of other sources (an earlier operator's)."""


def _configmap(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    launcher_cm = launcher.configmap_name(NAME)
    return next(
        c
        for c in render.render(parsed(spec))
        if c["kind"] == "ConfigMap" and c["metadata"]["name"] == launcher_cm
    )


def _pod_spec(kind: str = "StatefulSet") -> dict[str, Any]:
    sts = next(c for c in render.render(parsed()) if c["kind"] == kind)
    spec: dict[str, Any] = sts["spec"]["template"]["spec"]
    return spec


@pytest.fixture
def launcher_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point the operator's launcher at another copy of the sources (an operator upgrade)."""

    def use(package: Path) -> str:
        monkeypatch.setattr(launcher.resources, "files", lambda _: package)
        launcher.sources.cache_clear()
        launcher.digest.cache_clear()
        return launcher.configmap_name(NAME)

    try:
        yield use
    finally:
        monkeypatch.undo()
        launcher.sources.cache_clear()
        launcher.digest.cache_clear()


def _copy(target: Path, extra: str = "") -> Path:
    target.mkdir(parents=True)
    for source in INSTALLED.glob("*.py"):
        (target / source.name).write_text(source.read_text() + (extra if source.name == "argv.py" else ""))
    return target


# -- content-addressed and immutable --------------------------------------------------------------


def test_the_configmap_is_immutable_and_named_by_the_digest_of_its_sources() -> None:
    cm = _configmap()
    digest = integrity.digest({name: text.encode() for name, text in cm["data"].items()})
    assert cm["immutable"] is True
    assert cm["metadata"]["name"] == f"{NAME}-launcher-{digest[:10]}" == launcher.configmap_name(NAME)
    assert launcher.digest() == digest and len(digest) == 64


def test_the_name_changes_when_and_only_when_the_sources_change(tmp_path: Path, launcher_in: Any) -> None:
    before = launcher_in(INSTALLED)
    assert launcher_in(_copy(tmp_path / "same" / "qwen_runtime")) == before  # contents, not place
    after = launcher_in(_copy(tmp_path / "fixed" / "qwen_runtime", extra="\n# a fix\n"))
    assert after != before and after.startswith(f"{NAME}-launcher-")
    pod = _pod_spec()
    (volume,) = [v for v in pod["volumes"] if v["name"] == launcher.VOLUME]
    assert volume["configMap"]["name"] == after  # the pods mount the new one


def test_the_longest_name_is_a_valid_configmap_name() -> None:
    longest = "a" * api.MAX_NAME_LENGTH
    name = launcher.configmap_name(longest)
    assert len(name) == api.MAX_NAME_LENGTH + len("-launcher-") + launcher.NAME_DIGEST_CHARS <= 253
    assert DNS_SUBDOMAIN.match(name)


@pytest.mark.parametrize("kind", ["StatefulSet", "Job"])
def test_every_container_that_runs_the_launcher_gets_the_digest(kind: str) -> None:
    spec = {"model": {"cache": {"mode": "Shared"}}} if kind == "Job" else None
    workload = next(c for c in render.render(parsed(spec)) if c["kind"] == kind)
    pod = workload["spec"]["template"]["spec"]
    runs = [c for c in [*pod.get("initContainers", []), *pod["containers"]] if "qwen_runtime" in c["command"]]
    assert runs
    for container in runs:
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[integrity.DIGEST_VAR] == launcher.digest(), container["name"]
    names = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    settings = {replicas.configmap_name(NAME)} if kind == "StatefulSet" else set()  # each replica's own
    assert names == {launcher.configmap_name(NAME), *settings}


def test_the_user_may_not_set_the_digest() -> None:
    with pytest.raises(api.InvalidResource, match=integrity.DIGEST_VAR):
        parsed({"runtime": {"env": [{"name": integrity.DIGEST_VAR, "value": ""}]}})


def test_a_live_configmap_that_is_not_immutable_drifted() -> None:
    desired = diff.with_hash(_configmap())
    mutable = snapshot.child_from({k: v for k, v in live(desired).items() if k != "immutable"})
    assert diff.drift(desired, snapshot.child_from(live(desired)).manifest) is None
    assert diff.drift(desired, mutable.manifest) == diff.Drift.DRIFTED
    assert diff.changed_fields(mutable.manifest, desired) == ["immutable"]


# -- pruned once unmounted -------------------------------------------------------------------------


def _old_configmap(**meta: Any) -> snapshot.Child:
    raw = live({"apiVersion": "v1", "kind": "ConfigMap", "immutable": True, "data": {"argv.py": "# old\n"},
                "metadata": {"name": OLD, "namespace": NS, "labels": labels(NAME, Component.LAUNCHER),
                             "ownerReferences": [render.owner_reference(parsed())], **meta}})  # fmt: skip
    return snapshot.child_from(raw)


def _observed(pods: tuple[snapshot.Pod, ...] = (), old: snapshot.Child | None = None) -> Observed:
    kids = (*children(parsed()), old or _old_configmap())
    return Observed(resource(), kids, pods)


def _deleted(observed: Observed) -> list[str]:
    return [d.ident for d in decide(observed, NOW).deletes]


def test_an_old_launcher_configmap_no_pod_mounts_is_deleted() -> None:
    desired = decide(_observed((Pod().mounting(launcher.configmap_name(NAME)).facts(),)), NOW)
    assert [(d.ident, d.propagation) for d in desired.deletes] == [
        (f"ConfigMap {OLD}", registry.Propagation.BACKGROUND)
    ]
    assert desired.applies == ()  # the current one stays as it is
    assert [e.reason for d in desired.deletes for e in d.events] == ["Deleted"]


def test_an_old_launcher_configmap_a_pod_mounts_is_kept_until_the_pod_is_gone() -> None:
    old_pod = Pod(f"{NAME}-0", "pod-old").mounting(OLD)
    assert _deleted(_observed((old_pod.facts(),))) == []
    assert _deleted(_observed((Pod(f"{NAME}-0", "pod-old").mounting(OLD).deleting().facts(),))) == []
    gone = replace(old_pod.facts(), deleting=True, gone=True)  # the watch saw it deleted (cache.py)
    assert _deleted(_observed((gone,))) == [f"ConfigMap {OLD}"]
    assert _deleted(_observed()) == [f"ConfigMap {OLD}"]


def test_an_old_launcher_configmap_a_workload_template_names_is_kept() -> None:
    """A StatefulSet not rolled yet (its apply held back by a shared download) would create pods
    that mount it; so would a download Job not replaced yet."""
    sts = next(m for m in render.render(parsed()) if m["kind"] == "StatefulSet")
    volumes = sts["spec"]["template"]["spec"]["volumes"]
    old_volumes = [
        {**v, "configMap": {**v["configMap"], "name": OLD}} if "configMap" in v else v for v in volumes
    ]
    old_sts = {**sts, "spec": {**sts["spec"], "template": {**sts["spec"]["template"],
               "spec": {**sts["spec"]["template"]["spec"], "volumes": old_volumes}}}}  # fmt: skip
    kids = tuple(c for c in children(parsed()) if c.kind != "StatefulSet")
    stale = snapshot.child_from(live(old_sts))
    assert OLD in stale.mounts
    old = _old_configmap()
    observed = Observed(resource(), (*kids, stale, old))
    assert in_use(observed, old)
    assert f"ConfigMap {OLD}" not in _deleted(observed)


def test_only_a_configmap_of_ours_is_deleted_and_never_while_paused() -> None:
    foreign = replace(_old_configmap(ownerReferences=[]), managers=frozenset({"kubectl-client-side-apply"}))
    assert _deleted(_observed(old=foreign)) == []  # no owner, not applied by us: not ours
    paused = Observed(resource({"paused": True}), (*children(parsed()), _old_configmap()))
    assert decide(paused, NOW).deletes == ()


def test_a_pod_and_a_workload_say_which_configmaps_they_mount() -> None:
    assert Pod().mounting("a").mounting("b").facts().mounts == {"a", "b"}
    projected = {"volumes": [{"name": "p", "projected": {"sources": [{"configMap": {"name": "c"}}]}}]}
    assert snapshot.mounted_config_maps(projected) == {"c"}
    for kind in ("StatefulSet", "Job"):
        spec = {"model": {"cache": {"mode": "Shared"}}} if kind == "Job" else None
        manifest = next(m for m in render.render(parsed(spec)) if m["kind"] == kind)
        settings = {replicas.configmap_name(NAME)} if kind == "StatefulSet" else set()
        assert snapshot.child_from(live(manifest)).mounts == {launcher.configmap_name(NAME), *settings}, kind


# -- replaced when someone put other data under its name -------------------------------------------


def test_a_configmap_of_that_name_with_other_data_is_replaced() -> None:
    """Immutable: the apply of the rendered data is refused (a Forbidden cause on `data`), so the
    object is deleted and created anew by the next pass."""
    current = launcher.configmap_name(NAME)
    tampered = {c.name: c for c in children(parsed()) if c.kind == "ConfigMap"}[current]
    tampered = replace(tampered, manifest={**tampered.manifest, diff.DATA_DIGEST: "other data"})
    kids = tuple(c for c in children(parsed()) if c.name != current)
    first = decide(Observed(resource(), (*kids, tampered)), NOW)
    assert [a.ident for a in first.applies] == [f"ConfigMap {current}"]
    refusal = Refusal(RefusalKind.FIELD_IMMUTABLE, f"ConfigMap {current}", "data: Forbidden", 422, ("data",))
    second = decide(Observed(resource(), (*kids, tampered), refusal=refusal), NOW)
    assert [(d.ident, d.propagation) for d in second.deletes] == [
        (f"ConfigMap {current}", registry.Propagation.BACKGROUND)
    ]
    assert second.applies == ()
    (said,) = (e for d in second.deletes for e in d.events)
    assert (said.reason, said.message) == (
        "Replacing",
        f"Replacing ConfigMap {current}: its data are not the launcher's, and it is immutable",
    )
