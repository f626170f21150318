"""One reconciliation of one resource: observe (from the cache) -> decide (pure) -> act (writes).

Level-triggered and idempotent: every pass starts from what the watches show now, so a
restarted operator (or one killed half-way) simply converges. `observe` makes no request,
`decide` makes none, and `act` writes only what differs, which is what keeps an idle cluster
idle: a reconciliation with nothing to do sends nothing to the apiserver. The one read between
observing and deciding is a server's start report (`starts`, process/startlog.py): once per
start when it turns Ready, and every 30 s while one starts, never while all serve.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from qwen_operator.api.vocabulary import Phase, Remedy, Result
from qwen_operator.process import clock, metrics
from qwen_operator.process.kube import ApiError, NotLeading
from qwen_operator.process.workqueue import Retry
from qwen_operator.reconcile import refusal as refusals
from qwen_operator.reconcile.act import Actor
from qwen_operator.reconcile.decide import Desired, decide, failed
from qwen_operator.reconcile.observe import Key, Observed
from qwen_operator.reconcile.snapshot import StartSeen

log = logging.getLogger("qwen_operator.reconcile.reconciler")


def _not_served(exc: Exception) -> bool:
    """An apply answered 404: the kind's API is not served (yet). Apply never 404s for a missing
    object, it creates it; this is a CRD Established a moment before the apiserver serves it, or
    one just removed. The watch of the CRD brings the next pass."""
    return (
        isinstance(exc, ApiError)
        and refusals.read(exc.status, exc.body, "", "").kind == refusals.Kind.NOT_SERVED
    )


@dataclass
class Outcome:
    """What one reconciliation did (for metrics, logs, tests and the queue)."""

    result: Result
    applied: list[str] = field(default_factory=list)
    status_written: bool = False
    recheck_after: float | None = None
    """Look again after this many seconds even if nothing changes."""


class Reconciler:
    """Reconciles resources by (namespace, name); safe from several threads for different keys."""

    def __init__(
        self,
        observe: Callable[[Key], Observed | None],
        actor: Actor,
        now: Callable[[], datetime] = clock.now,
        starts: Callable[[Observed], tuple[StartSeen, ...]] | None = None,
    ) -> None:
        self.observe = observe
        self.starts = starts
        """The servers' start reports, read from their logs (None: none are read)."""
        self.actor = actor
        self.now = now
        self.status_written: dict[Key, datetime] = {}
        """When each resource's status was last written by this process (decide.STATUS_INTERVAL)."""
        self.starting: set[Key] = set()
        """The resources whose last pass left them Progressing (decide.status_interval)."""

    def reconcile(self, key: Key) -> Outcome:
        started = time.perf_counter()
        try:
            outcome = self._reconcile(key)
        except Retry:
            raise  # counted already: a refusal the queue backs off from, not an error
        except Exception:
            metrics.RECONCILIATIONS.labels(result=Result.ERROR).inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        metrics.RECONCILIATIONS.labels(result=outcome.result).inc()
        if outcome.applied or outcome.status_written:
            log.info(
                "%s/%s: %s; applied [%s]; status %s", key[0], key[1], outcome.result,
                ", ".join(outcome.applied), "written" if outcome.status_written else "unchanged",
            )  # fmt: skip
        return outcome

    def _reconcile(self, key: Key) -> Outcome:
        observed = self.observe(key)
        if observed is None:
            metrics.PHASE_TRACKER.set(key, None)
            metrics.REDUCED_TRACKER.set(key, False)
            metrics.RESOURCE_TRACKER.set(key, None)
            self.status_written.pop(key, None)
            self.starting.discard(key)
            return Outcome(Result.GONE)
        now = self.now()
        observed = replace(
            observed, status_written_at=self.status_written.get(key), starting=len(self.starting),
            starts=self.starts(observed) if self.starts is not None else (),
        )  # fmt: skip
        desired = decide(observed, now)
        try:
            refusal = self.actor.act(desired)
            if refusal is not None:  # the apiserver refused a write: decide again, knowing it
                desired = decide(replace(observed, refusal=refusal), now)
                again = self.actor.act(desired)
                if again is not None:
                    raise RuntimeError(f"{again.what}: {again.message}")
                if refusal.kind == refusals.Kind.NAMESPACE_TERMINATING:
                    # The namespace is being deleted, the resource with it: nothing to build or retry.
                    log.info("%s/%s: namespace is being deleted; not applying", *key)
                    return Outcome(Result.TERMINATING)
                if refusal.retry:
                    self._count(key, desired)
                    metrics.RECONCILIATIONS.labels(result=desired.result).inc()
                    raise Retry(refusal.reason, f"{refusal.what}: {refusal.message}")
        except Retry:
            raise
        except Exception as exc:
            if not (_not_served(exc) or isinstance(exc, NotLeading)):  # retried without alarm: an API
                self._report_error(observed, exc, now)  # about to be served, or the Lease lost mid-way
            raise
        if desired.status_patch is not None:
            self.status_written[key] = now
        if desired.phase == Phase.PROGRESSING:
            self.starting.add(key)
        else:
            self.starting.discard(key)
        self._count(key, desired)
        return Outcome(
            desired.result,
            applied=[a.ident for a in desired.applies],
            status_written=desired.status_patch is not None,
            recheck_after=desired.recheck_after,
        )

    def _report_error(self, observed: Observed, exc: Exception, now: datetime) -> None:
        """Say in the status (and once in an event) that reconciling fails and is retried."""
        self._report(failed(observed, str(exc), now))

    def _report(self, desired: Desired) -> None:
        """Best effort: the apiserver may be what fails (the retry will tell), or the resource gone."""
        try:
            self.actor.act(desired)
        except Exception as again:
            log.debug("%s/%s: could not report %s: %s", *desired.key, desired.result, again)

    @staticmethod
    def _count(key: Key, desired: Desired) -> None:
        step = desired.reduction
        if step is not None:
            counter = (
                metrics.CONTEXT_REDUCTIONS
                if step.remedy == Remedy.SHORTER_CONTEXT
                else metrics.UTILIZATION_REDUCTIONS
            )
            counter.labels(reason=step.reason).inc()
        metrics.PHASE_TRACKER.set(key, desired.phase)
        metrics.REDUCED_TRACKER.set(key, desired.reduced)
        if desired.after is not None:
            metrics.RESOURCE_TRACKER.set(key, metrics.Figures.of(desired.want, desired.after))
