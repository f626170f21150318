"""GitOps consumers against the real cluster: what Flux (kstatus), Argo CD (the health script in
gopher-lua) and `kubectl wait` make of a resource in every phase, from every version of it the
apiserver sent; the Argo CD runner against Argo CD's own tests; the Flux and Argo CD examples
against Flux's and Argo CD's own CRDs (from their Go modules, applied as a server-side dry run).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.conftest import Cluster  # noqa: E402
from e2e.devcluster.consumers import ARGOCD_CM, ARGOCD_DIR, Health, argocd_health, argocd_tests, kstatus  # noqa: E402
from e2e.devcluster.kube import kubectl, wait_established, wait_for  # noqa: E402
from e2e.devcluster.toolchain import tools, versions  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    GROUP,
    NAME,
    PLURAL,
    VERSION,
    Operator,
    apply_yaml,
    condition,
    get_qtd,
    patch_spec,
    sample,
)

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
ARGO_CRD = Path("manifests", "crds", "application-crd.yaml")
FLUX_CRDS = {
    "flux-kustomize-controller": Path(
        "config", "crd", "bases", "kustomize.toolkit.fluxcd.io_kustomizations.yaml"
    ),
    "flux-source-controller": Path("config", "crd", "bases", "source.toolkit.fluxcd.io_gitrepositories.yaml"),
}


# -- the runner is Argo CD's contract ----------------------------------------------------------


def test_runner_passes_argo_cds_own_health_tests() -> None:
    """Every built-in health script of Argo CD against its upstream health_test.yaml: the runner
    gives exactly what Argo CD's own test expects (status and message)."""
    upstream = tools.module_dir("argo-cd") / "resource_customizations"
    records, summary = argocd_tests(upstream)
    failed = [r for r in records if not r["ok"]]
    assert not failed, failed[:5]
    assert len(records) > 500, summary


def test_runner_pins_the_lua_engine_argo_cd_pins() -> None:
    gomod = (tools.module_dir("argo-cd") / "go.mod").read_text()
    for module, pinned in (("github.com/yuin/gopher-lua", versions.GOPHER_LUA),
                           ("layeh.com/gopher-json", versions.GOPHER_JSON)):  # fmt: skip
        assert re.search(rf"^\s*{re.escape(module)} {re.escape(pinned)}$", gomod, re.MULTILINE), module
        ours = (tools.TOOLS["luahealth"].module_dir / "go.mod").read_text()
        assert re.search(rf"^\s*{re.escape(module)} {re.escape(pinned)}$", ours, re.MULTILINE), module


# -- every phase, every version the apiserver sent ------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One version of the resource as a watcher received it."""

    obj: dict[str, Any]
    at: float

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.obj.get("status") or {})

    def truth(self, type_: str) -> str:
        return str(condition(self.obj, type_).get("status", ""))

    @property
    def current(self) -> bool:
        """Ready=True for the generation the status describes, which is the latest."""
        gen = self.obj["metadata"]["generation"]
        ready = condition(self.obj, "Ready")
        return (
            self.status.get("observedGeneration") == gen
            and ready.get("status") == "True"
            and ready.get("observedGeneration") == gen
        )


class Versions:
    """Every version of one resource from a watch that starts at the current resourceVersion,
    so no change after construction is missed, however late the stream connects."""

    def __init__(self, custom: client.CustomObjectsApi, ns: str, name: str) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._watch = watch.Watch()
        self._name = name
        self._args = (custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL)
        self._since = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["metadata"][
            "resourceVersion"
        ]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # stop() ends the stream mid-response
            for event in self._watch.stream(*self._args, resource_version=self._since, timeout_seconds=600):
                obj = event["object"]
                if event["type"] in ("ADDED", "MODIFIED") and obj["metadata"]["name"] == self._name:
                    with self._lock:
                        self.seen.append(Seen(obj, time.monotonic()))

    def since(self, generation: int) -> list[Seen]:
        """The versions at `generation` or later, received so far."""
        with self._lock:
            return [s for s in self.seen if s.obj["metadata"]["generation"] >= generation]

    def stop(self) -> None:
        self._watch.stop()


@pytest.fixture
def versions_of(custom: client.CustomObjectsApi, ns: str) -> Iterator[Versions]:
    recorder = Versions(custom, ns, NAME)
    yield recorder
    recorder.stop()


def read(seen: list[Seen]) -> tuple[list[Health], list[Health], list[Health]]:
    """kstatus, Argo CD health (health.lua, open libs off) and Argo CD health through argocd-cm."""
    objects = [s.obj for s in seen]
    return kstatus(objects), argocd_health(objects), argocd_health(objects, argocd_cm=ARGOCD_CM)


def kubectl_wait_ready(ns: str) -> None:
    kubectl("wait", f"qtd/{NAME}", "-n", ns, "--for=condition=Ready", "--timeout=120s")


