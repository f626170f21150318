"""Kubernetes API writes for the reconciler: server-side apply, deletion, status patches, events.

The reconciler reads nothing from here: it observes the watches' cache (cache.py). Every
request goes through `Kube._request`, which counts it by verb and resource (and errors by
status code), so the metrics prove what the operator sends. `KubeApi` is the protocol the
reconciler's `act` step needs, so tests give it an in-memory API with no type: ignore.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from kubernetes.watch.watch import iter_resp_lines

from qwen_operator.api.vocabulary import (
    API_VERSION,
    COMPONENT,
    FIELD_MANAGER,
    KIND,
    PLURAL,
)
from qwen_operator.children import registry
from qwen_operator.process import health, metrics
from qwen_operator.reconcile import snapshot

REQUEST_TIMEOUT = 30.0
EVENT_MESSAGE_LIMIT = 1024
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
REVIEWS = {
    "tokenreviews": "/apis/authentication.k8s.io/v1/tokenreviews",
    "subjectaccessreviews": "/apis/authorization.k8s.io/v1/subjectaccessreviews",
}
"""The reviews the /metrics endpoint asks for (access.py), by resource: their collections."""
UNAVAILABLE = (502, 503, 504)
"""Statuses that mean the apiserver (or etcd behind it) cannot serve now, not a refusal."""


class ApiError(RuntimeError):
    """A failed API request: HTTP status (0 when no response) and the apiserver's message."""

    def __init__(self, status: int, reason: str, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body: Mapping[str, Any] = body or {}
        """The apiserver's Status object ({} when the answer was none): read by reconcile/refusal.py."""


class NotLeading(ApiError):
    """A write refused before it was sent: this replica does not hold the Lease (any more)."""

    def __init__(self) -> None:
        super().__init__(0, "NotLeading", "this replica does not hold the leader-election Lease")


KINDS: dict[str, tuple[str, str]] = {
    **{c.kind: (c.path_prefix, c.plural) for c in registry.KINDS},
    "Event": ("/api/v1", "events"),
    "Pod": ("/api/v1", "pods"),
    KIND: (f"/apis/{API_VERSION}", PLURAL),
}
"""kind -> (API path prefix, plural): the children's from the registry, events and the resource."""


def _lease_path(namespace: str, name: str | None = None) -> str:
    out = LEASES.format(namespace=quote(namespace, safe=""))
    return f"{out}/{quote(name, safe='')}" if name else out


def _collection(api: str, plural: str, namespace: str) -> str:
    """The path of a collection: `api` is "group/version" ("v1": the core group)."""
    prefix = f"/apis/{api}" if "/" in api else f"/api/{api}"
    scope = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
    return f"{prefix}{scope}/{plural}"


def path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    prefix, plural = KINDS[kind]
    scope = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""  # "": cluster-scoped
    out = f"{prefix}{scope}/{plural}"
    if name is not None:
        out += "/" + quote(name, safe="")
    if subresource:
        out += "/" + subresource
    return out


class KubeApi(Protocol):
    """The requests a reconciliation makes: its writes, each returning what the apiserver
    returned, and the lookup of a child's name before its first apply."""

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def apply(self, manifest: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]: ...

    def delete(
        self, kind: str, namespace: str, name: str, propagation: str = "Background"
    ) -> dict[str, Any]: ...

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]: ...

    def delete_pod(self, namespace: str, name: str, uid: str) -> dict[str, Any]: ...

    def post_event(
        self, owner: snapshot.Resource, type_: str, reason: str, message: str, now: str
    ) -> None: ...


