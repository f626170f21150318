"""``python -m bench [NAME...]``: run every benchmark in ``BENCHMARKS`` (or the named ones).

A benchmark is a module under ``bench`` with a ``main() -> int``; add yours to the list.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = [
    "launcher",
    "operator",
    "footprint",
    "scale",
    "neighbour",
    "fallback",
    "causes",
    "restart",
    "rollout",
]


def main(argv: list[str]) -> int:
    """Run the chosen benchmarks in order; non-zero if any failed."""
    names = argv or BENCHMARKS
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    status = 0
    for name in names:
        print(f"== bench.{name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        status |= int(module.main() != 0)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
