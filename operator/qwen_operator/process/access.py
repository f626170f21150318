"""Who may read /metrics: the cluster's RBAC decides, asked through the apiserver.

What controller-runtime's `filters.WithAuthenticationAndAuthorization` and kube-rbac-proxy do:
the request's bearer token goes to a TokenReview (authentication.k8s.io: who is this?), then
that user, with their groups, uid and extra, to a SubjectAccessReview (authorization.k8s.io:
may they `get` the non-resource URL `/metrics`?). The ClusterRole
`qwen-operator-metrics-reader` grants exactly that; bind it to your Prometheus' ServiceAccount.
No token: 401. A token the apiserver does not accept: 401. A user RBAC does not allow: 403.

/metrics names every tenant's resources and namespaces, which is why it is not open: a
ServiceAccount that may read one namespace must not learn the others' from here.

Verdicts are cached, so a scrape every 30 s does not cost the apiserver two requests each time:
keyed by the token's SHA-256 (the token itself is never kept, nor logged), an allowed verdict
for `ALLOWED_SECONDS`, a refusal for `REFUSED_SECONDS` (shorter: a role just bound works
soon), at most `MAX_TOKENS` tokens, the least recently used dropped first. So revoking a
token, or its binding, takes effect within a minute. A review that fails (the apiserver away)
is not cached: that scrape fails with 503, and the next one asks again.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

PATH = "/metrics"
VERB = "get"
ALLOWED_SECONDS = 60.0
"""How long an allowed token is believed (controller-runtime's filter: 1 min)."""
REFUSED_SECONDS = 10.0
"""How long a refused or unknown token is believed."""
MAX_TOKENS = 1024
"""Cached verdicts at most: far more scrapers than any cluster has, and a bound on the memory a
flood of made-up tokens can take (each entry is a digest and a few numbers)."""
TOKEN_REVIEWS = "tokenreviews"
SUBJECT_ACCESS_REVIEWS = "subjectaccessreviews"


class ReviewApi(Protocol):
    """Creates a TokenReview or SubjectAccessReview and returns it as the apiserver filled it
    in (kube.Kube.review); raises when it got no answer."""

    def review(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Verdict:
    status: int
    """The HTTP status the request gets: 200, 401 or 403."""
    user: str = ""
    """Who the token belongs to ("" when it is not accepted), for the log."""


class Reviewer:
    """Verdicts on bearer tokens, asked of the apiserver and cached (thread-safe)."""

    def __init__(
        self,
        api: ReviewApi,
        allowed_seconds: float = ALLOWED_SECONDS,
        refused_seconds: float = REFUSED_SECONDS,
        max_tokens: int = MAX_TOKENS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._allowed_seconds = allowed_seconds
        self._refused_seconds = refused_seconds
        self._max_tokens = max_tokens
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[bytes, tuple[Verdict, float]] = collections.OrderedDict()

    def verdict(self, token: str) -> Verdict:
        """The verdict on `token`: cached, else asked (two requests at most); raises when the
        apiserver could not be asked."""
        key = hashlib.sha256(token.encode()).digest()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[1] > self._monotonic():
                self._cache.move_to_end(key)
                return hit[0]
        verdict = self._ask(token)
        ttl = self._allowed_seconds if verdict.status == 200 else self._refused_seconds
        with self._lock:
            self._cache[key] = (verdict, self._monotonic() + ttl)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_tokens:
                self._cache.popitem(last=False)
        return verdict

    def cached(self) -> int:
        with self._lock:
            return len(self._cache)

    def _ask(self, token: str) -> Verdict:
        review = self._api.review(
            TOKEN_REVIEWS,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
        )
        status = review.get("status") or {}
        if not status.get("authenticated"):
            log.info("metrics: refused a token the apiserver did not authenticate (401)")
            return Verdict(401)
        user: dict[str, Any] = status.get("user") or {}
        name = str(user.get("username") or "")
        spec: dict[str, Any] = {"user": name, "nonResourceAttributes": {"path": PATH, "verb": VERB}}
        for field in ("uid", "groups", "extra"):
            if user.get(field):
                spec[field] = user[field]
        answer = self._api.review(
            SUBJECT_ACCESS_REVIEWS,
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
        )
        if (answer.get("status") or {}).get("allowed"):
            return Verdict(200, name)
        log.info("metrics: refused %s, whom RBAC does not allow %s %s (403)", name, VERB, PATH)
        return Verdict(403, name)
