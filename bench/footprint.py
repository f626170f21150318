"""The operator's memory at the spec's bounds: 120 maximal resources against 120 samples.

A resource at every bound (testkit/maximal.py, pipeline 2: a LeaderWorkerSet holds the pod
template twice) is what a hostile or careless tenant can create; the operator's 512Mi limit
must hold a cluster's worth of them, for every tenant's sake. Each run is a fresh Python
process that holds what the operator's cache holds per resource (the resource, and each child
as the watch delivers it, read into `snapshot` objects) and makes one decision per resource,
as the reconciler does; it prints the resident memory (VmRSS) before and after. The baseline is
the same with the sample resource. Kopf's own per-object state and the raw bodies of the watch
stream (transient, one event at a time) are not counted; the process's imports are, in the
"before" figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from qwen_operator import api
from qwen_operator.api.vocabulary import LWS_CRD
from qwen_operator.children import render
from qwen_operator.reconcile import decide, diff, snapshot
from qwen_operator.reconcile.observe import Observed
from testkit.maximal import maximal_resource

COUNT = 120
LIMIT_MIB = 512
ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def resource(which: str, i: int) -> dict[str, Any]:
    if which == "maximal":
        doc = maximal_resource()
    else:
        doc = yaml.safe_load((ROOT / "samples" / "qwen3-235b-thinking.yaml").read_text())
        doc["metadata"]["namespace"] = "bench"
    doc["metadata"] |= {"name": f"{doc['metadata']['name'][:-4]}{i:04d}", "uid": f"u-{i}", "generation": 1}
    return doc


def held(raw: dict[str, Any]) -> tuple[Observed, int]:
    """What the cache holds for one resource once its children exist; their JSON size."""
    served = frozenset({LWS_CRD})
    children = [diff.with_hash(m) for m in render.render(api.parse_resource(raw), served=served)]
    size = sum(len(json.dumps(m)) for m in children)
    written = {"uid": "c", "resourceVersion": "1", "managedFields": [{"manager": "qwen-operator"}]}
    for child in children:
        child["metadata"] |= written
    observed = Observed(
        snapshot.resource_from(raw), tuple(snapshot.child_from(c) for c in children), served=served
    )
    return observed, size


def measure(which: str) -> None:
    """In this process: hold COUNT resources as the cache does, decide each once, print."""
    before = rss_mib()
    kept = []
    total = 0
    for i in range(COUNT):
        observed, size = held(resource(which, i))
        decide.decide(observed, NOW)
        kept.append(observed)
        total += size
    after = rss_mib()
    per = (after - before) / COUNT
    print(f"{which:>8}: {COUNT} resources, children {total / COUNT / 1e6:.2f} MB each (JSON); RSS "
          f"{before:.0f} -> {after:.0f} MiB ({per:.2f} MiB a resource; {LIMIT_MIB} MiB holds "
          f"{(LIMIT_MIB - before) / per:.0f} such resources)")  # fmt: skip


def main() -> int:
    status = 0
    for which in ("sample", "maximal"):
        done = subprocess.run([sys.executable, "-m", "bench.footprint", which], cwd=ROOT, check=False)
        status |= done.returncode
    return status


if __name__ == "__main__":
    if len(sys.argv) > 1:
        measure(sys.argv[1])
        sys.exit(0)
    sys.exit(main())
