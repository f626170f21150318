"""Render a QwenThinkingDeployment into its child manifests: a pure function.

The Python side decides every value (argv, env, probes, resources); the Jinja2 templates
only lay them out. Templates use StrictUndefined, and the result is parsed and checked,
so a template mistake fails here rather than at the apiserver.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2
import yaml

from qwen_operator import api
from qwen_operator.api import QwenThinkingDeployment, QwenThinkingDeploymentSpec
from qwen_operator.api.rules import ApiObject
from qwen_operator.api.vocabulary import (
    API_VERSION,
    COMPONENT_LABEL,
    FETCH_CONTAINER,
    INFERENCE_POOL_API,
    INSTANCE_LABEL,
    KIND,
    LAUNCHER_ANNOTATION,
    LWS_KIND,
    LWS_LEADER_ADDRESS_VAR,
    LWS_PARTITION_PATH,
    LWS_WORKER_INDEX_VAR,
    MAX_MODEL_LEN_FLAG,
    QUEUE_METRIC,
    SCALED_OBJECT_API,
    TEMPLATE_ANNOTATION,
    Component,
    labels,
    leader_labels,
    selector_labels,
)
from qwen_operator.children import (
    alerting,
    compile_cache,
    launcher,
    placement,
    registry,
    replicas,
    security,
    stopping,
)
from qwen_runtime.argv import GPU_MEMORY_UTILIZATION, SHUTDOWN_TIMEOUT
from qwen_runtime.engine import ENGINE_READY_TIMEOUT_S, ENGINE_READY_TIMEOUT_VAR
from qwen_runtime.fetch import EXIT_ACCESS_DENIED, EXIT_CONFIG, EXIT_REPO_NOT_FOUND, EXIT_REVISION_NOT_FOUND
from qwen_runtime.ready import API_KEY_VAR

CONTAINER_PORT = 8000
WEIGHTS_MOUNT = "/models"
HF_CACHE = f"{WEIGHTS_MOUNT}/hub"
SHM_SIZE = "16Gi"

DEFAULT_REQUESTS = {"cpu": "8", "memory": "96Gi"}
DEFAULT_LIMITS = {"memory": "256Gi"}
DEFAULT_PROBES: dict[str, dict[str, int]] = {
    "startup": {"periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 270},
    "readiness": {
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
        "successThreshold": 1,
    },
    "liveness": {"periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 5},
}
DOWNLOAD_BACKOFF_LIMIT = 6
"""Retries of the shared download (Kubernetes' default): each resumes the partial files."""
PERMANENT_FETCH_EXITS = (EXIT_CONFIG, EXIT_REPO_NOT_FOUND, EXIT_REVISION_NOT_FOUND, EXIT_ACCESS_DENIED)
"""`qwen_runtime fetch` exit codes no retry can cure: the Job fails at once (podFailurePolicy)."""
SCALE_DOWN_POLICY = {"type": "Pods", "value": 1, "periodSeconds": 300}
"""After the stabilization window, one replica at a time, five minutes apart: each drains its
requests (and holds 4 GPUs) that a new one would take tens of minutes to replace."""


class RenderError(RuntimeError):
    """The rendered manifests are not what the renderer meant: a bug, never user input."""


def coerce(resource: QwenThinkingDeployment | Mapping[str, Any]) -> QwenThinkingDeployment:
    """Accept a parsed resource or a raw dict (validated, raising api.InvalidResource)."""
    if isinstance(resource, QwenThinkingDeployment):
        return resource
    return api.parse_resource(dict(resource))


def workload_kind(spec: QwenThinkingDeploymentSpec) -> str:
    """What runs the replicas: a StatefulSet, or a LeaderWorkerSet of pipeline pods a replica."""
    return LWS_KIND if multi_node(spec) else "StatefulSet"


def multi_node(spec: QwenThinkingDeploymentSpec) -> bool:
    return spec.parallelism.pipeline > 1


def headless_name(name: str) -> str:
    return f"{name}-headless"


def endpoint(res: QwenThinkingDeployment) -> str:
    return f"http://{res.metadata.name}.{res.metadata.namespace}.svc:{res.spec.service.port}/v1"


def served_name(res: QwenThinkingDeployment) -> str:
    return res.spec.model.served_name or res.metadata.name


def generation_config(spec: QwenThinkingDeploymentSpec) -> dict[str, float | int]:
    """The sampling block under vLLM's generation-config key names."""
    s = spec.sampling
    out: dict[str, float | int] = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "min_p": s.min_p,
    }
    if s.presence_penalty is not None:
        out["presence_penalty"] = s.presence_penalty
    if s.max_tokens is not None:
        out["max_new_tokens"] = s.max_tokens
    return out


