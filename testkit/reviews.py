"""An apiserver that answers the /metrics endpoint's reviews (TokenReview, SubjectAccessReview)
from two tables, for the unit tests of process/access.py and process/endpoints.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qwen_operator.process import access

USER = {
    "username": "system:serviceaccount:monitoring:prometheus",
    "uid": "0b5c",
    "groups": ["system:serviceaccounts", "system:serviceaccounts:monitoring", "system:authenticated"],
    "extra": {"authentication.kubernetes.io/pod-name": ["prometheus-0"]},
}


class Apiserver:
    """Stands in for kube.Kube.review: `tokens` maps a token to its user; `allowed`, the users
    RBAC lets get /metrics. Records every review it was asked for."""

    def __init__(self, tokens: Mapping[str, dict[str, Any]], allowed: set[str]) -> None:
        self.tokens = dict(tokens)
        self.allowed = allowed
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self.down = False

    def review(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if self.down:
            raise ConnectionRefusedError("apiserver away")
        spec = dict(body["spec"])
        self.asked.append((resource, spec))
        if resource == access.TOKEN_REVIEWS:
            user = self.tokens.get(spec["token"])
            status = {"authenticated": True, "user": user} if user else {"authenticated": False}
            return {**body, "status": status}
        assert resource == access.SUBJECT_ACCESS_REVIEWS
        asks = spec["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}
        allowed = asks and spec["user"] in self.allowed
        return {**body, "status": {"allowed": allowed}}

    def resources(self) -> list[str]:
        return [resource for resource, _ in self.asked]
