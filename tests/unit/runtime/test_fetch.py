"""``python3 -m qwen_runtime fetch`` against a fake hub (no network) and the real hub's API."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import huggingface_hub
import huggingface_hub.errors as hub_errors
import pytest

from qwen_runtime import fetch

MODEL = "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8"
FILES = {
    "config.json": b"{}",
    "model-00001-of-00002.safetensors": b"x" * 300,
    "model-00002.safetensors": b"y" * 50,
}


class FakeHub:
    """Just enough of ``huggingface_hub`` for ``fetch``: model_info and snapshot_download."""

    errors = hub_errors

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def HfApi(self) -> Any:
        return SimpleNamespace(model_info=self.model_info)

    def model_info(self, repo_id: str, *, revision: str, files_metadata: bool, token: str | None) -> Any:
        self.calls.append("model_info")
        if self.fail is not None:
            raise self.fail
        siblings = [SimpleNamespace(rfilename=n, size=len(d)) for n, d in FILES.items()]
        return SimpleNamespace(sha="0123abcd", siblings=siblings)

    def snapshot_download(
        self, repo_id: str, *, revision: str, cache_dir: str, token: str | None, max_workers: int
    ) -> str:
        """Writes the hub's cache layout: blobs, a snapshot of links to them, a ref."""
        self.calls.append(f"snapshot_download@{revision}")
        repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
        snapshot = repo / "snapshots" / "0123abcd"
        for folder in (repo / "blobs", snapshot, repo / "refs"):
            folder.mkdir(parents=True, exist_ok=True)
        for index, (name, data) in enumerate(FILES.items()):
            blob = repo / "blobs" / f"blob{index}"
            blob.write_bytes(data)
            (snapshot / name).unlink(missing_ok=True)
            (snapshot / name).symlink_to(blob)
        (repo / "refs" / revision).write_text("0123abcd")
        return str(snapshot)


def http_error(cls: type[Exception], status: int) -> Exception:
    response = SimpleNamespace(headers={}, status_code=status, request=None)
    return cls(f"{status} Client Error. Repository Not Found for url", response=response)


def request(tmp_path: Path, revision: str = "main") -> fetch.Request:
    return fetch.Request(MODEL, revision, tmp_path / "weights", None)


def test_downloads_into_the_hub_cache_then_is_a_no_op_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = FakeHub()
    fetch.fetch(request(tmp_path), hub)
    assert hub.calls == ["model_info", "snapshot_download@main"]
    marker = json.loads(fetch.marker_path(request(tmp_path)).read_text())
    assert marker["commit"] == "0123abcd"
    assert marker["files"] == {n: len(d) for n, d in FILES.items()}

    def no_hub() -> Any:
        raise AssertionError("a complete download must not import or call the hub")

    monkeypatch.setattr(fetch, "_import_hub", no_hub)
    fetch.fetch(request(tmp_path))
    assert "already complete" in capsys.readouterr().out


def test_truncated_file_or_other_revision_downloads_again(tmp_path: Path) -> None:
    fetch.fetch(request(tmp_path), FakeHub())
    snapshot = fetch.snapshot_dir(request(tmp_path), "0123abcd")
    (snapshot / "model-00002.safetensors").resolve().write_bytes(b"y")
    hub = FakeHub()
    fetch.fetch(request(tmp_path), hub)
    assert "snapshot_download@main" in hub.calls
    hub = FakeHub()
    fetch.fetch(request(tmp_path, revision="v2"), hub)
    assert hub.calls, "a different revision is not the files on disk"


@pytest.mark.parametrize(
    ("error", "code", "hint"),
    [
        (http_error(hub_errors.RepositoryNotFoundError, 401), fetch.EXIT_REPO_NOT_FOUND, "QWEN_MODEL_ID"),
        (
            http_error(hub_errors.RevisionNotFoundError, 404),
            fetch.EXIT_REVISION_NOT_FOUND,
            "QWEN_MODEL_REVISION",
        ),
        (http_error(hub_errors.GatedRepoError, 403), fetch.EXIT_ACCESS_DENIED, "HF_TOKEN"),
        (http_error(hub_errors.HfHubHTTPError, 401), fetch.EXIT_ACCESS_DENIED, "HF_TOKEN"),
        (http_error(hub_errors.HfHubHTTPError, 503), fetch.EXIT_FAILED, "HTTP 503"),
    ],
)
def test_hub_errors_exit_with_a_clear_message(
    error: Exception,
    code: int,
    hint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(fetch.ENV_MODEL_ID, MODEL)
    monkeypatch.setenv(fetch.ENV_WEIGHTS_DIR, str(tmp_path / "weights"))
    monkeypatch.setenv(fetch.ENV_TOKEN, "hf_refused")
    monkeypatch.setattr(fetch, "_import_hub", lambda: FakeHub(fail=error))
    assert fetch.main([]) == code
    out = capsys.readouterr().out
    assert "ERROR" in out
    assert hint in out
    assert "hf_refused" not in out, "never print the token"


def test_missing_configuration_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(fetch.ENV_MODEL_ID, raising=False)
    monkeypatch.delenv(fetch.ENV_WEIGHTS_DIR, raising=False)
    assert fetch.main([]) == fetch.EXIT_CONFIG
    assert "QWEN_MODEL_ID" in capsys.readouterr().out


def test_not_enough_disk_space_exits_6(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=100, used=90, free=10))
    hub = FakeHub()
    with pytest.raises(fetch.FetchError) as raised:
        fetch.fetch(request(tmp_path), hub)
    assert raised.value.code == fetch.EXIT_NO_SPACE
    assert "snapshot_download" not in " ".join(hub.calls)


def test_progress_line_counts_partial_downloads(tmp_path: Path) -> None:
    req = request(tmp_path)
    snapshot, blobs = fetch.snapshot_dir(req, "c0ffee"), fetch.repo_dir(req) / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    (snapshot / "config.json").write_bytes(FILES["config.json"])
    (blobs / "9f86d081884c7d65.incomplete").write_bytes(b"x" * 148)
    sizes = {n: len(d) for n, d in FILES.items()}
    line = fetch._Progress(req, "c0ffee", sizes).line()
    assert line.startswith("0.0/0.0 GB (42.6%)"), line
    assert line.endswith("1/3 files"), line


def test_fetch_matches_the_real_huggingface_hub_api() -> None:
    """The calls fetch makes exist with these parameters in the installed huggingface_hub."""
    download = inspect.signature(huggingface_hub.snapshot_download).parameters
    assert {"revision", "cache_dir", "token", "max_workers"} <= set(download)
    info = inspect.signature(huggingface_hub.HfApi.model_info).parameters
    assert {"revision", "files_metadata", "token"} <= set(info)
    assert {"rfilename", "size"} <= set(inspect.signature(huggingface_hub.hf_api.RepoSibling).parameters)
    folder = huggingface_hub.file_download.repo_folder_name(repo_id=MODEL, repo_type="model")
    assert fetch.repo_dir(fetch.Request(MODEL, "main", Path("/c"), None)) == Path("/c") / folder
    assert issubclass(hub_errors.GatedRepoError, hub_errors.RepositoryNotFoundError)
    assert issubclass(hub_errors.RepositoryNotFoundError, hub_errors.HfHubHTTPError)
    assert issubclass(hub_errors.RevisionNotFoundError, hub_errors.HfHubHTTPError)
