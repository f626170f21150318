"""A LeaderWorkerSet's rollout behind a canary (reconcile/rollout.py): the partition the operator
renders, the halt, the status, as a table and through decide (the real controller:
e2e/test_multinode.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from qwen_operator import api
from qwen_operator.api.vocabulary import (
    HASH_ANNOTATION,
    LWS_CRD,
    LWS_KIND,
    TEMPLATE_ANNOTATION,
    Reason,
    RolloutState,
)
from qwen_operator.children import render
from qwen_operator.reconcile import diff, rollout, snapshot
from qwen_operator.reconcile.decide import decide
from qwen_operator.reconcile.observe import Observed
from testkit.fake import NOW
from testkit.wrappers import INVALID_ARGS_RECORD, NAME, Pod, kv_record, live, parsed, resource

PP2 = {"parallelism": {"tensor": 4, "pipeline": 2}, "replicas": 3}
OLD_SPEC = PP2
NEW_SPEC = {**PP2, "context": {"maxModelLen": 131072}}


def rendered(spec: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in render.render(parsed(spec)) if m["kind"] == LWS_KIND)


OLD, NEW = render.template_digest(rendered(OLD_SPEC)), render.template_digest(rendered(NEW_SPEC))


def lws(spec: dict[str, Any] = NEW_SPEC, partition: int = 0) -> snapshot.Child:
    """The LeaderWorkerSet as the operator applied it, with this partition."""
    return snapshot.child_from(live(render.with_partition(rendered(spec), partition)))


def member(group: int, worker: int = 0, digest: str = OLD) -> Pod:
    name = f"{NAME}-{group}" if worker == 0 else f"{NAME}-{group}-{worker}"
    return Pod(name, uid=f"uid-{name}-{digest}").group(group, worker).template(digest)


def groups(*digests: str) -> list[snapshot.Pod]:
    """Every group serving, group i on template digests[i]: its leader and its worker."""
    return [member(i, w, d).facts() for i, d in enumerate(digests) for w in (0, 1)]


def inputs(
    pods: list[snapshot.Pod], live_lws: snapshot.Child | None, revision: str = NEW, want: int = 3,
    canary: str = "", explained: frozenset[str] = frozenset(),
) -> rollout.Groups:  # fmt: skip
    before = None
    if canary:
        before = api.RolloutStatus(state=RolloutState.ROLLING, revision=NEW, canary=canary)
    return rollout.Groups(NAME, live_lws, revision, pods, want, 1, 2700.0, before, explained)


def partition(pods: list[snapshot.Pod], live_lws: snapshot.Child | None, **kw: Any) -> int:
    return rollout.partition(inputs(pods, live_lws, **kw), NOW)


def plan(pods: list[snapshot.Pod], held: int, **kw: Any) -> rollout.Rollout | None:
    return rollout.group_plan(inputs(pods, lws(partition=held), **kw), NEW, held, NOW)


def with_leader(pods: list[snapshot.Pod], group: int, leader: Pod) -> list[snapshot.Pod]:
    return [leader.facts() if p.group == group and p.leader else p for p in pods]


def test_the_digest_is_in_both_pod_templates_and_follows_the_template_alone() -> None:
    manifest = rendered(NEW_SPEC)
    group = manifest["spec"]["leaderWorkerTemplate"]
    assert {group[r]["metadata"]["annotations"][TEMPLATE_ANNOTATION] for r in render.GROUP_TEMPLATES} == {NEW}
    assert OLD != NEW
    assert render.template_digest(rendered({**NEW_SPEC, "replicas": 5})) == NEW  # scaling is no new template
    assert render.template_digest(render.with_partition(manifest, 2)) == NEW
    assert render.partition_of(manifest) == 0 and render.partition_of(render.with_partition(manifest, 2)) == 2
    assert render.partition_of(manifest) == 0  # with_partition copies: the rendered one is as it was
    assert member(1, 1, NEW).facts().revision == NEW  # each pod says its template


def test_a_new_template_goes_to_the_highest_group_alone_while_the_others_serve() -> None:
    assert partition(groups(OLD, OLD, OLD), lws(OLD_SPEC)) == 2
    assert partition([], None) == 0  # created: every group from the template
    assert partition(groups(OLD), lws(OLD_SPEC), want=1) == 0  # one group: nothing to keep serving
    down = [member(i, w).waiting("CrashLoopBackOff").facts() for i in range(3) for w in (0, 1)]
    assert partition(down, lws(OLD_SPEC)) == 0  # none serves: all at once


def test_the_partition_stays_while_the_canary_starts_and_goes_to_zero_once_it_serves() -> None:
    starting = with_leader(groups(OLD, OLD, NEW), 2, member(2, digest=NEW).not_ready())
    assert partition(starting, lws(partition=2)) == 2
    assert partition(groups(OLD, OLD, NEW), lws(partition=2)) == 0
    assert partition(groups(OLD, NEW, NEW), lws(partition=0)) == 0  # the controller rolls the rest
    assert partition(groups(NEW, NEW, NEW), lws(partition=2)) == 0  # at rest


def test_a_failed_canary_keeps_the_partition_and_halts_with_its_reason() -> None:
    failed = with_leader(groups(OLD, OLD, NEW), 2, member(2, digest=NEW).failed(INVALID_ARGS_RECORD))
    assert partition(failed, lws(partition=2)) == 2
    r = plan(failed, 2)
    assert r is not None and r.state == RolloutState.HALTED and r.canary == f"{NAME}-2"
    assert r.words == "halted: canary CrashLoop InvalidArguments"
    assert (r.updated, r.serving, r.want) == (1, 2, 3)
    problem = r.problem()
    assert problem is not None and problem.reason == Reason.ROLLOUT_HALTED
    assert "the canary q-2 failed" in problem.message and "InvalidArguments" in problem.message
    assert r.status().halted == [f"{NAME}-2"] and r.replace == ()


def test_a_workers_failure_seen_on_a_deleted_pod_halts_the_group_named_by_its_leader() -> None:
    """A worker's restart makes the controller recreate the group: its failed run is on a pod
    being deleted (the cache keeps it), the group's new pods are pending."""
    gone = member(2, 1, NEW).failed(INVALID_ARGS_RECORD).deleting().facts()
    pending = member(2, 0, NEW).starting("scheduled", NOW).facts()
    pods = [*groups(OLD, OLD), pending, gone]
    r = plan(pods, 2)
    assert r is not None and r.halted and r.halted[0].pod == f"{NAME}-2"
    assert f"pod {NAME}-2-1" in r.halted[0].message
    assert partition(pods, lws(partition=2)) == 2


