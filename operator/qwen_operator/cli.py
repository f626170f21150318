"""The `qwen-operator` command: crd, policy, render, plan, version, run."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from qwen_operator import __version__, api
from qwen_operator.admission import operator_writes, tenant
from qwen_operator.api import crd, kubeyaml
from qwen_operator.children import render
from qwen_operator.children.registry import OPTIONAL_CRDS
from qwen_operator.memory import cures, planner

EXIT_INVALID = 2


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INVALID


def _load(path: str) -> list[dict[str, Any]]:
    """The documents as `kubectl apply -f` would send them (kubeyaml), each a mapping."""
    with sys.stdin if path == "-" else open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        docs = kubeyaml.load_all(text)
    except kubeyaml.ManifestError as exc:
        raise api.InvalidResource(exc.where, exc.message) from None
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise api.InvalidResource(path, "expected one or more QwenThinkingDeployment objects")
    return docs


def _tenant_params(path: str) -> tenant.Params:
    """The tenant policy's ConfigMap (the file `kubectl apply` installs), as the policy reads it."""
    try:
        docs = _load(path)
        if len(docs) != 1:
            raise tenant.PolicyError("expected one document, the tenant policy's ConfigMap")
        return tenant.Params.from_configmap(docs[0])
    except (api.InvalidResource, tenant.PolicyError) as exc:
        raise tenant.PolicyError(f"--policy {path}: {exc}") from None


def cmd_render(args: argparse.Namespace) -> int:
    try:
        params = _tenant_params(args.policy) if args.policy else None
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"--policy {args.policy}: {exc}")
    except tenant.PolicyError as exc:
        return _fail(str(exc))
    try:
        docs = _load(args.file)
        resources = [api.parse_resource(d) for d in docs]
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"{args.file}: {exc}")
    except api.InvalidResource as exc:
        return _fail(str(exc))
    if params is not None:
        for res in resources:
            refused = tenant.violations(res, params)
            if refused:
                return _fail(refused[0])
    children: list[dict[str, Any]] = []
    for res in resources:
        limit = res.spec.context.max_model_len
        if args.max_model_len is not None and not api.MIN_CONTEXT <= args.max_model_len <= limit:
            return _fail(
                f"--max-model-len: must be between {api.MIN_CONTEXT} and spec.context.maxModelLen ({limit})"
            )
        children += render.render(res, args.max_model_len, frozenset(args.served))
    sys.stdout.write(render.to_yaml(children))
    return 0


def _plan_of(res: api.QwenThinkingDeployment, gpu_memory_gib: float | None) -> planner.Plan | str:
    """The plan for one resource, or why there is none (an error message)."""
    name, spec = res.metadata.name, res.spec
    arch = planner.KNOWN.get(spec.model.id)
    if arch is None:
        return f"{name}: no architecture known for model {spec.model.id}"
    memory = gpu_memory_gib or spec.gpu.memory_gi_b
    if memory is None:
        return f"{name}: GPU memory unknown: pass --gpu-memory-gib or set spec.gpu.memoryGiB"
    runtime = spec.runtime
    return planner.plan(
        arch,
        memory,
        spec.parallelism.tensor,
        runtime.gpu_memory_utilization,
        runtime.kv_cache_dtype,
        spec.context.max_model_len,
        spec.parallelism.pipeline,
    )


def _weights_lines(plan: planner.Plan) -> list[str]:
    """One stage: weights / tensor. Several: which layers a stage holds, then its share per GPU."""
    d = plan.to_dict()
    if plan.pipeline == 1:
        return [
            f"  weights per GPU    {d['weightsGB']} GB ({d['weightsGiB']} GiB) / {plan.tensor}"
            f" = {d['weightsGiBPerGpu']} GiB"
        ]
    stage_gib = plan.stage_weights_bytes / planner.GIB
    return [
        f"  pipeline           {plan.pipeline} stages, one pod (node) each; the layers are split "
        f"across them, the largest stage has {plan.stage_layers}: it holds those layers' weights "
        "and KV cache",
        f"  weights per GPU    {d['weightsGB']} GB ({d['weightsGiB']} GiB), {stage_gib:.3f} GiB a stage, "
        f"/ {plan.tensor} = {d['weightsGiBPerGpu']} GiB",
    ]


def plan_text(name: str, plan: planner.Plan) -> str:
    """The arithmetic, one figure a line."""
    d = plan.to_dict()
    return "\n".join(
        [
            f"{name}: planned {plan.planned} of {plan.requested} tokens requested",
            f"  usable per GPU     {d['gpuMemoryGiB']} GiB x {d['gpuMemoryUtilization']}"
            f" = {d['usableGiB']} GiB",
            *_weights_lines(plan),
            f"  reserve per GPU    {d['reserveGiB']} GiB (activations, CUDA graphs, NCCL)",
            f"  KV cache per GPU   {d['kvCacheGiBPerGpu']} GiB",
            f"  KV bytes per token {plan.kv_bytes_per_token:,} ({plan.kv_cache_dtype}), "
            f"{plan.kv_bytes_per_token_per_gpu:,} per GPU",
            f"  longest context    {plan.max_tokens:,} tokens (whole {planner.BLOCK_SIZE}-token blocks, "
            "one held back)",
            f"  {plan.explain()}",
        ]
    )


