"""``python3 -m qwen_runtime fetch``: download the model for the init container.

Configuration comes from the environment, set by the operator's pod template:

``QWEN_MODEL_ID``        Hugging Face repository (required),
                         e.g. ``Qwen/Qwen3-235B-A22B-Thinking-2507-FP8``
``QWEN_MODEL_REVISION``  branch, tag or commit; empty means ``main``
``QWEN_WEIGHTS_DIR``     the Hugging Face cache directory on the weights volume (required);
                         ``vllm serve MODEL_ID --download-dir`` must name the same one
``HF_TOKEN``             access token; optional (the model is public)

The files land in the hub's cache layout (``models--ORG--NAME/snapshots/COMMIT``,
``refs/REVISION``), so vLLM, given the model id and that directory, finds them
without downloading again (set ``HF_HUB_OFFLINE=1`` on the server to forbid it).

Behaviour an SRE can rely on:

* a no-op, without touching the network, when the marker file
  ``QWEN_WEIGHTS_DIR/.qwen-runtime-fetch--ORG--NAME.json`` names the same
  revision and every file it lists is in the snapshot with its recorded size;
* resumable: ``huggingface_hub`` keeps partial blobs (``*.incomplete``) and
  skips finished files, so a restarted init container continues where it stopped;
* plain progress lines every ``PROGRESS_SECONDS`` (bytes, percent, rate,
  ETA, files), readable in ``kubectl logs``; no carriage-return bars;
* a clear one-line error and a distinct exit code when something is wrong
  (see ``EXIT_*``).

``huggingface_hub`` ships in the vLLM image; it is imported lazily because it
is not a dependency of this package.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_MODEL_ID = "QWEN_MODEL_ID"
ENV_REVISION = "QWEN_MODEL_REVISION"
ENV_WEIGHTS_DIR = "QWEN_WEIGHTS_DIR"
ENV_TOKEN = "HF_TOKEN"

MARKER_PREFIX = ".qwen-runtime-fetch--"
PROGRESS_SECONDS = 15.0
MAX_WORKERS = 8

EXIT_OK = 0
EXIT_FAILED = 1  # network or unexpected error; the kubelet retries the init container
EXIT_CONFIG = 2  # a required variable is missing
EXIT_REPO_NOT_FOUND = 3
EXIT_REVISION_NOT_FOUND = 4
EXIT_ACCESS_DENIED = 5  # token refused, or a gated repository the token may not read
EXIT_NO_SPACE = 6


class FetchError(Exception):
    """A failure with a message for the log and an exit code for the kubelet."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Request:
    """What to download and where."""

    model_id: str
    revision: str
    target: Path
    token: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Request:
        """Read the ``ENV_*`` variables; FetchError(EXIT_CONFIG) when one is missing."""
        missing = [name for name in (ENV_MODEL_ID, ENV_WEIGHTS_DIR) if not env.get(name)]
        if missing:
            raise FetchError(f"missing environment variable(s): {', '.join(missing)}", EXIT_CONFIG)
        return cls(
            model_id=env[ENV_MODEL_ID],
            revision=env.get(ENV_REVISION) or "main",
            target=Path(env[ENV_WEIGHTS_DIR]),
            token=env.get(ENV_TOKEN) or None,
        )


def log(message: str) -> None:
    """One progress line on stdout, flushed at once (``kubectl logs`` follows it live)."""
    print(f"[qwen-runtime fetch] {message}", flush=True)


def main(argv: Sequence[str] = ()) -> int:
    """Entry point of ``python3 -m qwen_runtime fetch``; returns the exit code."""
    if list(argv)[:1] in (["--help"], ["-h"]):
        print(f"usage: python3 -m qwen_runtime fetch\n{__doc__}")
        return EXIT_OK
    if argv:
        log(
            f"fetch takes no arguments (got {' '.join(argv)}); configure it with {ENV_MODEL_ID}, "
            f"{ENV_REVISION}, {ENV_WEIGHTS_DIR}, {ENV_TOKEN}"
        )
        return EXIT_CONFIG
    try:
        request = Request.from_env(os.environ)
        fetch(request)
    except FetchError as error:
        log(f"ERROR: {error}")
        return error.code
    return EXIT_OK


def fetch(request: Request, hub: Any = None) -> None:
    """Make ``request.target`` hold the complete model; a no-op when it already does."""
    if is_complete(request):
        where = f"{request.model_id}@{request.revision}"
        log(f"{where} already complete in {request.target}; nothing to do")
        return
    hub = hub if hub is not None else _import_hub()
    request.target.mkdir(parents=True, exist_ok=True)
    commit, files = _resolve(hub, request)
    total = sum(files.values())
    log(
        f"{request.model_id}@{request.revision} (commit {commit}): {len(files)} files, "
        f"{_gb(total)} GB -> {request.target}"
    )
    _check_space(request.target, snapshot_dir(request, commit), files)
    with _Progress(request, commit, files):
        path = _call(
            hub,
            request,
            lambda: hub.snapshot_download(
                request.model_id,
                revision=request.revision,
                cache_dir=str(request.target),
                token=request.token,
                max_workers=MAX_WORKERS,
            ),
        )
    commit = Path(path).name
    _write_marker(request, commit, files)
    log(f"done: {len(files)} files, {_gb(total)} GB, commit {commit}")


def repo_dir(request: Request) -> Path:
    """The model's directory in the hub cache layout."""
    return request.target / ("models--" + request.model_id.replace("/", "--"))


