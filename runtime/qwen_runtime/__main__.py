"""Command line: ``python3 -m qwen_runtime [OPTIONS] -- COMMAND...``, ``... fetch``, ``... ready``
or ``... wait-leader``.

``-- COMMAND`` runs the server under the launcher (see ``qwen_runtime.launcher``), once the
compile cache is within its bound (see ``qwen_runtime.compile_cache``);
``fetch`` downloads the model for the init container (see ``qwen_runtime.fetch``);
``ready`` is the readiness probe: healthy and serving the model (see ``qwen_runtime.ready``);
``wait-leader`` is a pipeline worker's preStop hook: it returns once the group's leader has
drained and exited (see ``qwen_runtime.leader``).

Each of them first checks its own sources against the pod's ``QWEN_LAUNCHER_DIGEST`` and refuses
to run when they differ (see ``qwen_runtime.integrity``): the server and ``fetch`` write the
termination record, the probe and the hook only say why on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import integrity, launcher
from .leader import SUBCOMMAND as WAIT_LEADER

DEFAULT_TERMINATION_LOG = "/dev/termination-log"

USAGE = (
    "python3 -m qwen_runtime [--termination-log PATH] [--kill-after SECONDS] -- COMMAND...\n"
    "       python3 -m qwen_runtime fetch\n"
    "       python3 -m qwen_runtime ready --model NAME [--port 8000]\n"
    f"       python3 -m qwen_runtime {WAIT_LEADER} --seconds N [--address HOST] [--port 8000]"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m qwen_runtime", usage=USAGE)
    parser.add_argument(
        "--termination-log",
        default=DEFAULT_TERMINATION_LOG,
        help="where to write the JSON failure record (default: %(default)s)",
    )
    parser.add_argument(
        "--kill-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="SIGKILL the child's process group this long after a forwarded signal "
        "(default: never; the kubelet's grace period does it)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the launcher or to a subcommand; return the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["fetch"]:
        refused = integrity.verify(DEFAULT_TERMINATION_LOG)  # the init container's (and the Job's)
        if refused is not None:
            return refused
        from . import fetch  # only the init container needs it

        return fetch.main(args[1:])
    if args[:1] == ["ready"]:
        refused = integrity.verify(None)  # an exec probe: the container's message is the server's
        if refused is not None:
            return refused
        from . import ready

        return ready.main(args[1:])
    if args[:1] == [WAIT_LEADER]:
        refused = integrity.verify(None)  # an exec hook: the kubelet records its stderr in an event
        if refused is not None:
            return refused
        from . import leader

        return leader.main(args[1:])
    split = args.index("--") if "--" in args else len(args)
    parser = _parser()
    options = parser.parse_args(args[:split])  # handles --help
    command = args[split + 1 :]
    if not command:
        parser.error("missing '-- COMMAND...'")
    refused = integrity.verify(options.termination_log)  # before vLLM starts
    if refused is not None:
        return refused

    from . import compile_cache  # before the server: nothing may read an entry while it goes

    compile_cache.prepare(os.environ)
    return launcher.run(command, options.termination_log, options.kill_after)


if __name__ == "__main__":
    sys.exit(main())
