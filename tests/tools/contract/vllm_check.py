"""Check `vllm serve` argv lists against vLLM's own parser (run by the vLLM venv's python).

This file is executed by the cached vLLM virtualenv (see vllm_env.py), never
imported by the project's tests: it needs `vllm` importable. It does what
`vllm serve` does before it loads a model (vllm/entrypoints/cli/main.py and
cli/serve.py in 0.33): the top-level FlexibleArgumentParser with the `serve`
subparser from ServeSubcommand (make_arg_parser, positional model_tag), then
ServeSubcommand.validate (validate_parsed_serve_args), the API server's
validate_api_server_args, a registry check of the reasoning and tool-call
parsers, AsyncEngineArgs.from_cli_args and the KV cache part of
create_engine_config (the rest of it needs the model's files). No GPU, no network (HF_HUB_OFFLINE
must stay unset: with it, EngineArgs resolves the model id in the local HF cache).

stdin:  {"cases": [{"id": "...", "argv": ["vllm", "serve", MODEL, ...]}],
         "dests": [names whose parsed values every result reports under "values"]}
stdout: {"vllmVersion": ..., "results": [{"id", "ok", "error", "exitCode",
         "stage", "warnings", "nonDefault", "values", "sampling"}], "reasoningParsers": [...],
         "toolParsers": [...], "options": {dest: {"flags", "switch", "deprecated"}},
         "allowAbbrev": bool, "envVars": [...], "seconds": {...}}
"sampling" is what vLLM makes of --override-generation-config (ModelConfig's own
get_diff_sampling_param): keys it does not know are dropped there, silently.
"""

from __future__ import annotations

import os

# Before vllm is imported: pick the CPU platform instead of probing for CUDA.
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
# Warnings (deprecated options) are part of the result; INFO would only be noise.
os.environ["VLLM_LOGGING_LEVEL"] = "WARNING"

import argparse
import contextlib
import io
import json
import logging
import sys
import time
import warnings
from typing import Any

_NO_DEFAULT = object()


class _Collect(logging.Handler):
    """Keeps the warnings vLLM logs while one case is parsed (deprecations and the like)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _build_parser() -> tuple[Any, Any]:
    """The top-level `vllm` parser with only the serve subcommand, as cli/main.py builds it."""
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm", description="vLLM CLI")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    cmd = ServeSubcommand()
    cmd.subparser_init(subparsers).set_defaults(dispatch_function=cmd.cmd)
    return parser, cmd


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _non_default(args: argparse.Namespace, defaults: argparse.Namespace) -> dict[str, Any]:
    skip = {"dispatch_function", "subparser"}
    return {
        key: _jsonable(value)
        for key, value in sorted(vars(args).items())
        if key not in skip and getattr(defaults, key, _NO_DEFAULT) != value
    }


def _validate(args: argparse.Namespace, cmd: Any) -> None:
    """What `vllm serve` checks after parsing and before it touches a model or GPU."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.common.cli_args import init_parser_plugin, validate_api_server_args
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager

    if getattr(args, "model_tag", None) is not None:
        args.model = args.model_tag
    cmd.validate(args)
    init_parser_plugin(args)
    validate_api_server_args(args)
    reasoning = getattr(args, "reasoning_parser", None)
    if reasoning and reasoning not in ReasoningParserManager.list_registered():
        raise KeyError(f"reasoning parser {reasoning!r} is not registered")
    tool = getattr(args, "tool_call_parser", None)
    if tool and tool not in ToolParserManager.list_registered():
        raise KeyError(f"tool call parser {tool!r} is not registered")
    engine = AsyncEngineArgs.from_cli_args(args)
    _cache_config(engine)


