"""Each replica's own settings: the ConfigMap, how the pods mount it, and which pod is restarted."""

from __future__ import annotations

import json
from datetime import timedelta

from qwen_operator.children import render, replicas
from qwen_operator.reconcile import diff, rollout, snapshot
from qwen_runtime import replica
from testkit.fake import NOW
from testkit.wrappers import GRAPH_OOM_RECORD, NAME, Pod, live, parsed, statefulset


def test_the_configmap_holds_one_entry_per_pod_as_the_launcher_parses_it() -> None:
    kids = render.render(parsed({"replicas": 3}), replica_utilizations={f"{NAME}-2": 0.86, f"{NAME}-0": 0.89})
    (cm,) = [c for c in kids if c["metadata"]["name"] == replicas.configmap_name(NAME)]
    assert cm["kind"] == "ConfigMap" and "immutable" not in cm  # updated in place
    assert list(cm["data"]) == [f"{NAME}-0", f"{NAME}-2"]
    assert replica.parse(f"{NAME}-0", cm["data"][f"{NAME}-0"]).utilization == 0.89
    assert json.loads(cm["data"][f"{NAME}-2"]) == {"gpuMemoryUtilization": 0.86}
    (empty,) = [c for c in render.render(parsed()) if c["metadata"]["name"] == replicas.configmap_name(NAME)]
    assert empty["data"] == {}


def test_the_pods_mount_it_optionally_and_know_their_name_the_template_unchanged() -> None:
    plain = render.render(parsed())
    cured = render.render(parsed(), replica_utilizations={f"{NAME}-0": 0.89})
    sts = next(c for c in cured if c["kind"] == "StatefulSet")
    assert sts == next(c for c in plain if c["kind"] == "StatefulSet")  # no rollout for a replica's cure
    pod = sts["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == replicas.VOLUME]
    assert volume["configMap"] == {"name": f"{NAME}-replicas", "optional": True, "defaultMode": 292}
    server = pod["containers"][0]
    (mount,) = [m for m in server["volumeMounts"] if m["name"] == replicas.VOLUME]
    assert (mount["mountPath"], mount["readOnly"]) == (replicas.MOUNT, True)
    env = {e["name"]: e for e in server["env"]}
    assert env[replica.POD_NAME_VAR]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env[replica.SETTINGS_DIR_VAR]["value"] == replicas.MOUNT


def test_a_pipeline_has_no_replica_settings() -> None:
    kids = render.render(parsed({"parallelism": {"pipeline": 2}}))
    assert replicas.configmap_name(NAME) not in {c["metadata"]["name"] for c in kids}
    kids = [c for c in kids if c["kind"] != "ConfigMap"]  # the launcher's sources name them
    assert replicas.VOLUME not in json.dumps(kids) and replica.SETTINGS_DIR_VAR not in json.dumps(kids)


def test_an_empty_configmap_the_apiserver_stored_without_data_is_no_drift() -> None:
    (cm,) = [c for c in render.render(parsed()) if c["metadata"]["name"] == replicas.configmap_name(NAME)]
    desired = diff.with_hash(cm)
    stored = live(cm)
    del stored["data"]  # the apiserver omits an empty map
    assert diff.drift(desired, snapshot.child_from(stored).manifest) is None
    entry = diff.with_hash({**cm, "data": replicas.data({f"{NAME}-0": 0.89})})
    assert diff.drift(entry, snapshot.child_from(stored).manifest) == diff.Drift.CHANGED


def inputs(*pods: snapshot.Pod, settings: dict[str, float], hold: bool = False) -> rollout.Inputs:
    return rollout.Inputs(statefulset(3, 3), pods, 3, 1, 2700.0, None, hold=hold, settings=settings)


def test_only_the_failed_replica_whose_last_run_differs_is_restarted() -> None:
    failed = Pod(f"{NAME}-0", "u0").utilization(0.92).failed(GRAPH_OOM_RECORD).facts()
    serving = [Pod(f"{NAME}-{i}", f"u{i}").utilization(0.92).facts() for i in (1, 2)]
    (again,) = rollout.restarts(inputs(failed, *serving, settings={f"{NAME}-0": 0.89}))
    assert again.pod.name == f"{NAME}-0" and "its own 0.89" in again.why and "0.92" in again.why
    # nothing while the ConfigMap does not have the entry yet, or writes are held
    assert rollout.restarts(inputs(failed, *serving, settings={})) == ()
    assert rollout.restarts(inputs(failed, *serving, settings={f"{NAME}-0": 0.89}, hold=True)) == ()
    # a serving replica with a setting is never restarted for it (it takes it at its next start)
    assert rollout.restarts(inputs(failed, *serving, settings={f"{NAME}-1": 0.89})) == ()
    # a run that already had its own setting (the launcher's record), or runs again: left alone
    ran_own = Pod(f"{NAME}-0", "u0").failed({**GRAPH_OOM_RECORD, "gpuMemoryUtilization": 0.89}).facts()
    assert rollout.restarts(inputs(ran_own, *serving, settings={f"{NAME}-0": 0.89})) == ()
    running = (
        Pod(f"{NAME}-0", "u0")
        .utilization(0.92)
        .crashed(json.dumps(GRAPH_OOM_RECORD), then="running")
        .not_ready()
    )
    assert rollout.restarts(inputs(running.facts(), *serving, settings={f"{NAME}-0": 0.89})) == ()
    gone = Pod(f"{NAME}-0", "u0").utilization(0.92).failed(GRAPH_OOM_RECORD).deleting().facts()
    assert rollout.restarts(inputs(gone, *serving, settings={f"{NAME}-0": 0.89})) == ()
    assert NOW + timedelta(0) == NOW  # (the order reads no clock)
