"""The start reports the servers' launchers print, read from their logs (pods/log), each read once.

reconcile/starts.py says which logs would tell something new; this makes those reads, at most
once per start for a server that turned Ready and at most every LOADING_READ_SECONDS for one
still starting, and keeps what they found for the passes that follow. A final report counts
its phases into `qwen_operator_startup_seconds` when first read. A read that fails is logged and
tried again on a later pass: the start report is worth a line in the status, never a failed
reconciliation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime

from qwen_operator.api.vocabulary import (
    LOADING_READ_SECONDS,
    SERVER_CONTAINER,
    START_LOG_LIMIT_BYTES,
    STARTUP_TOTAL,
)
from qwen_operator.process import clock, metrics
from qwen_operator.process.kube import NotLeading
from qwen_operator.reconcile import snapshot, starts
from qwen_operator.reconcile.observe import Observed
from qwen_runtime import startup

ReadLog = Callable[[str, str, str, Sequence[tuple[str, str]]], str]
"""(namespace, pod, container, query) -> the log's text (kube.Kube.pod_log)."""
KEEP = 4096
"""Starts remembered (a few per replica of every resource): old ones fall out first."""

log = logging.getLogger("qwen_operator.process.startlog")

Run = tuple[str, datetime]
"""(pod uid, the server's startedAt): one start."""


class StartLog:
    """Reads and remembers start reports; safe from the reconciler's worker threads."""

    def __init__(self, read_log: ReadLog, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._read = read_log
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._seen: OrderedDict[Run, snapshot.StartSeen] = OrderedDict()
        self._final_tried: OrderedDict[Run, None] = OrderedDict()
        self._loading_read: dict[Run, float] = {}

    def collect(self, observed: Observed) -> tuple[snapshot.StartSeen, ...]:
        """The reports of the resource's servers' current runs, after the reads that are due."""
        namespace = observed.resource.namespace
        for read in starts.reads(observed.pods, starts.recorded(observed.resource.status)):
            if self._due(read):
                self._fetch(namespace, read)
        wanted = {(p.uid, p.server.running_since) for p in observed.pods if p.server is not None}
        with self._lock:
            return tuple(seen for run, seen in self._seen.items() if run in wanted)

    def _due(self, read: starts.LogRead) -> bool:
        run = (read.uid, read.started_at)
        with self._lock:
            if read.final:
                if run in self._final_tried:
                    return False
                self._final_tried[run] = None
                _trim(self._final_tried)
                return True
            last = self._loading_read.get(run)
            now = self._monotonic()
            if last is not None and now - last < LOADING_READ_SECONDS:
                return False
            self._loading_read = {
                r: t for r, t in self._loading_read.items() if now - t < 10 * LOADING_READ_SECONDS
            }
            self._loading_read[run] = now
            return True

    def _fetch(self, namespace: str, read: starts.LogRead) -> None:
        query = [("limitBytes", str(START_LOG_LIMIT_BYTES))]
        if read.since_time is not None:
            query.append(("sinceTime", clock.rfc3339(read.since_time)))
        if read.since_seconds is not None:
            query.append(("sinceSeconds", str(read.since_seconds)))
        try:
            text = self._read(namespace, read.pod, SERVER_CONTAINER, query)
        except NotLeading:
            raise
        except Exception as exc:  # a report is not worth a failed pass: tried again later
            log.info("%s/%s: could not read the start report: %s", namespace, read.pod, exc)
            with self._lock:
                self._final_tried.pop((read.uid, read.started_at), None)
            return
        report = startup.latest(text)
        if report is None or (read.final and not report.get("ready")):
            return
        seen = snapshot.StartSeen(read.pod, read.uid, read.started_at, report)
        run = (read.uid, read.started_at)
        with self._lock:
            first = read.final and not (run in self._seen and self._seen[run].report.get("ready"))
            self._seen[run] = seen
            self._seen.move_to_end(run)
            _trim(self._seen)
        if first:
            for phase, seconds in (report.get("phases") or {}).items():
                metrics.STARTUP_SECONDS.labels(phase=phase).observe(seconds)
            total = report.get("elapsedSeconds")
            if total is not None:
                metrics.STARTUP_SECONDS.labels(phase=STARTUP_TOTAL).observe(total)


def _trim(
    ordered: OrderedDict[Run, object] | OrderedDict[Run, snapshot.StartSeen] | OrderedDict[Run, None],
) -> None:
    while len(ordered) > KEEP:
        ordered.popitem(last=False)
