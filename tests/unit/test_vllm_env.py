"""The cached vLLM venv: where it lives, and that only a checked install is stamped ready."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.tools.contract import vllm_env


@pytest.fixture
def venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vllm"
    monkeypatch.setenv(vllm_env.VENV_ENV, str(path))
    return path


def _fake_python(venv: Path) -> None:
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / "bin" / "python").write_text("")


def test_default_location_is_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(vllm_env.VENV_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert vllm_env.venv_dir() == tmp_path / "qwen-operator" / f"vllm-{vllm_env.VLLM_VERSION}"
    assert vllm_env.venv_python() == vllm_env.venv_dir() / "bin" / "python"


def test_no_stamp_is_not_ready(venv: Path) -> None:
    _fake_python(venv)
    assert not vllm_env.is_ready()
    vllm_env.stamp_path().write_text("{}")
    assert vllm_env.is_ready()


def test_stamped_install_is_reused(venv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_python(venv)
    vllm_env.stamp_path().write_text("{}")

    def no_install(_venv: Path) -> None:
        raise AssertionError("a stamped install must not be reinstalled")

    monkeypatch.setattr(vllm_env, "_install", no_install)
    assert vllm_env.ensure() == venv / "bin" / "python"


def test_half_install_is_finished_then_stamped(venv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_python(venv)  # a venv without a stamp: an interrupted install
    installs: list[Path] = []
    monkeypatch.setattr(vllm_env, "_install", installs.append)
    monkeypatch.setattr(vllm_env, "_import_check", lambda _v: {"version": vllm_env.VLLM_VERSION})
    vllm_env.ensure()
    assert installs == [venv]
    assert vllm_env.is_ready()


def test_broken_install_is_redone_once_then_fails_unstamped(
    venv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installs: list[Path] = []

    def install(path: Path) -> None:
        installs.append(path)
        _fake_python(path)

    def check(_venv: Path) -> Any:
        return None

    monkeypatch.setattr(vllm_env, "_install", install)
    monkeypatch.setattr(vllm_env, "_import_check", check)
    with pytest.raises(SystemExit, match="does not import"):
        vllm_env.ensure()
    assert installs == [venv, venv]
    assert not vllm_env.is_ready()
