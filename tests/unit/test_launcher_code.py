"""The launcher reaches the unmodified vLLM image in a ConfigMap: run it exactly as the pod gets it."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from qwen_operator.children import launcher, render
from testkit.wrappers import parsed

BASE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"
"""An interpreter without this project's virtualenv: like the vLLM image, it knows no qwen_runtime."""


def _children(spec: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return {
        c["kind"]: c for c in render.render(parsed(spec)) if not c["metadata"]["name"].endswith("-replicas")
    }


def _materialize(root: Path, spec: dict[str, Any] | None = None) -> tuple[dict[str, str], list[str]]:
    """Lay the ConfigMap's files out where the pod mounts them (under `root`); the server's
    environment and command, with the mount and PYTHONPATH moved under `root` too."""
    kids = _children(spec)
    pod = kids["StatefulSet"]["spec"]["template"]["spec"]
    server = pod["containers"][0]
    (volume,) = [
        v
        for v in pod["volumes"]
        if v.get("configMap", {}).get("name") == kids["ConfigMap"]["metadata"]["name"]
    ]
    (mount,) = [m for m in server["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    target = root / mount["mountPath"].lstrip("/")
    target.mkdir(parents=True)
    for name, text in kids["ConfigMap"]["data"].items():
        (target / name).write_text(text)
    env = {e["name"]: e["value"] for e in server["env"] if "value" in e}
    assert Path(env["PYTHONPATH"]) / "qwen_runtime" == Path(mount["mountPath"])  # the pod's path finds it
    return {"PYTHONPATH": str(root / env["PYTHONPATH"].lstrip("/")), "PATH": "/usr/bin:/bin"}, server[
        "command"
    ]


def _python(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BASE_PYTHON), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_pod_runs_the_launcher_from_its_configmap(tmp_path: Path) -> None:
    env, command = _materialize(tmp_path / "root")
    assert command[:3] == ["python3", "-m", "qwen_runtime"]
    where = _python(env, "-c", "import qwen_runtime; print(qwen_runtime.__file__)", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(tmp_path / "root" / "opt")), where.stdout
    for args in (["--help"], ["fetch", "--help"], ["ready", "--help"], ["wait-leader", "--help"]):
        done = _python(env, "-m", "qwen_runtime", *args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
        assert "usage" in done.stdout.lower(), args


def test_a_pipeline_workers_prestop_runs_from_the_configmap_and_waits_for_its_leader(tmp_path: Path) -> None:
    """The worker's hook as rendered, on the pod's PYTHONPATH, with the address LeaderWorkerSet
    gives the container: it returns once the leader (a listener on 127.0.0.1, standing for the
    leader's API port) closes. Only the port is moved (8000 may be anyone's here)."""
    env, _ = _materialize(tmp_path / "root")  # the ConfigMap is the same for every shape
    group = _children({"parallelism": {"tensor": 4, "pipeline": 2}})["LeaderWorkerSet"]
    worker = group["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
    command = list(worker["lifecycle"]["preStop"]["exec"]["command"])
    assert command[:3] == ["python3", "-m", "qwen_runtime"]
    leader = socket.create_server(("127.0.0.1", 0))
    command[command.index("--port") + 1] = str(leader.getsockname()[1])
    threading.Timer(1.0, leader.close).start()  # the leader's vLLM exits after its drain
    started = time.monotonic()
    done = _python({**env, "LWS_LEADER_ADDRESS": "127.0.0.1"}, "-m", *command[2:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no longer accepts connections" in done.stderr
    assert 1.0 <= time.monotonic() - started < 30  # it did wait, and not for the bound (1245 s)


def test_the_init_container_gets_the_same_launcher() -> None:
    pod = _children()["StatefulSet"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    server = pod["containers"][0]
    assert init["image"] == server["image"] == "vllm/vllm-openai:v0.33.0"
    assert init["command"] == ["python3", "-m", "qwen_runtime", "fetch"]
    mounts = {m["name"]: m for m in init["volumeMounts"]}
    assert mounts[launcher.VOLUME] == next(m for m in server["volumeMounts"] if m["name"] == launcher.VOLUME)
    assert {"name": "PYTHONPATH", "value": launcher.MOUNT} in init["env"]


def test_the_configmap_holds_every_module_of_the_launcher() -> None:
    kids = _children()
    package = Path(launcher.__file__).resolve().parents[3] / "runtime" / "qwen_runtime"
    sources = {p.name: p.read_text() for p in package.glob("*.py")}
    assert kids["ConfigMap"]["data"] == sources
    assert sum(len(t) for t in sources.values()) < 900 * 1024  # a ConfigMap holds 1 MiB


def _launcher_from(package: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    """The digest and the rendered children when the operator's launcher is the one in `package`."""
    monkeypatch.setattr(launcher.resources, "files", lambda _: package)
    launcher.sources.cache_clear()
    launcher.digest.cache_clear()
    return launcher.digest(), _children()


def test_a_new_launcher_rolls_the_servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator upgrade that changes one launcher source changes the pod template's digest
    annotation (the servers roll) and the ConfigMap; the same sources elsewhere change nothing."""
    installed = Path(launcher.__file__).resolve().parents[3] / "runtime" / "qwen_runtime"
    same, edited = tmp_path / "same" / "qwen_runtime", tmp_path / "edited" / "qwen_runtime"
    for copy in (same, edited):
        copy.mkdir(parents=True)
        for source in installed.glob("*.py"):
            (copy / source.name).write_text(source.read_text())
    (edited / "argv.py").write_text((edited / "argv.py").read_text() + "\n# a fix\n")
    annotation = "serving.qwen-operator.io/launcher-digest"
    try:
        before, kids = _launcher_from(installed, monkeypatch)
        assert kids["StatefulSet"]["spec"]["template"]["metadata"]["annotations"] == {annotation: before}
        assert _launcher_from(same, monkeypatch)[0] == before  # the contents, not where they lie
        after, changed = _launcher_from(edited, monkeypatch)
        assert after != before
        assert changed["StatefulSet"]["spec"]["template"]["metadata"]["annotations"] == {annotation: after}
        assert changed["ConfigMap"]["data"]["argv.py"].endswith("# a fix\n")
    finally:
        monkeypatch.undo()
        launcher.sources.cache_clear()
        launcher.digest.cache_clear()


@pytest.mark.parametrize("image", ["registry.example/vllm/vllm-openai@sha256:" + "0" * 64, ""])
def test_the_image_can_be_pinned_by_digest(image: str) -> None:
    pod = _children({"runtime": {"image": image}})["StatefulSet"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == (image or "vllm/vllm-openai:v0.33.0")
