"""Who may read /metrics: TokenReview, then SubjectAccessReview, and the cache of verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from qwen_operator.process import access
from testkit.reviews import USER, Apiserver


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reviewer(api: Apiserver, clock: Clock, **kw: Any) -> access.Reviewer:
    return access.Reviewer(api, monotonic=clock, **kw)


def test_an_allowed_token_is_reviewed_twice_then_believed_for_a_minute() -> None:
    api, clock = Apiserver({"good": USER}, {USER["username"]}), Clock()
    r = reviewer(api, clock)
    assert r.verdict("good") == access.Verdict(200, USER["username"])
    # The SubjectAccessReview is for the user the TokenReview named, with everything it said.
    assert api.asked[1] == (
        access.SUBJECT_ACCESS_REVIEWS,
        {"user": USER["username"], "uid": USER["uid"], "groups": USER["groups"], "extra": USER["extra"],
         "nonResourceAttributes": {"path": "/metrics", "verb": "get"}},
    )  # fmt: skip
    clock.now += access.ALLOWED_SECONDS - 1
    assert r.verdict("good").status == 200
    assert api.resources() == [access.TOKEN_REVIEWS, access.SUBJECT_ACCESS_REVIEWS]  # from the cache
    clock.now += 2  # past a minute: asked again (a revoked binding takes effect)
    api.allowed.clear()
    assert r.verdict("good") == access.Verdict(403, USER["username"])
    assert len(api.asked) == 4


def test_an_unknown_token_is_401_and_asks_no_authorization() -> None:
    api, clock = Apiserver({}, set()), Clock()
    assert reviewer(api, clock).verdict("made-up") == access.Verdict(401)
    assert api.resources() == [access.TOKEN_REVIEWS]


def test_a_refusal_is_believed_briefly_so_a_new_binding_works_soon() -> None:
    api, clock = Apiserver({"t": USER}, set()), Clock()
    r = reviewer(api, clock)
    assert r.verdict("t").status == 403
    api.allowed.add(USER["username"])  # the role is bound now
    clock.now += access.REFUSED_SECONDS - 1
    assert r.verdict("t").status == 403  # still the cached refusal
    clock.now += 2
    assert r.verdict("t").status == 200
    assert access.REFUSED_SECONDS < access.ALLOWED_SECONDS


def test_the_cache_is_bounded_and_drops_the_least_recently_used() -> None:
    tokens = {name: {**USER, "username": name} for name in ("a", "b", "c")}
    api, clock = Apiserver(tokens, set(tokens)), Clock()
    r = reviewer(api, clock, max_tokens=2)
    r.verdict("a")
    r.verdict("b")
    r.verdict("a")  # a is used again: b is now the oldest
    r.verdict("c")
    assert r.cached() == 2
    before = len(api.asked)
    r.verdict("a")
    assert len(api.asked) == before  # kept
    r.verdict("b")
    assert len(api.asked) == before + 2  # dropped, so asked again


def test_a_review_that_fails_is_raised_and_not_cached() -> None:
    api, clock = Apiserver({"t": USER}, {USER["username"]}), Clock()
    r = reviewer(api, clock)
    api.down = True
    with pytest.raises(ConnectionRefusedError):
        r.verdict("t")
    assert r.cached() == 0
    api.down = False
    assert r.verdict("t").status == 200


def test_the_token_is_kept_only_as_a_digest() -> None:
    """The cache must not become a store of live credentials (a heap dump, a debugger)."""
    api, clock = Apiserver({"secret-token-value": USER}, {USER["username"]}), Clock()
    r = reviewer(api, clock)
    r.verdict("secret-token-value")
    assert "secret-token-value" not in repr(vars(r))
    assert b"secret-token-value" not in repr(vars(r)).encode()
