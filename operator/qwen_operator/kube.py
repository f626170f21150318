"""Kubernetes API writes for the reconciler: server-side apply, deletion, status patches, events.

The reconciler reads nothing from here: it observes the watches' cache (cache.py). Every
request goes through `Kube._request`, which counts it by verb and resource (and errors by
status code), so the metrics prove what the operator sends. `KubeApi` is the protocol the
reconciler's `act` step needs, so tests give it an in-memory API with no type: ignore.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from . import facts, metrics
from .vocabulary import (
    API_VERSION,
    COMPONENT,
    FIELD_MANAGER,
    HPA_KIND,
    INFERENCE_POOL_API,
    INFERENCE_POOL_KIND,
    KIND,
    LWS_API,
    PLURAL,
    SCALED_OBJECT_API,
    SCALED_OBJECT_KIND,
    SERVICE_MONITOR_API,
)

REQUEST_TIMEOUT = 30.0
EVENT_MESSAGE_LIMIT = 1024


class ApiError(RuntimeError):
    """A failed API request: HTTP status (0 when no response) and the apiserver's message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


# kind -> (API path prefix, plural)
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "Service": ("/api/v1", "services"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "Job": ("/apis/batch/v1", "jobs"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "ServiceMonitor": (f"/apis/{SERVICE_MONITOR_API}", "servicemonitors"),
    HPA_KIND: ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    SCALED_OBJECT_KIND: (f"/apis/{SCALED_OBJECT_API}", "scaledobjects"),
    INFERENCE_POOL_KIND: (f"/apis/{INFERENCE_POOL_API}", "inferencepools"),
    "LeaderWorkerSet": (f"/apis/{LWS_API}", "leaderworkersets"),
    "Event": ("/api/v1", "events"),
    KIND: (f"/apis/{API_VERSION}", PLURAL),
}


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
    """The writes a reconciliation makes; each returns what the apiserver returned."""

    def apply(self, manifest: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]: ...

    def delete(
        self, kind: str, namespace: str, name: str, propagation: str = "Background"
    ) -> dict[str, Any]: ...

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]: ...

    def post_event(self, owner: facts.Resource, type_: str, reason: str, message: str, now: str) -> None: ...


def load_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else $KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


class Kube:
    """Thin, thread-safe wrapper over one ApiClient; raises ApiError, returns dicts (a KubeApi)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client

    def _request(
        self,
        verb: str,
        method: str,
        resource: str,
        url_path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        metrics.API_REQUESTS.labels(verb=verb, resource=resource).inc()
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            m, url, hdrs, data, _ = self._api.param_serialize(
                method=method, resource_path=url_path, query_params=query or [],
                header_params=headers, body=body, auth_settings=["BearerToken"],
            )  # fmt: skip
            resp = self._api.call_api(m, url, header_params=hdrs, body=data, _request_timeout=REQUEST_TIMEOUT)
            resp.read()  # type: ignore[no-untyped-call]
        except Exception as exc:  # no response at all: connection refused, timeout, TLS
            metrics.API_ERRORS.labels(verb=verb, resource=resource, code="0").inc()
            raise ApiError(0, type(exc).__name__, str(exc)) from exc
        text = resp.data.decode("utf-8", "replace") if resp.data else ""
        if not 200 <= resp.status < 300:
            metrics.API_ERRORS.labels(verb=verb, resource=resource, code=str(resp.status)).inc()
            try:
                message = str(json.loads(text).get("message", text))
            except ValueError:
                message = text
            raise ApiError(resp.status, str(resp.reason or ""), message)
        return dict(json.loads(text)) if text else {}

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

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Background") -> dict[str, Any]:
        """The object as deletion left it (with a deletionTimestamp while finalizers run); {} if gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            return self._request("delete", "DELETE", KINDS[kind][1], path(kind, namespace, name), body=body)
        except ApiError as exc:
            if exc.status != 404:
                raise
        return {}

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the resource's status subresource."""
        return self._request(
            "patch", "PATCH", PLURAL + "/status", path(KIND, namespace, name, "status"),
            query=[("fieldManager", FIELD_MANAGER)],
            body={"status": dict(patch)}, content_type="application/merge-patch+json",
        )  # fmt: skip

    def post_event(self, owner: facts.Resource, type_: str, reason: str, message: str, now: str) -> None:
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
