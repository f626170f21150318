"""The `qwen-operator` command: crd, render, version, run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from . import __version__, api, crd, render

EXIT_INVALID = 2


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INVALID


def _load(path: str) -> list[dict[str, Any]]:
    with sys.stdin if path == "-" else open(path, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise api.InvalidResource(path, "expected one or more QwenThinkingDeployment objects")
    return docs


def cmd_render(args: argparse.Namespace) -> int:
    try:
        docs = _load(args.file)
        resources = [api.parse_resource(d) for d in docs]
    except (OSError, yaml.YAMLError) as exc:
        return _fail(f"{args.file}: {exc}")
    except api.InvalidResource as exc:
        return _fail(str(exc))
    children: list[dict[str, Any]] = []
    for res in resources:
        limit = res.spec.context.max_model_len
        if args.max_model_len is not None and not api.MIN_CONTEXT <= args.max_model_len <= limit:
            return _fail(
                f"--max-model-len: must be between {api.MIN_CONTEXT} and spec.context.maxModelLen ({limit})"
            )
        children += render.render(res, args.max_model_len)
    sys.stdout.write(render.to_yaml(children))
    return 0


def cmd_crd(_: argparse.Namespace) -> int:
    sys.stdout.write(crd.crd_yaml())
    return 0


def cmd_version(_: argparse.Namespace) -> int:
    print(f"qwen-operator {__version__} (runtime image {api.DEFAULT_IMAGE})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from . import main as operator_main  # kopf is heavy: import it only to run

    return operator_main.run(namespaces=args.namespace, all_namespaces=args.all_namespaces)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qwen-operator", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("crd", help="print the CustomResourceDefinition").set_defaults(func=cmd_crd)
    r = sub.add_parser("render", help="print the child manifests of a resource")
    r.add_argument("-f", "--file", required=True, help="resource YAML, or - for stdin")
    r.add_argument("--max-model-len", type=int, help="effective context (default: spec.context.maxModelLen)")
    r.set_defaults(func=cmd_render)
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
