"""`python -m e2e.devcluster.cluster`: configurable GPU nodes, an idempotent `up`, and a `down`
that stops exactly the processes `up` recorded (by pid) and removes the state."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from e2e.conftest import Cluster
from e2e.devcluster import cluster as local_cluster
from e2e.devcluster import nodes
from e2e.devcluster.kube import wait_for


def test_gpu_model_and_count_are_configurable() -> None:
    listing = nodes.node_list(2, "H200", 4)
    assert [n["metadata"]["name"] for n in listing["items"]] == ["gpu-node-0", "gpu-node-1"]
    node = listing["items"][0]
    labels = node["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H200"
    assert labels["nvidia.com/gpu.memory"] == "143771"
    assert labels["nvidia.com/gpu.count"] == "4"
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "4"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    with pytest.raises(ValueError, match="unknown GPU model 'A100'"):
        nodes.node_list(1, "A100", 8)


def orphan_sleep() -> int:
    """The pid of a `sleep` that is not our child: what `down` meets after a separate `up`."""
    out = subprocess.run(
        ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True, check=True
    )
    pid = int(out.stdout)
    wait_for(lambda: local_cluster.pid_alive(pid, "sleep"), 10, f"sleep {pid} to exec")
    return pid


def test_down_stops_the_recorded_processes_by_pid_and_removes_the_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("QWEN_E2E_STATE_DIR", str(state))
    layout = local_cluster.Layout(state=state, bin=tmp_path, ports={})
    sleep = shutil.which("sleep")
    assert sleep, "sleep not on PATH"
    child = local_cluster.spawn(layout, "child", [sleep, "300"])
    orphan, stranger = orphan_sleep(), orphan_sleep()
    procs = {
        "child": child,
        "orphan": {"pid": orphan, "binary": "sleep"},
        # a recorded pid now running something else (recycled): never signalled
        "recycled": {"pid": stranger, "binary": "/usr/local/bin/etcd"},
    }
    local_cluster.save(layout, procs, {})
    try:
        local_cluster.down()
        assert not local_cluster.pid_alive(int(child["pid"]), sleep)
        assert not local_cluster.pid_alive(orphan, "sleep")
        assert local_cluster.pid_alive(stranger, "sleep"), "a pid that is not ours was signalled"
        assert not state.exists()
        assert not (tmp_path / ".state.lock").exists()
    finally:  # whatever down left, the test does not
        for pid, binary in ((int(child["pid"]), sleep), (orphan, "sleep"), (stranger, "sleep")):
            if local_cluster.pid_alive(pid, binary):
                os.kill(pid, signal.SIGKILL)


def test_up_again_is_a_no_op_and_status_env_describe_it(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if not cluster.local:
        pytest.skip("an external cluster (KUBECONFIG) is not e2e.devcluster.cluster's to start")
    state = cluster.kubeconfig.parent
    monkeypatch.setenv("QWEN_E2E_STATE_DIR", str(state))
    saved = local_cluster.read_state(state)
    assert saved is not None and local_cluster.running(state)
    assert local_cluster.up(4, "H100", 8) == cluster.kubeconfig
    assert local_cluster.read_state(state) == saved, "a second up restarted something"
    assert local_cluster.status() == 0
    printed = capsys.readouterr().out
    for name in saved["processes"]:
        assert f"{name} " in printed and "NOT RUNNING" not in printed
    assert f"export KUBECONFIG={cluster.kubeconfig}" in local_cluster.env_lines()