def test_a_group_failing_after_the_canary_brings_the_partition_back_up() -> None:
    """The controller rolls from the highest index down: a failure on group 1 stops it there."""
    pods = with_leader(groups(OLD, NEW, NEW), 1, member(1, digest=NEW).failed(INVALID_ARGS_RECORD))
    assert partition(pods, lws(partition=0), canary=f"{NAME}-2") == 1
    r = plan(pods, 0, canary=f"{NAME}-2")
    assert r is not None and r.words == "halted: q-1 CrashLoop InvalidArguments"
    assert partition(groups(OLD, NEW, NEW), lws(partition=1), canary=f"{NAME}-2") == 0  # serves again


def test_not_serving_within_the_startup_budget_halts() -> None:
    slow = with_leader(
        groups(OLD, OLD, NEW), 2, member(2, digest=NEW).starting("loading", NOW - timedelta(hours=1))
    )
    r = plan(slow, 2)
    assert r is not None and r.halted and "2700 s" in r.halted[0].message


def test_a_failure_the_cures_explain_does_not_halt() -> None:
    pods = with_leader(groups(OLD, OLD, NEW), 2, member(2, digest=NEW).failed(kv_record()))
    r = plan(pods, 2, explained=frozenset({f"{NAME}-2"}))
    assert r is not None and not r.halted and "waiting for the canary q-2" in r.message


def test_a_new_template_resumes_a_halted_rollout() -> None:
    failed = with_leader(groups(OLD, OLD, NEW), 2, member(2, digest=NEW).failed(INVALID_ARGS_RECORD))
    third = {**PP2, "context": {"maxModelLen": 65536}}
    revision = render.template_digest(rendered(third))
    assert partition(failed, lws(partition=2), revision=revision) == 2  # the canary again
    assert rollout.group_plan(inputs(failed, lws(third, 2), revision=revision), revision, 2, NOW) is not None


def test_the_plan_counts_groups_by_their_leaders() -> None:
    assert plan(groups(NEW, NEW, NEW), 0) is None
    r = plan(groups(OLD, OLD, NEW), 0, canary=f"{NAME}-2")
    assert r is not None and (r.updated, r.serving) == (1, 3)
    assert r.words == "rolling 1/3, canary serving"
    assert "the LeaderWorkerSet controller replaces the other groups, 1 at a time" in r.message