def pvc_source(spec: QwenThinkingDeploymentSpec) -> api.PvcSource | None:
    """The user's PVC of weights; None means download from Hugging Face (the default)."""
    source = spec.model.source
    return None if source is None else source.pvc


def shared_cache(spec: QwenThinkingDeploymentSpec) -> bool:
    """One download into one ReadWriteMany claim (model.cache.mode Shared, Hugging Face source)."""
    return pvc_source(spec) is None and spec.model.cache.mode == "Shared"


def service_account_name(name: str) -> str:
    """The server pods' own ServiceAccount (children/templates/serviceaccount.yaml.j2)."""
    return f"{name}-server"


def weights_claim_name(name: str) -> str:
    return f"{name}-weights"


def download_job_name(name: str) -> str:
    """At most 60 characters (names are at most 52): a Job's name is also its pods' job-name label."""
    return f"{name}-weights"


def model_argument(spec: QwenThinkingDeploymentSpec) -> str:
    """What `vllm serve` gets as its model: the hub id, or the directory on the user's PVC."""
    pvc = pvc_source(spec)
    if pvc is not None:
        return f"{WEIGHTS_MOUNT}/{pvc.path.strip('/')}".rstrip("/")
    return spec.model.id


def multi_node_args(pipeline: int, worker: bool) -> list[str]:
    """vLLM's multiprocessing multi-node form (no Ray): every pod of a group runs the same
    `vllm serve` with the group's size and the leader's address (LWS sets LWS_LEADER_ADDRESS in
    each container); the leader is node rank 0 and serves the API, a worker takes its index in
    the group (LWS_WORKER_INDEX) as its rank and runs headless. Kubernetes expands `$(VAR)`."""
    if pipeline == 1:
        return []
    args = ["--pipeline-parallel-size", str(pipeline), "--nnodes", str(pipeline)]
    args += ["--node-rank", f"$({LWS_WORKER_INDEX_VAR})" if worker else "0"]
    args += ["--master-addr", f"$({LWS_LEADER_ADDRESS_VAR})"]
    return [*args, "--headless"] if worker else args


def server_argv(
    resource: QwenThinkingDeployment | Mapping[str, Any],
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
    worker: bool = False,
) -> list[str]:
    """The server container's command: the launcher, then `vllm serve` with every managed flag.

    `max_model_len` and `gpu_memory_utilization` are the values in force (the out-of-memory
    cures may have lowered them); by default the spec's. `worker`: a pipeline group's headless
    worker (the leader's command is the default one)."""
    res = coerce(resource)
    spec = res.spec
    context = max_model_len if max_model_len is not None else spec.context.max_model_len
    utilization = gpu_memory_utilization or spec.runtime.gpu_memory_utilization
    args = ["vllm", "serve", model_argument(spec), "--served-model-name", served_name(res)]
    args += ["--host", "0.0.0.0", "--port", str(CONTAINER_PORT)]
    args += [
        "--tensor-parallel-size",
        str(spec.parallelism.tensor),
        MAX_MODEL_LEN_FLAG,
        str(context),
    ]
    if spec.parallelism.expert:
        args.append("--enable-expert-parallel")
    args += multi_node_args(spec.parallelism.pipeline, worker)
    args += [GPU_MEMORY_UTILIZATION, f"{utilization:g}"]
    args += [SHUTDOWN_TIMEOUT, str(spec.disruption.drain_seconds)]  # stopping.grace_seconds covers it
    if spec.runtime.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", spec.runtime.kv_cache_dtype]
    if spec.reasoning_parser != "none":
        args += ["--reasoning-parser", spec.reasoning_parser]
    if spec.tool_calling.enabled:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", spec.tool_calling.parser]
    args += [
        "--override-generation-config",
        json.dumps(generation_config(spec), separators=(",", ":")),
    ]
    if pvc_source(spec) is None:
        if not shared_cache(spec):
            # Not on the shared claim: it is mounted read-only, and vLLM takes a lock file in its
            # --download-dir. Without the flag it locks in the temp directory, and HF_HUB_CACHE
            # (server_env) names the same directory, where it finds the files offline.
            args += ["--download-dir", HF_CACHE]
        if spec.model.revision:
            args += ["--revision", spec.model.revision]
    return ["python3", "-m", "qwen_runtime", "--", *args, *spec.runtime.extra_args]