def _cache_config(engine: Any) -> None:
    """The KV cache settings as create_engine_config checks them (the rest needs the model)."""
    from vllm.config import CacheConfig

    CacheConfig(
        gpu_memory_utilization=engine.gpu_memory_utilization,
        cache_dtype=engine.kv_cache_dtype,
        enable_prefix_caching=bool(engine.enable_prefix_caching),
    )


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    """The default sampling parameters vLLM derives from the override (no model files read)."""
    from types import SimpleNamespace

    from vllm.config import ModelConfig

    stand_in = SimpleNamespace(
        generation_config="vllm",
        override_generation_config=dict(args.override_generation_config or {}),
        try_get_generation_config=dict,
    )
    return dict(ModelConfig.get_diff_sampling_param(stand_in))


def _options(parser: Any) -> dict[str, dict[str, Any]]:
    """Every option string of the serve subparser by destination (aliases included), and
    whether it takes a value (nargs 0: a switch such as --enable-expert-parallel), and
    whether vLLM calls it deprecated (some only warn once a model is loaded)."""
    serve = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out: dict[str, dict[str, Any]] = {}
    sub = serve.choices["serve"]
    for action in sub._actions:
        if action.option_strings:
            entry = out.setdefault(action.dest, {"flags": [], "switch": action.nargs == 0})
            entry["flags"].extend(action.option_strings)
            retired = action in sub._deprecated or "deprecated" in (action.help or "").lower()
            entry["deprecated"] = entry.get("deprecated", False) or retired
    return out


def check_case(argv: list[str], defaults: argparse.Namespace, dests: list[str]) -> dict[str, Any]:
    """Parse and validate one argv; never raises."""
    result: dict[str, Any] = {"ok": False, "error": "", "exitCode": 0, "stage": "argv"}
    if argv[:2] != ["vllm", "serve"]:
        result["error"] = f"argv must start with ['vllm', 'serve'], got {argv[:2]}"
        return result
    collect = _Collect()
    logging.getLogger("vllm").addHandler(collect)
    _forget_once_warnings()
    err = io.StringIO()
    caught: list[warnings.WarningMessage] = []
    try:
        with (
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(err),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            result["stage"] = "parse"
            parser, cmd = _build_parser()
            args = parser.parse_args(argv[1:])
            result["nonDefault"] = _non_default(args, defaults)
            result["values"] = {d: _jsonable(getattr(args, d, None)) for d in dests}
            result["stage"] = "validate"
            _validate(args, cmd)
            result["stage"] = "sampling"
            result["sampling"] = _sampling(args)
        result.update(ok=True, stage="done")
    except SystemExit as exc:
        result["exitCode"] = exc.code if isinstance(exc.code, int) else 1
        result["error"] = err.getvalue().strip()[-4000:] or f"exit {exc.code}"
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"[:4000]
    finally:
        logging.getLogger("vllm").removeHandler(collect)
    result["warnings"] = collect.messages + [str(w.message) for w in caught]
    return result


def _forget_once_warnings() -> None:
    """vLLM logs some warnings once per process; each case must see its own."""
    import vllm.logger

    for name in ("_print_warning_once", "_print_info_once"):
        cached = getattr(vllm.logger, name, None)
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()


def main() -> int:
    # vLLM logs to stdout; keep fd 1 for our JSON and send everything else to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    started = time.monotonic()
    request = json.load(sys.stdin)

    import vllm
    import vllm.envs
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager

    parser, _cmd = _build_parser()
    defaults = parser.parse_args(["serve"])
    imported = time.monotonic()
    results = []
    for case in request["cases"]:
        argv = list(case["argv"])
        results.append({"id": case["id"], **check_case(argv, defaults, request.get("dests", []))})
    done = time.monotonic()
    report = {
        "vllmVersion": vllm.__version__,
        "results": results,
        "reasoningParsers": ReasoningParserManager.list_registered(),
        "toolParsers": ToolParserManager.list_registered(),
        "options": _options(parser),
        "allowAbbrev": parser.allow_abbrev,
        "envVars": sorted(vllm.envs.environment_variables),
        "seconds": {"import": round(imported - started, 2), "cases": round(done - imported, 2)},
    }
    json.dump(report, out)
    out.write("\n")
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
