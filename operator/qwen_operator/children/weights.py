"""The shared weights download (model.cache.mode Shared): its state, and the gate it puts on the
servers. Pure functions over the observed Job, no I/O.

One Job owned by the resource downloads the weights into one ReadWriteMany claim. The
StatefulSet is applied (created, scaled, rolled) only once that Job has succeeded, rather
than letting its pods wait in an init container: waiting pods would hold their GPUs idle for
the whole download (a 236 GB pull takes tens of minutes to hours), and a replica would need
its own check that the files are complete. Until then the StatefulSet stays as it is (absent
on a new resource, serving the files already there after a change of revision), and the
status says WeightsDownloading. A failed Job is Stalled with the Job's own reason; it is not
retried by the operator (the Job controller already retried it up to its backoffLimit), and
deleting the Job starts a new one, which resumes from the partial files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qwen_operator import api
from qwen_operator.api.vocabulary import JobCondition, Reason, WeightsState
from qwen_operator.children import render
from qwen_operator.reconcile import snapshot
from qwen_operator.reconcile.observe import Observed
from qwen_operator.reconcile.problems import Problem, Wait, short


@dataclass(frozen=True)
class Download:
    """Where the shared download stands, and what the status says about it."""

    status: api.WeightsStatus
    found: Problem | Wait | None
    """WeightsDownloading (a wait without deadline), WeightsDownloadFailed, or None once complete."""

    @property
    def complete(self) -> bool:
        return self.status.state == WeightsState.COMPLETE


def _condition(job: snapshot.Child, type_: JobCondition) -> dict[str, Any] | None:
    for cond in job.status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def _claim_phase(observed: Observed, claim: str) -> str:
    live = observed.child("PersistentVolumeClaim", claim)
    phase = str((live.status if live is not None else {}).get("phase") or "")
    return "" if phase in ("", "Bound") else f"; claim {claim} is {phase} (a ReadWriteMany StorageClass?)"


def download(res: api.QwenThinkingDeployment, observed: Observed, applying: Sequence[str]) -> Download | None:
    """The shared download's state; None unless model.cache.mode is Shared.

    `applying`: the kinds this pass applies. A Job about to be applied (created, or replaced
    because what it downloads changed) is not the current download yet, whatever it reports."""
    if not render.shared_cache(res.spec):
        return None
    name = res.metadata.name
    job_name, claim = render.download_job_name(name), render.weights_claim_name(name)
    what = f"{res.spec.model.id}@{res.spec.model.revision or 'main'} into claim {claim}"
    live = observed.child("Job", job_name)

    def said(state: WeightsState, message: str, found: Problem | Wait | None) -> Download:
        weights = api.WeightsStatus(claim=claim, job=job_name, state=state, message=message)
        return Download(weights, found)

    if live is None or live.deleting or "Job" in applying:
        message = f"starting Job {job_name}: downloading {what}"
        return said(WeightsState.PENDING, message, Wait(Reason.WEIGHTS_DOWNLOADING, message))
    if _condition(live, JobCondition.COMPLETE) is not None:
        return said(WeightsState.COMPLETE, f"downloaded {what}", None)
    failed = _condition(live, JobCondition.FAILED)
    if failed is not None:
        cause = f"{failed.get('reason') or JobCondition.FAILED}: {failed.get('message') or ''}".rstrip(": ")
        message = short(
            f"Job {job_name} failed to download {what} ({cause}); its pod's log says why "
            f"(kubectl logs job/{job_name}); delete the Job to try again, it resumes the partial files"
        )
        return said(WeightsState.FAILED, message, Problem(Reason.WEIGHTS_DOWNLOAD_FAILED, message))
    active, retries = int(live.status.get("active") or 0), int(live.status.get("failed") or 0)
    tries = f", {retries} failed attempt(s) resumed" if retries else ""
    message = short(
        f"Job {job_name} downloading {what} ({active} pod(s) active{tries}){_claim_phase(observed, claim)}; "
        "the servers start once it has succeeded"
    )
    return said(WeightsState.DOWNLOADING, message, Wait(Reason.WEIGHTS_DOWNLOADING, message))
