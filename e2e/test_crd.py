"""The CRD on a real apiserver: schema, defaults, CEL rules, subresources, explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.devcluster.kube import kubectl, wait_for
from qwen_operator import api
from qwen_operator.api import kubeyaml
from testkit.invalid_cases import CASES, YAML, Case, resource, summary
from testkit.maximal import SOURCES, Source, maximal_resource

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("crd_installed")


def _apply(doc: dict[str, Any], namespace: str, *flags: str) -> Any:
    return kubectl("apply", "-n", namespace, *flags, "-f", "-", stdin=yaml.safe_dump(doc), check=False)


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_accepted_by_server_dry_run(sample: Path, namespace: str) -> None:
    out = kubectl("apply", "-n", namespace, "--dry-run=server", "-f", str(sample), check=False)
    assert out.returncode == 0, out.stderr
    assert "(server dry run)" in out.stdout


KUBECTL_CASES = [c for c in CASES if c.kubectl_reads_it and c.kind == YAML] + [
    next(c for c in CASES if c.kind == kind) for kind in dict.fromkeys(c.kind for c in CASES) if kind != YAML
]
"""kubectl for every YAML oddity (its own reading of the text comes first) and one case of each
other category; the apiserver gets all of them as text below (kubectl adds ~0.4 s a case)."""


@pytest.mark.parametrize("case", KUBECTL_CASES, ids=[c.id for c in KUBECTL_CASES])
def test_kubectl_apply_refuses_the_corpus_naming_the_field(case: Case, namespace: str) -> None:
    out = kubectl("apply", "-n", namespace, "--dry-run=server", "-f", "-", stdin=case.document(), check=False)
    assert out.returncode != 0, f"{case.id} was accepted: {out.stdout}"
    assert case.expected_server in out.stderr, out.stderr[:2000]


def test_the_apiserver_refuses_the_corpus_as_written(namespace: str, api_client: client.ApiClient) -> None:
    """Every document's text as it is, to the apiserver's own YAML reading and strict field
    validation (what a client that sends the text gets; kubectl reads duplicate keys first)."""
    accepted, unnamed = [], []
    for case in CASES:
        status, message = _create_raw(api_client, namespace, case.document())
        if status < 400:
            accepted.append(case.id)
        elif case.expected_server not in message:
            unnamed.append((case.id, case.expected_server, message[:300]))
    print(f"{len(CASES)} bad resources refused by the apiserver: {summary()}")
    assert accepted == [] and unnamed == []


def _create_raw(api_client: client.ApiClient, namespace: str, text: str) -> tuple[int, str]:
    """POST the text (application/yaml) with dryRun=All and fieldValidation=Strict."""
    path = f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{namespace}/{api.PLURAL}"
    method, url, headers, _, _ = api_client.param_serialize(
        method="POST", resource_path=path, query_params=[("dryRun", "All"), ("fieldValidation", "Strict")],
        header_params={"Content-Type": "application/yaml", "Accept": "application/json"},
        auth_settings=["BearerToken"],
    )  # fmt: skip
    resp = api_client.call_api(method, url, header_params=headers, body=text.encode())
    resp.read()  # type: ignore[no-untyped-call]
    body = json.loads(resp.data or b"{}")
    return int(resp.status), str(body.get("message", ""))


ODDITIES = """\ufeffapiVersion: serving.qwen-operator.io/v1alpha1\r
kind: QwenThinkingDeployment\r
metadata: {name: odd}\r
spec:\r
  replicas: 2.0\r
  paused: off\r
  model: {revision: 2024-01-01, servedName: '0x1F'}\r
  context: {maxModelLen: 1_0_2_4e2, minModelLen: 0x2000}\r
  sampling: {topK: 2e1, maxTokens: 0o17, presencePenalty: null}\r
"""
"""A resource the apiserver takes, written as PyYAML and Go read differently."""
FREE_FORM = """  scheduling:\r
    affinity:\r
      flags: [y, Y, yes, n, NO, off, On, true, tRUE, ~, Null, =, <<, 1:20, 08, .5, 5., -0, 1_0.5]\r
      numbers: [0o17, 017, 0b101, 0x1F, +1, 1.0e5, 1e3, 1_000, 2001-12-14t21:59:43.10-05:00]\r
      keys: {y: 1, off: 2, 1: 3, 1.5: 4, 2.0: 5}\r
      base: &b {a: 1, b: 2}\r
      merged: {<<: *b, b: 3, c: 4}\r
      merged2: {b: 3, <<: [*b, {a: 9, d: 5}]}\r
      tagged: [!!str 5, !!float 3, !!int 0x10, !!bool yes, !custom 5, !!binary aGk=]\r
      python: !!python/name:os.system x\r