def load_client(user_agent: str = "") -> client.ApiClient:
    """In-cluster credentials when running in a pod, else $KUBECONFIG / ~/.kube/config; the
    User-Agent names the replica, so the apiserver's audit log tells replicas apart."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    api = client.ApiClient()
    if user_agent:
        api.user_agent = user_agent
    return api


def _status(text: str) -> dict[str, Any]:
    """The Status object of a failed request, or {} when the body is not one."""
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return dict(found) if isinstance(found, dict) and found.get("kind") == "Status" else {}


def _message(text: str) -> str:
    return str(_status(text).get("message") or text)


class Kube:
    """Thin, thread-safe wrapper over one ApiClient; raises ApiError, returns dicts (a KubeApi).

    `may_write` fences the reconciler's requests: asked before each one is sent, so a replica
    that lost the Lease sends nothing more, even from a reconciliation already under way. The
    Lease's own requests (`*_lease`) are not fenced, and counted apart."""

    def __init__(self, api_client: client.ApiClient, may_write: Callable[[], bool] = lambda: True) -> None:
        self._api = api_client
        self._may_write = may_write

    def _send(
        self, method: str, url_path: str, query: list[tuple[str, str]], body: Any, content_type: str,
        timeout: float | tuple[float, float] = REQUEST_TIMEOUT,
    ) -> Any:  # fmt: skip
        """The HTTP exchange; raises ApiError(0) when nothing came back, and tells `health`."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        waiting = contextlib.nullcontext() if "watch" in dict(query) else health.CONTACT.waiting()
        try:
            m, url, hdrs, data, _ = self._api.param_serialize(
                method=method, resource_path=url_path, query_params=query,
                header_params=headers, body=body, auth_settings=["BearerToken"],
            )  # fmt: skip
            with waiting:
                resp = self._api.call_api(m, url, header_params=hdrs, body=data, _request_timeout=timeout)
        except Exception as exc:  # no response at all: connection refused, timeout, TLS
            health.CONTACT.failed(f"{type(exc).__name__}: {exc}")
            raise ApiError(0, type(exc).__name__, str(exc)) from exc
        if resp.status in UNAVAILABLE:
            health.CONTACT.failed(f"HTTP {resp.status}")
        else:
            health.CONTACT.answered()
        return resp

    def _request(
        self,
        verb: str,
        method: str,
        resource: str,
        url_path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        read: bool = False,
    ) -> dict[str, Any]:
        if resource == "leases":
            metrics.LEASE_REQUESTS.labels(verb=verb).inc()
        elif resource in REVIEWS:  # a scrape's; a standby replica serves /metrics too: never fenced
            metrics.ACCESS_REVIEWS.labels(resource=resource).inc()
        elif read:  # the optional kinds' own watches (optional_kinds.py): never fenced
            metrics.WATCH_REQUESTS.labels(verb=verb, resource=resource).inc()
        else:
            if not self._may_write():
                raise NotLeading()
            metrics.API_REQUESTS.labels(verb=verb, resource=resource).inc()
        try:
            resp = self._send(method, url_path, query or [], body, content_type)
            resp.read()
        except ApiError:
            metrics.API_ERRORS.labels(verb=verb, resource=resource, code="0").inc()
            raise
        except Exception as exc:  # the body broke off
            metrics.API_ERRORS.labels(verb=verb, resource=resource, code="0").inc()
            raise ApiError(0, type(exc).__name__, str(exc)) from exc
        text = resp.data.decode("utf-8", "replace") if resp.data else ""
        if not 200 <= resp.status < 300:
            metrics.API_ERRORS.labels(verb=verb, resource=resource, code=str(resp.status)).inc()
            raise ApiError(resp.status, str(resp.reason or ""), _message(text), _status(text))
        return dict(json.loads(text)) if text else {}

    # -- the /metrics endpoint's reviews (access.ReviewApi) -----------------------------------

    def review(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a TokenReview or SubjectAccessReview; the apiserver answers in its status and
        stores nothing. Counted apart (`access_reviews`), so the reconciler's own count of
        requests stays what the reconciler sent."""
        return self._request("create", "POST", resource, REVIEWS[resource], body=body)

    # -- the leader-election Lease (lease.LeaseApi) -----------------------------------------

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The one Lease, or None: a list with a field selector on its name, so the Role needs
        no `get` (list and watch, never get) and still names the one Lease it may read."""
        query = [("fieldSelector", f"metadata.name={name}")]
        listed = self._request("list", "GET", "leases", _lease_path(namespace), query=query)
        items = listed.get("items") or []
        return dict(items[0]) if items else None  # an item carries its own resourceVersion

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._request("create", "POST", "leases", _lease_path(namespace), body=body)

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A PUT: with the body's resourceVersion, it fails (409) if anyone wrote in between."""
        return self._request("update", "PUT", "leases", _lease_path(namespace, name), body=body)

    def watch_lease(
        self, namespace: str, name: str, resource_version: str | None, seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The events of one Lease (a field selector on its name, which RBAC can limit to it)."""
        query = [("watch", "true"), ("fieldSelector", f"metadata.name={name}"),
                 ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(seconds))]  # fmt: skip
        if resource_version:
            query.append(("resourceVersion", resource_version))
        metrics.LEASE_REQUESTS.labels(verb="watch").inc()
        resp = self._send("GET", _lease_path(namespace), query, None, "application/json",
                          timeout=(REQUEST_TIMEOUT, seconds + REQUEST_TIMEOUT))  # fmt: skip
        if resp.status != 200:
            text = resp.read().decode("utf-8", "replace")
            raise ApiError(resp.status, str(resp.reason or ""), _message(text))
        try:
            for line in iter_resp_lines(resp.response):  # type: ignore[no-untyped-call]
                if line:
                    event = json.loads(line)
                    yield str(event.get("type") or ""), dict(event.get("object") or {})
        finally:
            resp.response.release_conn()

    # -- the optional kinds' watches (optional_kinds.WatchApi) -------------------------------

    def list_objects(
        self, api: str, plural: str, namespace: str, query: Sequence[tuple[str, str]]
    ) -> dict[str, Any]:
        """One list of `plural` in `api` ("group/version"), in `namespace` ("": all of them).

        A read a standby replica makes too (its cache stays warm): not fenced by the Lease, and
        counted in qwen_operator_watch_requests_total, not in api_requests (the reconciler's)."""
        return self._request(
            "list", "GET", plural, _collection(api, plural, namespace), query=list(query), read=True
        )

    def watch_objects(
        self, api: str, plural: str, namespace: str, query: Sequence[tuple[str, str]], resource_version: str,
        seconds: int,
    ) -> Iterator[tuple[str, dict[str, Any]]]:  # fmt: skip
        """The events of `plural` after `resource_version`, until the apiserver ends the stream
        (`seconds`); an ERROR event (410 Gone: that version is too old) is yielded as it came."""
        query = [*query, ("watch", "true"), ("allowWatchBookmarks", "true"),
                 ("resourceVersion", resource_version), ("timeoutSeconds", str(seconds))]  # fmt: skip
        metrics.WATCH_REQUESTS.labels(verb="watch", resource=plural).inc()
        try:
            resp = self._send("GET", _collection(api, plural, namespace), query, None, "application/json",
                              timeout=(REQUEST_TIMEOUT, seconds + REQUEST_TIMEOUT))  # fmt: skip
        except ApiError:
            metrics.API_ERRORS.labels(verb="watch", resource=plural, code="0").inc()
            raise
        if resp.status != 200:
            text = resp.read().decode("utf-8", "replace")
            metrics.API_ERRORS.labels(verb="watch", resource=plural, code=str(resp.status)).inc()
            raise ApiError(resp.status, str(resp.reason or ""), _message(text))
        try:
            for line in iter_resp_lines(resp.response):  # type: ignore[no-untyped-call]
                if line:
                    event = json.loads(line)
                    yield str(event.get("type") or ""), dict(event.get("object") or {})
        finally:
            resp.response.release_conn()

    def apply(self, manifest: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply under the one field manager, forcing ownership of our fields."""
        kind, meta = str(manifest["kind"]), manifest["metadata"]
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        return self._request(
            "apply-dry-run" if dry_run else "apply", "PATCH", KINDS[kind][1],
            path(kind, meta["namespace"], meta["name"]), query=query,
            body=manifest, content_type="application/apply-patch+yaml",
        )  # fmt: skip

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object of that name, or None (reconcile/plan.py: a lookup before a first apply)."""
        try:
            return self._request("get", "GET", KINDS[kind][1], path(kind, namespace, name))
        except ApiError as exc:
            if exc.status != 404:
                raise
        return None

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Background") -> dict[str, Any]:
        """The object as deletion left it (with a deletionTimestamp while finalizers run); {} if gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            return self._request("delete", "DELETE", KINDS[kind][1], path(kind, namespace, name), body=body)
        except ApiError as exc:
            if exc.status != 404:
                raise
        return {}

    def delete_pod(self, namespace: str, name: str, uid: str) -> dict[str, Any]:
        """Delete a server pod if it is still that uid (a precondition), with its own grace period:
        the rollout's replacement (reconcile/rollout.py). {} when it is gone or was recreated
        already (404, or 409 for the precondition): either way it is no longer the outdated pod."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        try:
            return self._request("delete", "DELETE", "pods", path("Pod", namespace, name), body=body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise
        return {}

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the resource's status subresource."""
        return self._request(
            "patch", "PATCH", PLURAL + "/status", path(KIND, namespace, name, "status"),
            query=[("fieldManager", FIELD_MANAGER)],
            body={"status": dict(patch)}, content_type="application/merge-patch+json",
        )  # fmt: skip

    def pod_log(self, namespace: str, pod: str, container: str, query: Sequence[tuple[str, str]]) -> str:
        """A piece of a container's log (pods/log: `sinceTime` or `sinceSeconds`, `limitBytes`), as
        text; "" when the pod or its log is gone. A read, counted as `get pods/log`."""
        if not self._may_write():  # a replica that does not lead reconciles nothing
            raise NotLeading()
        metrics.API_REQUESTS.labels(verb="get", resource="pods/log").inc()
        url = f"{_collection('v1', 'pods', namespace)}/{quote(pod, safe='')}/log"
        try:
            resp = self._send("GET", url, [("container", container), *query], None, "application/json")
            resp.read()
        except ApiError:
            metrics.API_ERRORS.labels(verb="get", resource="pods/log", code="0").inc()
            raise
        text = resp.data.decode("utf-8", "replace") if resp.data else ""
        if resp.status in (400, 404):  # gone, or not started (yet): nothing to read
            return ""
        if not 200 <= resp.status < 300:
            metrics.API_ERRORS.labels(verb="get", resource="pods/log", code=str(resp.status)).inc()
            raise ApiError(resp.status, str(resp.reason or ""), _message(text), _status(text))
        return text

    def post_event(self, owner: snapshot.Resource, type_: str, reason: str, message: str, now: str) -> None:
        """Post a core/v1 Event on `owner` (what `kubectl describe` lists)."""
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{owner.name}.{uuid.uuid4().hex[:16]}", "namespace": owner.namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": owner.name,
                "namespace": owner.namespace,
                "uid": owner.uid,
                "resourceVersion": owner.resource_version,
            },
            "type": type_,
            "reason": reason,
            "message": message[:EVENT_MESSAGE_LIMIT],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._request("create", "POST", "events", path("Event", owner.namespace), body=event)
        metrics.EVENTS.labels(type=type_, reason=reason).inc()