def settled(custom: client.CustomObjectsApi, ns: str, replicas: int) -> dict[str, Any]:
    """What `kubectl wait --for=condition=Ready` returned on: the current generation, all ready."""
    obj = get_qtd(custom, ns, NAME)
    st = obj["status"]
    gen = obj["metadata"]["generation"]
    assert st["observedGeneration"] == gen and condition(obj, "Ready")["observedGeneration"] == gen, st
    assert (st["replicas"], st["readyReplicas"]) == (replicas, replicas), st
    return obj


def check_progress(phase: str, seen: list[Seen], first_moment_ok: bool = False) -> dict[str, Any]:
    """Until the resource is Ready for its generation, kstatus reads InProgress and Argo CD
    Progressing; from then on Current and Healthy. Never Reconciling and Stalled both True."""
    assert seen, f"{phase}: no version of the resource was seen"
    ks, argo, argo_cm = read(seen)
    assert argo == argo_cm, f"{phase}: argocd-cm (libraries closed) reads otherwise than health.lua"
    done = next((i for i, s in enumerate(seen) if s.current), None)
    assert done is not None, f"{phase}: never Ready for its generation: {[s.status for s in seen][-1]}"
    table = [
        (i, s.obj["metadata"]["generation"], s.status.get("observedGeneration"), s.truth("Ready"),
         s.truth("Reconciling"), s.truth("Stalled"), k.status, a.status)
        for i, (s, k, a) in enumerate(zip(seen, ks, argo, strict=True))
    ]  # fmt: skip
    print(
        f"{phase}: (i, generation, observed, Ready, Reconciling, Stalled, kstatus, argo)", *table, sep="\n  "
    )
    for i, s in enumerate(seen):
        assert not (s.truth("Reconciling") == "True" and s.truth("Stalled") == "True"), (phase, s.status)
        if i < done:
            if first_moment_ok and i == 0 and not s.status:
                # No status yet: kstatus cannot tell it from a resource without conditions.
                assert (ks[i].status, argo[i].status) == ("Current", "Progressing"), (phase, i)
                continue
            assert (ks[i].status, argo[i].status) == ("InProgress", "Progressing"), (phase, table[i])
        else:
            assert (ks[i].status, argo[i].status) == ("Current", "Healthy"), (phase, table[i])
    return {"versions": len(seen), "ready_at": done}


def test_every_phase_reads_right_to_flux_argo_cd_and_kubectl_wait(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, versions_of: Versions
) -> None:
    """Create, scale, stall, recover, pause: every version the apiserver sent, through kstatus
    and the Argo CD health script, and `kubectl wait --for=condition=Ready` after each (a roll
    out is the next test)."""
    del operator
    # Create: the first version has no status; the operator's first status write says Reconciling.
    apply_yaml(ns, sample())
    kubectl_wait_ready(ns)
    settled(custom, ns, 1)
    created = versions_of.since(1)
    first = next(s for s in created if s.status)
    assert first.truth("Reconciling") == "True", first.status  # the operator's first status write
    if not created[0].status:  # as created: kstatus reads Current until the operator writes
        print(f"no status for {first.at - created[0].at:.3f}s after creation")
    check_progress("create", created, first_moment_ok=True)

    # Scale: kubectl wait does not return on the old generation's Ready=True.
    kubectl("scale", f"qtd/{NAME}", "-n", ns, "--replicas=2")
    kubectl_wait_ready(ns)
    gen = settled(custom, ns, 2)["metadata"]["generation"]
    scaled = versions_of.since(gen)
    assert scaled[0].status["observedGeneration"] < gen  # the first moment: not yet observed
    check_progress("scale", scaled)

    # Stall: the weights do not fit tensor parallel 2 on 80 GB GPUs (nothing is changed).
    patch_spec(ns, {"parallelism": {"tensor": 2}})
    gen = get_qtd(custom, ns, NAME)["metadata"]["generation"]

    def stalled() -> Seen | None:
        found = [s for s in versions_of.since(gen) if s.truth("Stalled") == "True"]
        return found[-1] if found else None

    last = wait_for(stalled, 60, "Stalled=True")
    cond = condition(last.obj, "Stalled")
    ks, argo, argo_cm = read([last])
    assert ks == [Health("Failed", cond["message"])]
    assert argo == argo_cm == [Health("Degraded", f"{cond['reason']}: {cond['message']}")]
    assert cond["reason"] == "InsufficientGPUMemory"
    for s in versions_of.since(gen):
        assert not (s.truth("Reconciling") == "True" and s.truth("Stalled") == "True"), s.status

    # Recover: back to tensor parallel 4, Ready again.
    patch_spec(ns, {"parallelism": {"tensor": 4}})
    kubectl_wait_ready(ns)
    gen = settled(custom, ns, 2)["metadata"]["generation"]
    check_progress("recover", versions_of.since(gen))

    # Pause: Argo CD shows Suspended; kstatus stays Current while the servers are Ready.
    patch_spec(ns, {"paused": True})
    gen = get_qtd(custom, ns, NAME)["metadata"]["generation"]

    def paused() -> Seen | None:
        found = [
            s for s in versions_of.since(gen) if condition(s.obj, "Reconciling").get("reason") == "Paused"
        ]
        return found[-1] if found else None

    last = wait_for(paused, 60, "Reconciling reason Paused")
    ks, argo, _ = read([last])
    assert argo[0].status == "Suspended" and ks[0].status == "Current", (ks, argo)