# -- through decide ------------------------------------------------------------------------------


def observed(
    live_lws: snapshot.Child, pods: list[snapshot.Pod], spec: dict[str, Any] = NEW_SPEC,
    status: dict[str, Any] | None = None,
) -> Observed:  # fmt: skip
    kids = tuple(snapshot.child_from(live(m)) for m in render.render(parsed(spec)) if m["kind"] != LWS_KIND)
    return Observed(
        resource(spec, status=status), (*kids, live_lws), tuple(pods), served=frozenset({LWS_CRD})
    )


def lws_apply(desired: Any) -> dict[str, Any] | None:
    return next((a.manifest for a in desired.applies if a.kind == LWS_KIND), None)


def test_decide_applies_the_new_template_with_the_partition_in_one_apply() -> None:
    desired = decide(observed(lws(OLD_SPEC), groups(OLD, OLD, OLD)), NOW)
    manifest = lws_apply(desired)
    assert manifest is not None
    assert render.template_digest(manifest) == NEW and render.partition_of(manifest) == 2
    assert desired.pod_deletes == ()
    patch = desired.status_patch or {}
    assert patch["rollout"]["canary"] == f"{NAME}-2" and patch["rollout"]["revision"] == NEW
    assert patch["progress"].startswith("rolling 0/3")
    assert {e["revision"] for e in patch["replicaStatus"]} == {OLD}


def test_decide_writes_nothing_while_the_canary_starts_then_lowers_the_partition() -> None:
    status = {"rollout": {"state": "Rolling", "revision": NEW, "canary": f"{NAME}-2"}}
    starting = with_leader(groups(OLD, OLD, NEW), 2, member(2, digest=NEW).not_ready())
    assert lws_apply(decide(observed(lws(partition=2), starting, status=status), NOW)) is None
    desired = decide(observed(lws(partition=2), groups(OLD, OLD, NEW), status=status), NOW)
    manifest = lws_apply(desired)
    assert manifest is not None and render.partition_of(manifest) == 0
    assert manifest["spec"]["leaderWorkerTemplate"] == lws().manifest["spec"]["leaderWorkerTemplate"]