def snapshot_dir(request: Request, commit: str) -> Path:
    """Where the files of ``commit`` appear (symlinks into ``blobs/``)."""
    return repo_dir(request) / "snapshots" / commit


def marker_path(request: Request) -> Path:
    """The completion marker of this model, next to the cache's model directories."""
    return request.target / (MARKER_PREFIX + request.model_id.replace("/", "--") + ".json")


def is_complete(request: Request) -> bool:
    """True when the marker matches the request and every recorded file has its size."""
    try:
        marker = json.loads(marker_path(request).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("modelId") != request.model_id or marker.get("revision") != request.revision:
        return False
    files, commit = marker.get("files"), marker.get("commit")
    if not isinstance(files, dict) or not files or not isinstance(commit, str):
        return False
    snapshot = snapshot_dir(request, commit)
    return all(_size(snapshot / name) == size for name, size in files.items())


def _import_hub() -> Any:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import huggingface_hub  # type: ignore[import-not-found,unused-ignore]
        import huggingface_hub.errors  # type: ignore[import-not-found,unused-ignore]
    except ImportError as error:
        raise FetchError(f"huggingface_hub is not installed: {error}", EXIT_FAILED) from error
    return huggingface_hub


def _resolve(hub: Any, request: Request) -> tuple[str, dict[str, int]]:
    """The commit the revision points at, and each file's size in bytes."""
    info = _call(
        hub,
        request,
        lambda: hub.HfApi().model_info(
            request.model_id, revision=request.revision, files_metadata=True, token=request.token
        ),
    )
    files = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
    if not files:
        raise FetchError(f"{request.model_id}@{request.revision} lists no files", EXIT_FAILED)
    return str(info.sha), files


def _call(hub: Any, request: Request, action: Callable[[], Any]) -> Any:
    """Run a hub call, turning its exceptions into FetchErrors with a clear message."""
    errors = hub.errors
    where = f"{request.model_id}@{request.revision}"
    try:
        return action()
    except errors.GatedRepoError as error:
        raise FetchError(
            f"{where}: gated repository, the token may not read it "
            f"(accept the terms on the model page, check {ENV_TOKEN}): {_first(error)}",
            EXIT_ACCESS_DENIED,
        ) from error
    except errors.RevisionNotFoundError as error:
        raise FetchError(
            f"{where}: revision {request.revision!r} does not exist (check {ENV_REVISION}): {_first(error)}",
            EXIT_REVISION_NOT_FOUND,
        ) from error
    except errors.RepositoryNotFoundError as error:
        raise FetchError(
            f"{where}: repository not found, or private and the token may not read it "
            f"(check {ENV_MODEL_ID} and {ENV_TOKEN}): {_first(error)}",
            EXIT_REPO_NOT_FOUND,
        ) from error
    except errors.HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            raise FetchError(
                f"{where}: token refused (HTTP {status}; check {ENV_TOKEN}): {_first(error)}",
                EXIT_ACCESS_DENIED,
            ) from error
        raise FetchError(f"{where}: download failed (HTTP {status}): {_first(error)}", EXIT_FAILED) from error
    except OSError as error:
        if error.errno == 28:
            raise FetchError(f"no space left on {request.target}: {error}", EXIT_NO_SPACE) from error
        raise FetchError(f"{where}: {error}", EXIT_FAILED) from error


def _first(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _check_space(target: Path, snapshot: Path, files: Mapping[str, int]) -> None:
    missing = sum(size - min(size, _size(snapshot / name) or 0) for name, size in files.items())
    free = shutil.disk_usage(target).free
    if missing > free:
        raise FetchError(
            f"{target} needs {_gb(missing)} GB more but has {_gb(free)} GB free; "
            "enlarge spec.model.cache.size",
            EXIT_NO_SPACE,
        )


def _write_marker(request: Request, commit: str, files: Mapping[str, int]) -> None:
    marker = {
        "modelId": request.model_id,
        "revision": request.revision,
        "commit": commit,
        "files": dict(files),
        "completedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = marker_path(request)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(marker, indent=1, sort_keys=True))
    tmp.replace(path)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f}"


class _Progress:
    """Prints a progress line every ``PROGRESS_SECONDS`` while the download runs."""

    def __init__(
        self, request: Request, commit: str, files: Mapping[str, int], interval: float = PROGRESS_SECONDS
    ):
        self.snapshot, self.blobs = snapshot_dir(request, commit), repo_dir(request) / "blobs"
        self.files, self.interval = dict(files), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fetch-progress", daemon=True)
        self._start = time.monotonic()
        self._start_bytes = 0

    def __enter__(self) -> _Progress:
        self._start_bytes = self.measure()[0]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def measure(self) -> tuple[int, int]:
        """(bytes on disk, including partial downloads; files complete)."""
        done_bytes, done_files = 0, 0
        for name, size in self.files.items():
            have = _size(self.snapshot / name) or 0
            if have == size:
                done_files += 1
            done_bytes += min(have, size)
        if self.blobs.is_dir():
            for path in self.blobs.glob("*.incomplete"):
                done_bytes += _size(path) or 0
        return done_bytes, done_files

    def line(self) -> str:
        """One human-readable progress line."""
        done, files = self.measure()
        total = sum(self.files.values()) or 1
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = max(done - self._start_bytes, 0) / elapsed
        eta = f"{(total - done) / rate / 60:.0f} min" if rate > 0 else "unknown"
        return (
            f"{_gb(done)}/{_gb(total)} GB ({100 * done / total:.1f}%), "
            f"{rate / 1e6:.0f} MB/s, ETA {eta}, {files}/{len(self.files)} files"
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            log(self.line())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