def test_a_roll_out_reads_in_progress_until_the_statefulset_rolled(
    operator: Operator,
    ns: str,
    custom: client.CustomObjectsApi,
    apps_v1: client.AppsV1Api,
    core_v1: client.CoreV1Api,
    versions_of: Versions,
) -> None:
    """A spec change that changes the pod template (sampling): from the first version of the new
    generation until the StatefulSet has rolled, InProgress and Progressing; `kubectl wait`
    returns only once the servers run the new command line."""
    del operator
    apply_yaml(ns, sample(replicas=2))
    kubectl_wait_ready(ns)
    patch_spec(ns, {"sampling": {"temperature": 0.7}})
    kubectl_wait_ready(ns)
    gen = get_qtd(custom, ns, NAME)["metadata"]["generation"]
    sts = apps_v1.read_namespaced_stateful_set(NAME, ns)
    pods = core_v1.list_namespaced_pod(ns).items
    revisions = {p.metadata.labels.get("controller-revision-hash") for p in pods}
    rolled = (  # OnDelete (the operator rolls): the controller never advances currentRevision
        sts.status.observed_generation == sts.metadata.generation
        and sts.status.updated_replicas == 2
        and sts.status.ready_replicas == 2
        and revisions == {sts.status.update_revision}
    )
    command = " ".join(sts.spec.template.spec.containers[0].command)
    assert '"temperature":0.7' in command.replace(" ", ""), command
    assert rolled, f"kubectl wait returned before the StatefulSet rolled: {sts.status}"
    check_progress("roll", versions_of.since(gen))


# -- the examples, against Flux's and Argo CD's own CRDs --------------------------------------------


@pytest.fixture
def foreign_crds(cluster: Cluster) -> Iterator[None]:
    """Argo CD's Application and Flux's Kustomization and GitRepository CRDs, from their modules."""
    del cluster
    paths = [tools.module_dir("argo-cd") / ARGO_CRD] + [tools.module_dir(m) / p for m, p in FLUX_CRDS.items()]
    out = kubectl("apply", "--server-side", *[a for p in paths for a in ("-f", str(p))], "-o", "name")
    names = out.stdout.split()
    wait_established(*names)
    yield
    kubectl("delete", *names, "--wait=true", "--timeout=60s", check=False)


def in_namespace(text: str, namespace: str) -> str:
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return yaml.safe_dump_all(docs)


def dry_run(namespace: str, path: Path) -> list[str]:
    out = kubectl("apply", "--dry-run=server", "-f", "-", stdin=in_namespace(path.read_text(), namespace))
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert lines and all("(server dry run)" in line for line in lines), out.stdout
    return lines


def test_examples_are_valid_for_flux_and_argo_cd(
    namespace: str, foreign_crds: None, crd_installed: list[str]
) -> None:
    """manifests/flux and manifests/argocd, applied as a server-side dry run against the
    consumers' real schemas; what they point at exists in our CRD."""
    del foreign_crds, crd_installed
    flux = REPO / "manifests" / "flux" / "qwen-operator.yaml"
    assert len(dry_run(namespace, flux)) == 3
    assert len(dry_run(namespace, ARGOCD_DIR / "application.yaml")) == 2
    assert len(dry_run(namespace, ARGOCD_CM)) == 1
    crd = json.loads(kubectl("get", "crd", f"{PLURAL}.{GROUP}", "-o", "json").stdout)
    kind = crd["spec"]["names"]["kind"]
    (served,) = [v for v in crd["spec"]["versions"] if v["served"]]
    # Flux health-checks this very resource kind and version.
    model = [
        d for d in yaml.safe_load_all(flux.read_text()) if d and d["metadata"]["name"] == "qwen3-thinking"
    ]
    (check,) = model[0]["spec"]["healthChecks"]
    assert (check["apiVersion"], check["kind"]) == (f"{GROUP}/{served['name']}", kind)
    # Argo CD's ignoreDifferences names the field the scale subresource (HPA, KEDA) writes.
    apps = [d for d in yaml.safe_load_all((ARGOCD_DIR / "application.yaml").read_text()) if d]
    ignored = [i for a in apps for i in a["spec"].get("ignoreDifferences", [])]
    assert ignored == [{"group": GROUP, "kind": kind, "jsonPointers": ["/spec/replicas"]}]
    assert served["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