def test_decide_says_rollout_halted_and_applies_nothing() -> None:
    status = {"rollout": {"state": "Rolling", "revision": NEW, "canary": f"{NAME}-2"}}
    failed = with_leader(groups(OLD, OLD, NEW), 2, member(2, digest=NEW).failed(INVALID_ARGS_RECORD))
    desired = decide(observed(lws(partition=2), failed, status=status), NOW)
    assert lws_apply(desired) is None
    patch = desired.status_patch or {}
    stalled = next(c for c in patch["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "RolloutHalted")
    assert patch["rollout"]["state"] == "Halted" and patch["rollout"]["halted"] == [f"{NAME}-2"]
    assert patch["progress"].startswith("halted: canary CrashLoop InvalidArguments")
    revisions = {e["pod"]: e["revision"] for e in patch["replicaStatus"]}
    assert revisions[f"{NAME}-2"] == NEW and revisions[f"{NAME}-0"] == OLD


def test_decide_at_rest_is_idle_and_says_no_rollout() -> None:
    desired = decide(observed(lws(), groups(NEW, NEW, NEW)), NOW)
    assert desired.applies == ()
    assert "rollout" not in (desired.status_patch or {})


def test_a_paused_resource_says_no_rollout_of_a_template_it_does_not_apply() -> None:
    desired = decide(observed(lws(OLD_SPEC), groups(OLD, OLD, OLD), spec={**NEW_SPEC, "paused": True}), NOW)
    assert desired.applies == () and "rollout" not in (desired.status_patch or {})


# -- an operator upgrade: a LeaderWorkerSet from before the template digest ----------------------


def before_the_digest(spec: dict[str, Any] = OLD_SPEC) -> snapshot.Child:
    """The LeaderWorkerSet as an operator from before the digest applied it: its templates without
    the digest, its own hash, and what the apiserver defaulted (a field in a container, the
    partition the old rendering did not set)."""
    manifest = render.without_template_digest(rendered(spec))
    del manifest["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["partition"]
    raw = live(manifest)
    raw["metadata"]["annotations"][HASH_ANNOTATION] = "before-the-digest"
    raw["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["partition"] = 0
    container = raw["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    return snapshot.child_from(raw)


def unannotated(group: int, worker: int = 0) -> Pod:
    """A pod made from a template without the digest: only the controllers' labels say its revision."""
    name = f"{NAME}-{group}" if worker == 0 else f"{NAME}-{group}-{worker}"
    return Pod(name, uid=f"uid-{name}-old").group(group, worker).revision(f"{NAME}-5d8f9c")


def old_groups(*digests: str) -> list[snapshot.Pod]:
    """Every group serving, group i on digests[i] ("" for a pod from before the digest)."""
    return [
        (member(i, w, d) if d else unannotated(i, w)).facts() for i, d in enumerate(digests) for w in (0, 1)
    ]


def test_a_pod_from_before_the_digest_has_no_revision_whatever_its_controllers_label() -> None:
    assert unannotated(1, 1).facts().revision == ""
    assert Pod().revision("sts-abc").facts().revision == "sts-abc"  # a StatefulSet's pod: its label


def test_as_applied_keeps_the_templates_without_the_digest_only_while_nothing_else_changes() -> None:
    kept = rollout.as_applied(rendered(OLD_SPEC), before_the_digest())
    assert render.template_digest(kept) == ""
    group = kept["spec"]["leaderWorkerTemplate"]
    assert all(TEMPLATE_ANNOTATION not in group[r]["metadata"]["annotations"] for r in render.GROUP_TEMPLATES)
    assert diff.contains(kept["spec"], before_the_digest().manifest["spec"])  # the apply changes no field
    scaled = rollout.as_applied(rendered({**OLD_SPEC, "replicas": 5}), before_the_digest())
    assert render.template_digest(scaled) == ""  # replicas are no template
    assert render.template_digest(rollout.as_applied(rendered(NEW_SPEC), before_the_digest())) == NEW
    assert render.template_digest(rollout.as_applied(rendered(OLD_SPEC), lws(OLD_SPEC))) == OLD
    assert render.template_digest(rollout.as_applied(rendered(OLD_SPEC), None)) == OLD  # created: with it
    assert partition(old_groups("", "", ""), before_the_digest(), revision="") == 0  # as it is


def test_an_upgrade_with_the_template_unchanged_applies_no_digest_and_plans_no_rollout() -> None:
    pods = old_groups("", "", "")
    desired = decide(observed(before_the_digest(), pods, spec=OLD_SPEC), NOW)
    manifest = lws_apply(desired)  # the hash changed: applied, but no field of the spec changes
    assert manifest is not None and render.template_digest(manifest) == ""
    assert render.partition_of(manifest) == 0
    assert diff.contains(manifest["spec"], before_the_digest().manifest["spec"])
    assert desired.pod_deletes == ()
    patch = desired.status_patch or {}
    assert "rollout" not in patch and not patch["progress"].startswith(("rolling", "halted"))
    assert all(not e.get("revision") for e in patch["replicaStatus"])
    assert all(c["reason"] != "RolloutHalted" for c in patch["conditions"])
    # the next pass, on the LeaderWorkerSet as applied: nothing to apply, still no rollout
    again = decide(observed(snapshot.child_from(live(manifest)), pods, spec=OLD_SPEC), NOW)
    assert lws_apply(again) is None and "rollout" not in (again.status_patch or {})


def test_a_later_change_brings_the_digest_and_the_pods_without_it_are_outdated() -> None:
    desired = decide(observed(before_the_digest(), old_groups("", "", ""), spec=NEW_SPEC), NOW)
    manifest = lws_apply(desired)
    assert manifest is not None
    assert render.template_digest(manifest) == NEW and render.partition_of(manifest) == 2
    patch = desired.status_patch or {}
    assert patch["rollout"]["canary"] == f"{NAME}-2" and patch["rollout"]["revision"] == NEW
    assert patch["progress"].startswith("rolling 0/3")
    # the canary serves on the new template: the groups without the digest are the old ones
    r = plan(old_groups("", "", NEW), 2)
    assert r is not None and (r.updated, r.serving, r.want) == (1, 3, 3) and not r.halted
    assert partition(old_groups("", "", NEW), lws(partition=2)) == 0
    starting = with_leader(old_groups("", "", NEW), 2, member(2, digest=NEW).not_ready())
    assert partition(starting, lws(partition=2)) == 2
    failed = with_leader(old_groups("", "", NEW), 2, member(2, digest=NEW).failed(INVALID_ARGS_RECORD))
    halted = plan(failed, 2)
    assert halted is not None and halted.state == RolloutState.HALTED and halted.canary == f"{NAME}-2"
    assert partition(failed, lws(partition=2)) == 2
    assert plan(old_groups(NEW, NEW, NEW), 0) is None