def observed_of(doc: dict[str, Any], res: api.QwenThinkingDeployment) -> api.ObservedMemory | None:
    """vLLM's own figures in the object's status (`kubectl get qtd -o yaml | qwen-operator plan -f -`),
    when what decides the fit is still what they were measured under."""
    raw = ((doc.get("status") or {}).get("memory") or {}).get("observed")
    if not isinstance(raw, dict):
        return None
    try:
        found = api.ObservedMemory.model_validate(raw)
    except ValueError:
        return None
    return found if found.basis == cures.fit_basis(res) else None


def observed_text(plan: planner.Plan, observed: api.ObservedMemory) -> str:
    """The estimate beside what vLLM measured at the last good start."""
    tokens = observed.kv_cache_tokens or 0
    return "\n".join(
        [
            f"  observed           {tokens:,} tokens of KV cache ({observed.kv_cache_gib} GiB per GPU) at"
            f" utilization {observed.gpu_memory_utilization}, vLLM {observed.vllm_version or '?'},"
            f" {observed.pod} started {observed.started_at}",
            f"  estimate/observed  {plan.max_tokens:,} estimated vs {tokens:,} observed tokens"
            f" ({plan.max_tokens - tokens:+,})",
        ]
    )


def cmd_plan(args: argparse.Namespace) -> int:
    try:
        docs_in = _load(args.file)
        resources = [api.parse_resource(d) for d in docs_in]
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"{args.file}: {exc}")
    except api.InvalidResource as exc:
        return _fail(str(exc))
    if args.gpu_memory_gib is not None and args.gpu_memory_gib <= 0:
        return _fail("--gpu-memory-gib: must be positive")
    plans: list[tuple[api.QwenThinkingDeployment, planner.Plan]] = []
    for res in resources:
        plan = _plan_of(res, args.gpu_memory_gib)
        if isinstance(plan, str):
            return _fail(plan)
        plans.append((res, plan))
    observed = [observed_of(doc, res) for doc, res in zip(docs_in, resources, strict=True)]
    if args.output == "json":
        docs = [
            {"name": res.metadata.name, "model": res.spec.model.id, **plan.to_dict(),
             **({"observed": seen.model_dump(by_alias=True, exclude_none=True)} if seen else {})}
            for (res, plan), seen in zip(plans, observed, strict=True)
        ]  # fmt: skip
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        texts = [
            plan_text(res.metadata.name, plan) + ("\n" + observed_text(plan, seen) if seen else "")
            for (res, plan), seen in zip(plans, observed, strict=True)
        ]
        print("\n".join(texts))
    return 0


def cmd_crd(_: argparse.Namespace) -> int:
    sys.stdout.write(crd.crd_yaml())
    return 0


def policy_yaml(which: str) -> str:
    """The admission policy as checked in: `operator` (manifests/validatingadmissionpolicy.yaml)
    or `tenant` (manifests/tenant-policy/validatingadmissionpolicy.yaml). Their bindings are
    small and hand-written beside them (tests/unit/test_admission.py compares them)."""
    source = operator_writes if which == "operator" else tenant
    header = (
        f"# Generated by `qwen-operator policy {which}` (make policies): edit qwen_operator/admission/.\n"
    )
    return header + yaml.safe_dump(source.policy(), sort_keys=False, width=1 << 30)


def cmd_policy(args: argparse.Namespace) -> int:
    sys.stdout.write(policy_yaml(args.which))
    return 0


def cmd_version(_: argparse.Namespace) -> int:
    print(f"qwen-operator {__version__} (runtime image {api.DEFAULT_IMAGE})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from qwen_operator.process import main as operator_main  # kopf is heavy: import it only to run

    return operator_main.run(namespaces=args.namespace, all_namespaces=args.all_namespaces)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qwen-operator", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("crd", help="print the CustomResourceDefinition").set_defaults(func=cmd_crd)
    r = sub.add_parser("render", help="print the child manifests of a resource")
    r.add_argument("-f", "--file", required=True, help="resource YAML, or - for stdin")
    r.add_argument("--max-model-len", type=int, help="effective context (default: spec.context.maxModelLen)")
    r.add_argument(
        "--served", action="append", default=[], choices=sorted(OPTIONAL_CRDS), metavar="CRD",
        help=f"render as if this optional CRD were served (repeatable): {', '.join(sorted(OPTIONAL_CRDS))}",
    )  # fmt: skip
    r.add_argument(
        "--policy", metavar="FILE",
        help="the tenant policy's ConfigMap (manifests/tenant-policy/params.yaml): refuse what it refuses",
    )  # fmt: skip
    r.set_defaults(func=cmd_render)
    pl = sub.add_parser("plan", help="print the memory plan: the largest context that fits")
    pl.add_argument("-f", "--file", required=True, help="resource YAML, or - for stdin")
    pl.add_argument("--gpu-memory-gib", type=float, help="memory of one GPU (default: spec.gpu.memoryGiB)")
    pl.add_argument("-o", "--output", choices=["text", "json"], default="text")
    pl.set_defaults(func=cmd_plan)
    po = sub.add_parser("policy", help="print an admission policy (ValidatingAdmissionPolicy)")
    po.add_argument(
        "which", choices=["operator", "tenant"],
        help="operator: what the operator's ServiceAccount may write; tenant: the tenant policy",
    )  # fmt: skip
    po.set_defaults(func=cmd_policy)
    sub.add_parser("version", help="print the version").set_defaults(func=cmd_version)
    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    run.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.set_defaults(func=cmd_run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