"""
"""More of the same, free-form, for the two readings alone: scheduling.affinity is typed (its
fields have bounds), so this is read by both and never sent to the apiserver."""


def test_render_reads_yaml_as_kubectl_does(namespace: str) -> None:
    """YAML that PyYAML reads otherwise than Go: the CLI's reading (kubeyaml) equals kubectl's
    JSON, and the apiserver accepts the resource and stores what the CLI validated."""
    for text in (ODDITIES, ODDITIES + FREE_FORM):  # kubectl's client-side dry run checks no schema
        sent = json.loads(kubectl("create", "--dry-run=client", "-o", "json", "-f", "-", stdin=text).stdout)
        (read,) = kubeyaml.load_all(text)
        assert read["spec"] == sent["spec"]
    (read,) = kubeyaml.load_all(ODDITIES)
    out = kubectl("apply", "-n", namespace, "--dry-run=server", "-o", "json", "-f", "-", stdin=ODDITIES)
    stored = json.loads(out.stdout)["spec"]
    spec = api.parse_resource(read).spec  # and the CLI accepts it
    assert [stored["replicas"], stored["paused"], stored["model"], stored["context"]["maxModelLen"],
            stored["context"]["minModelLen"], stored["sampling"]["topK"], stored["sampling"]["maxTokens"],
            "presencePenalty" in stored["sampling"]] == [
        spec.replicas, spec.paused, {**stored["model"], "revision": spec.model.revision,
        "servedName": spec.model.served_name}, spec.context.max_model_len, spec.context.min_model_len,
        spec.sampling.top_k, spec.sampling.max_tokens, False,
    ] == [2, False, {**stored["model"], "revision": "2024-01-01", "servedName": "0x1F"}, 102400, 8192, 20, 15,
          False]  # fmt: skip


@pytest.mark.parametrize("source", SOURCES)
def test_a_resource_at_every_bound_is_accepted(source: Source, namespace: str) -> None:
    """The resource tests/unit/test_bounds.py renders (each string, list and map at its bound):
    the apiserver takes it, within the CEL rules' cost at run time (a create: `kubectl apply`
    would keep a copy in an annotation, which may hold 256 KiB)."""
    doc = maximal_resource(2, source)
    doc["metadata"] = {"name": doc["metadata"]["name"]}
    text = json.dumps(doc)
    out = kubectl(
        "create", "-n", namespace, "--dry-run=server", "-o", "name", "-f", "-", stdin=text, check=False
    )
    assert out.returncode == 0, out.stderr[:2000]


def test_empty_spec_is_defaulted_to_the_model_card(namespace: str) -> None:
    out = _apply(resource({}), namespace, "--dry-run=server", "-o", "json")
    assert out.returncode == 0, out.stderr
    spec = json.loads(out.stdout)["spec"]
    assert spec["replicas"] == 1
    assert spec["model"]["id"] == "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8"
    assert "source" not in spec["model"]
    assert spec["parallelism"] == {"tensor": 4, "pipeline": 1, "expert": False}
    assert spec["context"]["maxModelLen"] == 262144
    assert spec["context"]["minModelLen"] == 32768
    assert spec["reasoningParser"] == "deepseek_r1"
    assert spec["toolCalling"] == {"enabled": True, "parser": "hermes"}
    assert spec["sampling"] == {"temperature": 0.6, "topP": 0.95, "topK": 20, "minP": 0, "maxTokens": 32768}
    assert spec["runtime"]["gpuMemoryUtilization"] == 0.92


def test_scale_and_status_subresources(namespace: str) -> None:
    """The apiserver's part, whether or not an operator runs in this session (it may write the
    status too): paused, the resource gets no pods, so it is never Ready."""
    assert _apply(resource({"spec": {"paused": True}}), namespace).returncode == 0
    kubectl("scale", "-n", namespace, "qtd/qwen3-thinking", "--replicas=3")
    assert _get(namespace)["spec"]["replicas"] == 3

    def replaced_with_a_status() -> bool:
        """A status written through the main resource is ignored: status is a subresource.
        An operator's status write between the read and the replace is a Conflict: read again."""
        got = _get(namespace)
        got["status"] = {"phase": "Ready"}
        done = kubectl("replace", "-n", namespace, "-f", "-", stdin=json.dumps(got), check=False)
        assert done.returncode == 0 or "Conflict" in done.stderr, done.stderr
        return done.returncode == 0

    wait_for(replaced_with_a_status, 30, "a replace with no Conflict")
    assert _get(namespace)["status"].get("phase") != "Ready"
    patch = json.dumps({"status": {"replicas": 3, "selector": "a=b"}})
    kubectl(
        "patch", "-n", namespace, "qtd/qwen3-thinking", "--subresource=status", "--type=merge", "-p", patch
    )
    path = f"/apis/serving.qwen-operator.io/v1alpha1/namespaces/{namespace}/qwenthinkingdeployments"

    def mirrored() -> bool:
        """/scale reads spec.replicas, status.replicas and status.selector (whoever wrote them)."""
        status = _get(namespace)["status"]
        scale = json.loads(kubectl("get", "--raw", f"{path}/qwen3-thinking/scale").stdout)
        wanted = {k: status[k] for k in ("replicas", "selector") if k in status}
        return bool(scale["spec"]["replicas"] == 3 and scale["status"] == wanted and wanted)

    wait_for(mirrored, 30, "/scale mirroring the status")


def _get(namespace: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("get", "-n", namespace, "qtd/qwen3-thinking", "-o", "json").stdout))


def test_printer_columns_and_short_name(namespace: str) -> None:
    assert _apply(resource({}), namespace).returncode == 0
    header = kubectl("get", "qtd", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert header == ["NAME", "REPLICAS", "READY", "CONTEXT", "PHASE", "PROGRESS", "AGE", "ENDPOINT"]


def test_kubectl_explain_describes_fields() -> None:
    out = kubectl("explain", "qtd.spec.context.maxModelLen").stdout
    assert "262144" in out and "--max-model-len" in out
    out = kubectl("explain", "qwenthinkingdeployments.spec.parallelism").stdout
    assert "tensor" in out and "expert" in out
