"""A $KUBECONFIG whose cluster is gone stops `make test` and `make demo` at once, with one
message naming the file and the server (it gave 107 "connection refused" errors). The e2e
conftest ends the run with this message before its first test (pytest.exit); the unit tests
may not import the suite (test_layout.py), so they check the message and the demo."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from e2e.devcluster import demo
from e2e.devcluster.kube import unreachable


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
current-context: dev
contexts:
- name: other
  context: {{cluster: elsewhere, user: admin}}
- name: dev
  context: {{cluster: dev, user: admin}}
clusters:
- name: elsewhere
  cluster: {{server: "https://192.0.2.1:6443"}}
- name: dev
  cluster: {{server: "{server}"}}
users:
- name: admin
  user: {{token: t}}
"""
    )
    return path


def test_a_gone_cluster_names_the_file_and_the_server(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    path = kubeconfig(tmp_path, server)
    why = unreachable(str(path), timeout=2)
    assert why is not None and str(path) in why and server in why


def test_a_listening_server_is_reachable(tmp_path: Path) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        server = f"https://127.0.0.1:{listening.getsockname()[1]}"
        assert unreachable(str(kubeconfig(tmp_path, server)), timeout=2) is None


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "kubeconfig"
    why = unreachable(str(missing))
    assert why is not None and str(missing) in why and "no such file" in why


def test_the_demo_stops_with_the_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    path = kubeconfig(tmp_path, server)
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(SystemExit) as stopped:
        demo.connect()
    assert str(path) in str(stopped.value) and server in str(stopped.value)
