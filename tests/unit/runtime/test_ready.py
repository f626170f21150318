"""The readiness probe: healthy, and the served model listed (what a client needs to be answered)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from qwen_runtime import ready


class FakeVllm(BaseHTTPRequestHandler):
    health: ClassVar[int] = 200
    served: ClassVar[list[str]] = ["qwen3-thinking"]
    key: ClassVar[str | None] = None

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(self.health, b"")
        elif self.path == "/v1/models":
            if self.key and self.headers.get("Authorization") != f"Bearer {self.key}":
                self._send(401, b'{"error": "Unauthorized"}')
                return
            self._send(200, json.dumps({"object": "list", "data": [{"id": m} for m in self.served]}).encode())
        else:
            self._send(404, b"")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    FakeVllm.health, FakeVllm.served, FakeVllm.key = 200, ["qwen3-thinking"], None
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeVllm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_ready_when_healthy_and_serving_the_model(port: int) -> None:
    assert ready.check(port, "qwen3-thinking", 2, None) is None
    assert ready.main(["--port", str(port), "--model", "qwen3-thinking"]) == 0


def test_not_ready_while_the_engine_starts_or_serves_another_model(port: int) -> None:
    FakeVllm.health = 503
    assert ready.check(port, "qwen3-thinking", 2, None) == "/health answered 503"
    FakeVllm.health = 200
    FakeVllm.served = ["other"]
    assert "not served" in str(ready.check(port, "qwen3-thinking", 2, None))
    assert ready.main(["--port", str(port), "--model", "qwen3-thinking"]) == 1


def test_the_api_key_comes_from_the_environment(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeVllm.key = "s3cret"
    assert ready.check(port, "qwen3-thinking", 2, None) == "/v1/models answered 401"
    monkeypatch.setenv("VLLM_API_KEY", "s3cret")
    assert ready.main(["--port", str(port), "--model", "qwen3-thinking"]) == 0


def test_no_server_is_not_ready() -> None:
    assert str(ready.check(1, "m", 1, None)).startswith("no answer")