def _secret_env(name: str, ref: api.SecretKeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def server_env(spec: QwenThinkingDeploymentSpec, compile_claim: bool = True) -> list[dict[str, Any]]:
    """Operator env first; the user's env replaces same-named entries (SSA needs unique names).
    `compile_claim`: whether the compile cache may have a claim of its own (render())."""
    env: dict[str, dict[str, Any]] = {
        e["name"]: e for e in [*launcher_env(), {"name": "PYTHONUNBUFFERED", "value": "1"}]
    }
    env[ENGINE_READY_TIMEOUT_VAR] = {"name": ENGINE_READY_TIMEOUT_VAR, "value": str(ENGINE_READY_TIMEOUT_S)}
    env |= {e["name"]: e for e in compile_cache.env(spec, WEIGHTS_MOUNT, compile_claim)}
    if pvc_source(spec) is None:
        env["HF_HUB_CACHE"] = {"name": "HF_HUB_CACHE", "value": HF_CACHE}
        env["HF_HUB_OFFLINE"] = {"name": "HF_HUB_OFFLINE", "value": "1"}
    if not multi_node(spec):  # each replica's own settings (children/replicas.py)
        env.update({e["name"]: e for e in replicas.env()})
    if spec.auth.api_key_secret_ref is not None:  # in the environment, never in the argv (`ps`)
        env[API_KEY_VAR] = _secret_env(API_KEY_VAR, spec.auth.api_key_secret_ref)
    for var in spec.runtime.env:
        env[var.name] = var.model_dump(by_alias=True, exclude_none=True)
    return list(env.values())


def fetch_env(spec: QwenThinkingDeploymentSpec) -> list[dict[str, Any]]:
    """Environment of the init container that downloads the weights (qwen_runtime fetch)."""
    env: list[dict[str, Any]] = [
        *launcher_env(),
        {"name": "QWEN_MODEL_ID", "value": spec.model.id},
        {"name": "QWEN_MODEL_REVISION", "value": spec.model.revision},
        {"name": "QWEN_WEIGHTS_DIR", "value": HF_CACHE},
        {"name": "HF_HUB_CACHE", "value": HF_CACHE},
    ]
    source = spec.model.source
    if (
        source is not None
        and source.hugging_face is not None
        and source.hugging_face.token_secret_ref is not None
    ):
        env.append(_secret_env("HF_TOKEN", source.hugging_face.token_secret_ref))
    return env


def launcher_env() -> list[dict[str, Any]]:
    """Where the launcher's ConfigMap is mounted, the digest it checks its sources against before
    it runs anything (server, probe, download), and the writable caches of a non-root user."""
    return [
        {"name": "PYTHONPATH", "value": launcher.MOUNT},
        {"name": launcher.DIGEST_VAR, "value": launcher.digest()},
        *security.cache_env(),
    ]


def probes(res: QwenThinkingDeployment) -> dict[str, dict[str, Any]]:
    """The default probes with the user's overrides merged over them: startup and liveness on
    vLLM's /health; readiness also asks /v1/models for the served model (qwen_runtime.ready), so
    no request arrives before the model can answer."""
    ready = [
        "python3",
        "-m",
        "qwen_runtime",
        "ready",
        "--port",
        str(CONTAINER_PORT),
        "--model",
        served_name(res),
    ]
    actions: dict[str, dict[str, Any]] = {
        "startup": {"httpGet": {"path": "/health", "port": "http"}},
        "readiness": {"exec": {"command": ready}},
        "liveness": {"httpGet": {"path": "/health", "port": "http"}},
    }
    out = {}
    for kind, defaults in DEFAULT_PROBES.items():
        override = getattr(res.spec.probes, kind).model_dump(by_alias=True, exclude_none=True)
        out[kind] = {**actions[kind], **defaults, **override}
    return out


def startup_seconds(res: QwenThinkingDeployment) -> float:
    """The startup probe's budget: its initial delay plus period x failures (45 minutes by
    default). A server that has run this long without serving has failed (reconcile/rollout.py)."""
    startup = probes(res)["startup"]
    period, failures = int(startup.get("periodSeconds", 10)), int(startup.get("failureThreshold", 3))
    return float(int(startup.get("initialDelaySeconds", 0)) + period * failures)


def resources(spec: QwenThinkingDeploymentSpec) -> dict[str, dict[str, Any]]:
    """CPU/memory defaults apply per resource only where the user set neither request nor limit."""
    user = set(spec.resources.requests) | set(spec.resources.limits)
    gpu = {spec.gpu.resource_name: spec.parallelism.tensor}
    requests = {k: v for k, v in DEFAULT_REQUESTS.items() if k not in user} | spec.resources.requests | gpu
    limits = {k: v for k, v in DEFAULT_LIMITS.items() if k not in user} | spec.resources.limits | gpu
    return {"requests": requests, "limits": limits}


def queue_query(res: QwenThinkingDeployment) -> str:
    """The PromQL KEDA asks Prometheus: the requests waiting at this resource's servers, as the
    resource's ServiceMonitor labels them (the client Service has the resource's name)."""
    return f'sum({QUEUE_METRIC}{{namespace="{res.metadata.namespace}",service="{res.metadata.name}"}})'


def autoscaling(res: QwenThinkingDeployment) -> dict[str, Any] | None:
    """What the ScaledObject or the HorizontalPodAutoscaler says, from spec.autoscaling."""
    spec = res.spec.autoscaling
    if spec is None:
        return None
    return {
        "min": spec.min_replicas,
        "max": spec.max_replicas,
        "target": str(spec.target_waiting_per_replica),
        "metric": QUEUE_METRIC,
        "query": queue_query(res),
        "prometheus": spec.prometheus_address,
        "keda_api": SCALED_OBJECT_API,
        "scale_down": {
            "stabilizationWindowSeconds": spec.scale_down_stabilization_seconds,
            "policies": [SCALE_DOWN_POLICY],
        },
    }


def inference_pool(res: QwenThinkingDeployment) -> dict[str, Any] | None:
    spec = res.spec.inference_pool
    if spec is None:
        return None
    ref = spec.endpoint_picker_ref.model_dump(by_alias=True, exclude_none=True)
    return {"api": INFERENCE_POOL_API, "endpoint_picker_ref": ref}


def owner_reference(res: QwenThinkingDeployment) -> dict[str, Any] | None:
    if not res.metadata.uid:
        return None
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": res.metadata.name,
        "uid": res.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def replica_settings(
    res: QwenThinkingDeployment, utilizations: Mapping[str, float] | None
) -> dict[str, Any] | None:
    """The ConfigMap of each replica's own settings and how the pods mount it (a StatefulSet's
    only; children/replicas.py)."""
    if multi_node(res.spec):
        return None
    return {
        "configmap": replicas.configmap_name(res.metadata.name),
        "volume": replicas.VOLUME,
        "mount": replicas.MOUNT,
        "data": replicas.data(utilizations or {}),
    }


def _values(
    res: QwenThinkingDeployment,
    max_model_len: int | None,
    gpu_memory_utilization: float | None,
    replica_utilizations: Mapping[str, float] | None = None,
    compile_claim: bool = True,
) -> dict[str, Any]:
    spec, name = res.spec, res.metadata.name
    pvc = pvc_source(spec)
    gpu_toleration = {"key": spec.gpu.resource_name, "operator": "Exists", "effect": "NoSchedule"}
    claims = (pvc is None and not shared_cache(spec)) or _compile_cache(spec, compile_claim) is not None
    return {
        "name": name,
        "namespace": res.metadata.namespace,
        "headless_name": headless_name(name),
        "service_account": service_account_name(name),
        "labels": {str(c): labels(name, c) for c in Component},
        "selector": selector_labels(name),
        "leader_selector": leader_labels(name, spec.parallelism.pipeline),
        "group": _group(res, max_model_len, gpu_memory_utilization) if multi_node(spec) else None,
        "owner": owner_reference(res),
        "replicas": spec.replicas,
        "image": spec.runtime.image or api.DEFAULT_IMAGE,
        "launcher": {
            "configmap": launcher.configmap_name(name),
            "volume": launcher.VOLUME,
            "mount": f"{launcher.MOUNT}/{launcher.PACKAGE}",
            "digest": launcher.digest(),
            "sources": launcher.sources(),
            "annotation": LAUNCHER_ANNOTATION,
        },
        "security": {
            "pod": security.pod(),
            "pod_spec": security.POD_SPEC,
            "server": security.container(spec),
            "init": security.container(),
            "home": security.HOME,
            "home_volume": security.HOME_VOLUME,
        },
        "command": server_argv(res, max_model_len, gpu_memory_utilization),
        "env": server_env(spec, compile_claim),
        "replica_settings": replica_settings(res, replica_utilizations),
        "fetch": None if pvc is not None else {"env": fetch_env(spec)},
        "shared": _shared(res) if shared_cache(spec) else None,
        "pvc": None if pvc is None else pvc.model_dump(by_alias=True),
        "weights_mount": WEIGHTS_MOUNT,
        "compile_cache": _compile_cache(spec, compile_claim),
        "has_claims": claims,
        "storage_class": spec.model.cache.storage_class_name,
        "cache_size": spec.model.cache.size,
        "resources": resources(spec),
        "probes": probes(res),
        "node_selector": placement.node_selector(spec),
        "tolerations": [gpu_toleration, *(_plain(t) for t in spec.scheduling.tolerations)],
        "affinity": None if spec.scheduling.affinity is None else _plain(spec.scheduling.affinity),
        "priority_class": spec.scheduling.priority_class_name,
        "server_stop": {"grace": stopping.grace_seconds(spec), "lifecycle": stopping.lifecycle()},
        "shm_size": SHM_SIZE,
        "container_port": CONTAINER_PORT,
        "service_type": spec.service.type,
        "service_port": spec.service.port,
        "max_unavailable": spec.disruption.max_unavailable,
        "rollout_max_unavailable": (
            spec.disruption.max_unavailable if spec.disruption.max_unavailable not in (0, "0%") else 1
        ),  # a rollout without surge must take one group down
        "allow_from": [
            peer.model_dump(by_alias=True, exclude_defaults=True) for peer in spec.network.allow_from
        ],
        "scale_target": {"apiVersion": API_VERSION, "kind": KIND, "name": name},
        "autoscaling": autoscaling(res),
        "inference_pool": inference_pool(res),
        "alert_groups": (
            alerting.server_groups(res.metadata.namespace, name) if spec.monitoring.prometheus_rule else None
        ),
    }


def _plain(obj: ApiObject) -> dict[str, Any]:
    """A passed-through Kubernetes object as the user wrote it (what was not set stays out)."""
    return obj.model_dump(by_alias=True, exclude_none=True, mode="json")


def _group(
    res: QwenThinkingDeployment, max_model_len: int | None, gpu_memory_utilization: float | None
) -> dict[str, Any]:
    """The LeaderWorkerSet's group: its size, the leader's and the workers' commands, and how a
    worker stops (after its leader: stopping.worker_lifecycle)."""
    return {
        "size": res.spec.parallelism.pipeline,
        "leader_command": server_argv(res, max_model_len, gpu_memory_utilization),
        "worker_command": server_argv(res, max_model_len, gpu_memory_utilization, worker=True),
        "worker_stop": {
            "grace": stopping.worker_grace_seconds(res.spec),
            "lifecycle": stopping.worker_lifecycle(res.spec, CONTAINER_PORT),
        },
    }


def _compile_cache(spec: QwenThinkingDeploymentSpec, compile_claim: bool) -> dict[str, Any] | None:
    """The compile cache's own claim template and mount, where it needs one (compile_cache.py)."""
    where = compile_cache.location(spec, WEIGHTS_MOUNT, compile_claim)
    if where is None or not where.claim:
        return None
    return {
        "volume": compile_cache.VOLUME,
        "mount": where.root,
        "size": spec.model.cache.compile_cache_size,
        "component": str(Component.COMPILE_CACHE),
    }


def _shared(res: QwenThinkingDeployment) -> dict[str, Any]:
    name = res.metadata.name
    return {
        "claim": weights_claim_name(name),
        "job": download_job_name(name),
        "container": FETCH_CONTAINER,
        "backoff_limit": DOWNLOAD_BACKOFF_LIMIT,
        "permanent_exit_codes": list(PERMANENT_FETCH_EXITS),
        "pod_labels": {INSTANCE_LABEL: name, COMPONENT_LABEL: str(Component.DOWNLOAD)},
    }


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("qwen_operator.children", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    # JSON is YAML: every value goes in as JSON, so quoting is never a template's problem.
    env.filters["tojson"] = lambda value: json.dumps(value, separators=(", ", ": "))
    return env


def render(
    resource: QwenThinkingDeployment | Mapping[str, Any],
    max_model_len: int | None = None,
    served: frozenset[str] = frozenset(),
    gpu_memory_utilization: float | None = None,
    replica_utilizations: Mapping[str, float] | None = None,
    compile_claim: bool = True,
) -> list[dict[str, Any]]:
    """Every child manifest, in apply order, for the given effective context length and GPU
    memory utilization (default: the spec's), and the replicas' own utilizations (by pod name,
    in their ConfigMap: children/replicas.py).

    `compile_claim`: False keeps a compile cache that needs a claim of its own (Shared, PVC
    source) in the pod instead, without its claim template, mount and variables: for a live
    StatefulSet made without that claim whose pods do not roll otherwise (compile_cache.py,
    `claim_deferred`).

    `served`: the optional CRDs the apiserver serves (registry.OPTIONAL_CRDS): a ServiceMonitor
    with the Prometheus Operator's; with spec.autoscaling a KEDA ScaledObject with KEDA's, else a
    HorizontalPodAutoscaler; with spec.inferencePool an InferencePool with its CRD; with
    spec.monitoring.prometheusRule a PrometheusRule with the Prometheus Operator's.
    """
    res = coerce(resource)
    values = _values(res, max_model_len, gpu_memory_utilization, replica_utilizations, compile_claim)
    # plain data: equal values, an equal document; hashed once for the documents of every template
    plain = hashlib.blake2b(json.dumps(values, sort_keys=True).encode(), digest_size=16).digest()
    children = []
    for template in registry.templates_for(res, served):
        if template.each is None:
            children.append(_DOCUMENTS.render(template.file, values, plain))
            continue
        for each in template.each(res):  # one document per entry (a policy per pipeline group)
            identity = plain + json.dumps(each, sort_keys=True).encode()
            children.append(_DOCUMENTS.render(template.file, {**values, "each": each}, identity))
    children = [with_template_digest(c) if c["kind"] == LWS_KIND else c for c in children]
    _check(res, children, values["command"])
    return children


GROUP_TEMPLATES = ("leaderTemplate", "workerTemplate")
TEMPLATE_DIGEST_CHARS = 16


def with_template_digest(lws: Mapping[str, Any]) -> dict[str, Any]:
    """The LeaderWorkerSet with a digest of its `leaderWorkerTemplate` in both pod templates'
    annotations (TEMPLATE_ANNOTATION): every pod of a group then says which template it runs, so
    the rollout tells the canary from the groups still on the old template without reading the
    LeaderWorkerSet controller's revisions (reconcile/rollout.py). The digest changes exactly when
    the template does, which is when the controller makes a new revision (its revision holds the
    template and the network config, which the operator renders constant).

    A live LeaderWorkerSet made by an operator from before the digest keeps its templates without
    it while nothing else in them changes (`without_template_digest`, reconcile/rollout.py
    `as_applied`): adding it alone would be a new template, and roll every group."""
    spec = dict(without_template_digest(lws)["spec"])
    group = spec["leaderWorkerTemplate"]
    text = json.dumps(group, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(text).hexdigest()[:TEMPLATE_DIGEST_CHARS]
    for role in GROUP_TEMPLATES:
        meta = group[role]["metadata"]
        meta["annotations"] = {**(meta.get("annotations") or {}), TEMPLATE_ANNOTATION: digest}
    return {**lws, "spec": {**spec, "leaderWorkerTemplate": group}}


def without_template_digest(lws: Mapping[str, Any]) -> dict[str, Any]:
    """The LeaderWorkerSet without the template digest in its pod templates (a copy of the group
    template; a pod template left with no annotation has none), as an operator from before the
    digest rendered it."""
    spec = dict(lws["spec"])
    group = copy.deepcopy(dict(spec["leaderWorkerTemplate"]))
    for role in GROUP_TEMPLATES:
        meta = group[role]["metadata"]
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != TEMPLATE_ANNOTATION}
        meta.pop("annotations", None)
        if annotations:
            meta["annotations"] = annotations
    return {**lws, "spec": {**spec, "leaderWorkerTemplate": group}}


def template_digest(lws: Mapping[str, Any]) -> str:
    """The template digest a LeaderWorkerSet manifest (rendered, or as the cache keeps it) holds;
    "" when it holds none (one applied by an operator from before the digest)."""
    group = (lws.get("spec") or {}).get("leaderWorkerTemplate") or {}
    meta = (group.get("leaderTemplate") or {}).get("metadata") or {}
    return str((meta.get("annotations") or {}).get(TEMPLATE_ANNOTATION) or "")


def partition_of(lws: Mapping[str, Any]) -> int:
    """The partition a LeaderWorkerSet manifest holds (0 when it says none: LWS's default)."""
    value: Any = lws
    for key in LWS_PARTITION_PATH:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def with_partition(lws: Mapping[str, Any], partition: int) -> dict[str, Any]:
    """The LeaderWorkerSet with another partition (copied along the path, the rest shared):
    groups with an index at or above it take the template, the others keep theirs."""
    *path, last = LWS_PARTITION_PATH

    def put(node: Mapping[str, Any], keys: list[str]) -> dict[str, Any]:
        if not keys:
            return {**node, last: partition}
        return {**node, keys[0]: put(node.get(keys[0]) or {}, keys[1:])}

    return put(lws, path)


class _Documents:
    """Rendered documents by template and values, kept for the next render of the same.

    A reconciliation renders every child to compare it with the live one, for every event of
    the resource; the values rarely change between two. Laying out and parsing a StatefulSet
    costs milliseconds of CPU, a hit a tenth of that (a copy, from compressed JSON: 500
    resources' documents hold about 2 MiB). Documents larger than `MAX_BYTES` (the launcher's
    ConfigMap, its sources) are rendered each time rather than held once per resource; at most
    `ENTRIES` are kept, the least recently used dropped."""

    ENTRIES = 4096
    MAX_BYTES = 16384

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: OrderedDict[bytes, bytes] = OrderedDict()

    def render(self, template: str, values: Mapping[str, Any], identity: bytes) -> dict[str, Any]:
        """The document; `identity` is equal exactly when `values` are: a digest of them as JSON
        (plain data only: a function among them could close over anything, and equal values must
        mean an equal document), and what a template's `each` adds."""
        key = hashlib.blake2b(template.encode() + b"\0" + identity, digest_size=16).digest()
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
        if kept is not None:
            return dict(json.loads(zlib.decompress(kept)))
        # libyaml's safe loader when built in: parsing is most of a render
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        doc: dict[str, Any] = yaml.load(_environment().get_template(template).render(**values), Loader=loader)
        text = json.dumps(doc)
        if len(text) <= self.MAX_BYTES and json.loads(text) == doc:  # only what JSON keeps intact
            with self._lock:
                self._kept[key] = zlib.compress(text.encode(), 1)
                while len(self._kept) > self.ENTRIES:
                    self._kept.popitem(last=False)
        return doc


_DOCUMENTS = _Documents()


def _check(res: QwenThinkingDeployment, children: list[dict[str, Any]], command: list[str]) -> None:
    """Catch template mistakes: identity, labels, owner and the server command must be intact."""
    for child in children:
        meta = child.get("metadata", {})
        if meta.get("namespace") != res.metadata.namespace or not meta.get("name"):
            raise RenderError(f"{child.get('kind')}: bad metadata {meta}")
        if not selector_labels(res.metadata.name).items() <= meta.get("labels", {}).items():
            raise RenderError(f"{child['kind']}/{meta['name']}: missing selector labels")
        if res.metadata.uid and meta.get("ownerReferences") != [owner_reference(res)]:
            raise RenderError(f"{child['kind']}/{meta['name']}: missing owner reference")
    workload = next(c for c in children if c["kind"] == workload_kind(res.spec))
    spec = workload["spec"]
    template = spec["leaderWorkerTemplate"]["leaderTemplate"] if multi_node(res.spec) else spec["template"]
    if template["spec"]["containers"][0]["command"] != command:
        raise RenderError(f"{workload['kind']}: server command differs from server_argv()")


def to_yaml(children: list[dict[str, Any]]) -> str:
    """Multi-document YAML, as `qwen-operator render` prints it."""
    return yaml.safe_dump_all(children, sort_keys=False, width=1000)
