"""Every sample, rendered by the operator, started as a real vLLM (the CPU build): probes, API.

One server per sample serves every check of that sample (pytest groups the tests by the
module-scoped parameter), and the last check stops it with SIGTERM. What differs from the
rendered container is listed by `adapt` (e2e/devcluster/realvllm/server.py) and printed at the
end of the run with the figures; the tiny checkpoint (checkpoint.py) answers predictably:
`think</think>OK` to any chat, and letters ranked by likelihood after `?`.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e.devcluster.realvllm import checkpoint, kubelet
from e2e.devcluster.realvllm.figures import Figures
from e2e.devcluster.realvllm.server import RealServer, adapt
from qwen_operator.api import QwenThinkingDeployment
from qwen_operator.children import launcher, render
from qwen_runtime import integrity
from testkit.metric_names import exposed, referenced_vllm_metrics
from tests.tools.realvllm import rendered

pytestmark = pytest.mark.realvllm

SAMPLES = rendered.samples()
OPENAI_CLIENT = """
import json, sys
from openai import OpenAI
ask = json.load(sys.stdin)
client = OpenAI(base_url=ask["base"], api_key=ask["key"] or "none")
reply = client.chat.completions.create(model=ask["model"], messages=[{"role": "user", "content": "Hi"}])
message = reply.choices[0].message
names = ("content", "reasoning", "reasoning_content")
print(json.dumps({name: getattr(message, name, None) for name in names}))
"""
"""What a program using the openai package reads from a chat completion (run in the venv)."""


@dataclass
class Served:
    """A sample's rendered server container, running."""

    sample: str
    resource: QwenThinkingDeployment
    pod: rendered.Rendered
    server: RealServer

    @property
    def container(self) -> dict[str, Any]:
        return self.pod.container

    @property
    def context(self) -> int:
        return rendered.context_of(self.container)

    @property
    def model(self) -> str:
        return render.served_name(self.resource)

    @property
    def api_key(self) -> str | None:
        return rendered.TEST_API_KEY if self.resource.spec.auth.api_key_secret_ref else None

    def request(self, path: str, body: dict[str, Any] | None = None, key: bool = True) -> tuple[int, Any]:
        """(HTTP status, JSON or text) of GET `path`, or POST of `body` as JSON."""
        headers = {"Content-Type": "application/json"}
        if key and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server.url(path), data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                status, text = int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        return status, (json.loads(text) if text.startswith(("{", "[")) else text)

    def stream(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The JSON events of a server-sent event stream, until `[DONE]`."""
        status, text = self.request(path, body)
        assert status == 200, f"{path}: {status} {text}"
        events = [line.removeprefix("data: ") for line in str(text).splitlines() if line.startswith("data: ")]
        assert events and events[-1] == "[DONE]", text
        return [json.loads(event) for event in events[:-1]]

    def ok(self, path: str, body: dict[str, Any] | None = None) -> Any:
        status, answer = self.request(path, body)
        assert status == 200, f"{path}: {status} {answer}"
        return answer


@pytest.fixture(scope="module", params=sorted(SAMPLES))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, vllm_cpu: Path,
    tiny_checkpoint: Path, figures: Figures,
) -> Iterator[Served]:  # fmt: skip
    sample: str = request.param
    pod = rendered.rendering(SAMPLES[sample])
    container = pod.container
    budget = rendered.kv_budget_gib(container)
    launch = adapt(pod.pod_spec, venv_bin=vllm_cpu.parent, checkpoint=tiny_checkpoint,
                   workdir=tmp_path_factory.mktemp(sample), secret=rendered.secret, configmap=pod.configmap,
                   kv_cache_gib=budget)  # fmt: skip
    server = RealServer(launch).start()
    try:
        healthy = server.wait_started(kubelet.Probe.of(container, "startupProbe"))
        capacity = re.search(r"CPU KV cache size: ([\d,]+) tokens", server.log())
        figures.add(sample, context=rendered.context_of(container), kv_gib=budget,
                    kv_tokens=int(capacity.group(1).replace(",", "")) if capacity else None,
                    healthy_s=round(healthy, 1), swaps=[str(s) for s in launch.swaps])  # fmt: skip
        yield Served(sample, SAMPLES[sample], pod, server)
    finally:
        server.kill()


def test_the_rendered_probes_pass(served: Served) -> None:
    """Startup passed within its window (the fixture); readiness and liveness pass as rendered."""
    startup = kubelet.Probe.of(served.container, "startupProbe")
    assert served.server.healthy_after is not None and served.server.healthy_after < startup.window
    for kind in ("readinessProbe", "livenessProbe"):
        probe = kubelet.Probe.of(served.container, kind)
        assert served.server.probe(probe), f"{probe} failed:\n{served.server.log_tail()}"


def test_it_started_through_the_launchers_check_of_its_sources(served: Served) -> None:
    """The pod's digest was in the environment, so the launcher hashed its mounted sources (links
    through the kubelet's `..data`) before it started vLLM, and they matched: the server is up. A
    tampered source is refused (test_launcher.py)."""
    launch = served.server.launch
    assert launch.env[integrity.DIGEST_VAR] == launcher.digest()
    package = Path(launch.env["PYTHONPATH"]) / "qwen_runtime"
    assert (package / "..data").is_symlink() and (package / "__main__.py").is_symlink()
    assert integrity.mismatch(package, launcher.digest()) is None


def test_models_reports_the_served_name_and_the_effective_context(served: Served) -> None:
    (model,) = served.ok("/v1/models")["data"]
    assert (model["id"], model["max_model_len"]) == (served.model, served.context)


def test_the_api_key_guards_the_api_not_the_probes(served: Served) -> None:
    status, _ = served.request("/v1/models", key=False)
    assert status == (401 if served.api_key else 200)


def test_chat_reasoning_as_the_spec_says(served: Served) -> None:
    """With a reasoning parser the thinking is in `message.reasoning` (not `reasoning_content`);
    without one (Qwen-Agent) the content is the raw text, `</think>` included."""
    answer = served.ok("/v1/chat/completions", {"model": served.model,
                                                "messages": [{"role": "user", "content": "Hi"}]})  # fmt: skip
    message = answer["choices"][0]["message"]
    assert "reasoning_content" not in message, message
    thought, reply = checkpoint.REASONING, checkpoint.ANSWER
    if served.resource.spec.reasoning_parser == "none":
        assert (message["content"], message.get("reasoning")) == (f"{thought}</think>{reply}", None)
    else:
        assert (message["reasoning"], message["content"]) == (thought, reply)


def test_streamed_chat_splits_the_same_way(served: Served) -> None:
    """Streamed, the thinking comes as `delta.reasoning` (never `delta.reasoning_content`)."""
    body = {"model": served.model, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    deltas = [chunk["choices"][0]["delta"] for chunk in served.stream("/v1/chat/completions", body)
              if chunk.get("choices")]  # fmt: skip
    assert not any("reasoning_content" in delta for delta in deltas), deltas
    thought = "".join(delta.get("reasoning") or "" for delta in deltas)
    reply = "".join(delta.get("content") or "" for delta in deltas)
    if served.resource.spec.reasoning_parser == "none":
        assert (thought, reply) == ("", f"{checkpoint.REASONING}</think>{checkpoint.ANSWER}")
    else:
        assert (thought, reply) == (checkpoint.REASONING, checkpoint.ANSWER)


def test_what_an_openai_client_reads(served: Served, vllm_cpu: Path) -> None:
    """The openai package (in the venv, vLLM's dependency) exposes `reasoning` as an extra field;
    `reasoning_content`, which Qwen-Agent and older examples read, is absent."""
    ask = {"base": served.server.url("/v1"), "key": served.api_key, "model": served.model}
    done = subprocess.run([str(vllm_cpu), "-c", OPENAI_CLIENT], input=json.dumps(ask), capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    read = json.loads(done.stdout)
    assert read["reasoning_content"] is None
    if served.resource.spec.reasoning_parser == "none":
        assert read["reasoning"] is None and "</think>" in read["content"]
    else:
        assert (read["reasoning"], read["content"]) == (checkpoint.REASONING, checkpoint.ANSWER)


def test_sampling_defaults_reach_a_request_that_omits_them(served: Served) -> None:
    """vLLM logs the defaults it took from --override-generation-config (the checkpoint has none
    of its own), and a request without top_k samples only among the 20 likeliest letters (after
    the default presence penalty, where set); the same request with top_k -1 reaches further
    (so the check can fail)."""
    expected = render.generation_config(served.resource.spec)
    expected["max_tokens"] = expected.pop("max_new_tokens")
    logged = re.search(r"sampling parameters have been overridden by .*?: `(\{[^`]*\})`", served.server.log())
    assert logged is not None, served.server.log_tail()
    assert ast.literal_eval(logged.group(1)) == expected

    def ranks(**extra: int) -> list[int]:
        body = {"model": served.model, "prompt": checkpoint.SAMPLER_PROMPT, "max_tokens": 240, **extra}
        text = served.ok("/v1/completions", body)["choices"][0]["text"]
        assert text[1::2] == checkpoint.SAMPLER_PROMPT * (len(text) // 2), text
        return [checkpoint.CANDIDATES.index(letter) for letter in text[0::2]]

    top_k, penalty = int(expected["top_k"]), float(expected.get("presence_penalty", 0.0))
    default = ranks()
    assert not beyond_top_k(default, top_k, penalty) and len(set(default)) > 5, default
    assert beyond_top_k(ranks(top_k=-1), top_k, penalty)


def beyond_top_k(ranks: list[int], top_k: int, presence_penalty: float) -> list[int]:
    """The draws that top-k could not have made: at each step vLLM penalises the letters already
    written, then keeps the `top_k` highest logits (ties included)."""
    beyond = []
    for step, rank in enumerate(ranks):
        seen = set(ranks[:step])
        logits = [checkpoint.candidate_logit(r) - (presence_penalty if r in seen else 0.0)
                  for r in range(len(checkpoint.CANDIDATES))]  # fmt: skip
        if logits[rank] < sorted(logits, reverse=True)[top_k - 1]:
            beyond.append(step)
    return beyond


def test_every_metric_the_repository_references_is_served(served: Served) -> None:
    referenced = referenced_vllm_metrics()
    assert referenced, "no vllm: metric referenced anywhere (the docs list those worth watching)"
    status, text = served.request("/metrics")
    assert status == 200
    missing = {name: files for name, files in referenced.items() if name not in exposed(text)}
    assert not missing, f"referenced but not served by vLLM: {missing}"


def test_sigterm_while_serving_exits_cleanly_without_a_record(served: Served) -> None:
    """The kubelet's stop: SIGTERM to the launcher, which forwards it; vLLM drains and exits 0."""
    assert served.server.stop() == 0, served.server.log_tail()
    assert served.server.termination_log() == b""
    message = kubelet.termination_message(served.container, b"", served.server.log().encode(), failed=False)
    assert message == ""
