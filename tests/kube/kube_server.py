"""A Kubernetes-API-compatible test server: PyPI ``kmock`` plus the fixes kubectl and watch
clients need (see shared notes on test infra).

Fixes over ``kmock.KubernetesEmulator``:
- the core group is advertised as ``groupVersion: v1`` (kmock says ``/v1``);
- list responses carry ``kind``/``apiVersion`` and a numeric collection ``resourceVersion``;
- every create/update stamps ``metadata.resourceVersion`` (a global counter), so watch events
  and lists carry versions as a real API server's do;
- errors carry the API server's machine-readable ``reason`` (``NotFound``, ``AlreadyExists``,
  ``Conflict``): kmock says ``Object Not Found``, which client libraries (kube-rs
  ``get_opt``, client-go ``IsNotFound``) do not recognise;
- ``PUT`` on a named object replaces it, with optimistic concurrency (a stale
  ``metadata.resourceVersion`` gets 409 Conflict), as leader election needs; kmock has no PUT;
- a server-side apply ``PATCH`` (``application/apply-patch+yaml``) of a missing object creates
  it, as a real API server does (kmock answers 404);
- creates stamp ``uid``, ``creationTimestamp`` and ``generation: 1``; a write of ``spec``
  (not through ``/status``) bumps ``generation``; a ``/status`` write changes only ``status``.
- ``apiextensions.k8s.io/v1`` CustomResourceDefinitions are accepted and stored (so the same
  ``kubectl apply -f charts/portico/crds/`` works as on a cluster) but register nothing: the
  portico.dev kinds are declared up front.

Still not emulated (see tests/kube/README.md): field selectors other than ``metadata.name``,
label selectors, pagination, server-side apply field ownership (an applied key that is left out
is not removed), validation, ``/openapi``, watch ``resourceVersion`` (every watch replays all
objects) and ``timeoutSeconds``.

Run as a program: ``python kube_server.py PORT_FILE`` serves on 127.0.0.1 (a free port,
written to PORT_FILE once listening) until killed. Resources served: v1 configmaps, secrets,
services, events; coordination.k8s.io/v1 leases; the portico.dev/v1alpha1 kinds.
"""

import asyncio
import copy
import datetime
import itertools
import uuid
import os
import signal
import sys
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import enums, k8s, rendering

_RV = itertools.count(1000)

RESOURCES = {
    "v1/configmaps": ("ConfigMap", "configmap"),
    "v1/secrets": ("Secret", "secret"),
    "v1/services": ("Service", "service"),
    "v1/events": ("Event", "event"),
    "coordination.k8s.io/v1/leases": ("Lease", "lease"),
    "events.k8s.io/v1/events": ("Event", "event"),
    "portico.dev/v1alpha1/restapis": ("RestApi", "restapi"),
    "portico.dev/v1alpha1/stages": ("Stage", "stage"),
    "portico.dev/v1alpha1/usageplans": ("UsagePlan", "usageplan"),
    "portico.dev/v1alpha1/apikeys": ("ApiKey", "apikey"),
    "portico.dev/v1alpha1/authorizers": ("Authorizer", "authorizer"),
}
CLUSTER_RESOURCES = {
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", "customresourcedefinition"),
}
REASONS = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict", 422: "Invalid"}
VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]


class KubeServer(kmock.KubernetesEmulator):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, (kind, singular) in RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, singular=singular, namespaced=True, verbs=VERBS,
                subresources={"status"} if key.startswith("portico.dev/") else set(),
            )
        for key, (kind, singular) in CLUSTER_RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(kind=kind, singular=singular, namespaced=False, verbs=VERBS)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, k8s.KubernetesError):
            reason = REASONS.get(exc.status, "InternalError")
            if isinstance(exc, k8s.KubernetesObjectConflictError):
                reason = "AlreadyExists"
            return aiohttp.web.json_response({
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "code": exc.status, "reason": reason, "message": exc.message or repr(exc),
            }, status=exc.status)
        return await super()._render_error(exc)

    def _key(self, request: rendering.Request) -> tuple:
        return (request.resource, request.namespace, request.name)

    def _live(self, key: tuple):
        if key not in self._objects:
            return None
        obj = self._objects[key]
        return None if obj.deleted else obj

    async def _handle(self, request: rendering.Request) -> Any:
        if request.resource is None or not isinstance(request.data, dict):
            return await super()._handle(request)
        status_only = request.subresource == "status"
        if request.method == enums.method.PUT and request.name:
            return await self._put(request, status_only)
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if (request.action == enums.action.UPDATE and ctype == "application/apply-patch+yaml"
                and self._live(self._key(request)) is None and not status_only):
            return await self._apply_create(request)
        if request.action == enums.action.CREATE:
            _stamp_new(request.data)
        elif request.action == enums.action.UPDATE:
            meta = request.data.setdefault("metadata", {})
            if isinstance(meta, dict):
                meta["resourceVersion"] = str(next(_RV))
                live = self._live(self._key(request))
                if status_only:
                    # Only the status moves through /status.
                    for k in list(request.data):
                        if k not in ("status", "metadata", "apiVersion", "kind"):
                            del request.data[k]
                    meta.clear()
                    meta["resourceVersion"] = str(next(_RV))
                elif live is not None and "spec" in request.data:
                    meta["generation"] = int(live.get("metadata", {}).get("generation") or 1) + 1
        return await super()._handle(request)

    async def _put(self, request: rendering.Request, status_only: bool) -> Any:
        key = self._key(request)
        async with self._lock:
            live = self._live(key)
            if live is None:
                raise k8s.KubernetesObjectNotFoundError()
            old = copy.deepcopy(dict(live.last.raw))
            old_meta = old.get("metadata", {})
            want_rv = (request.data.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != old_meta.get("resourceVersion"):
                raise ConflictError()
            if status_only:
                new = old
                new["status"] = request.data.get("status")
            else:
                new = copy.deepcopy(request.data)
                if "status" in old:  # a PUT of the object keeps the status
                    new["status"] = old["status"]
                meta = new.setdefault("metadata", {})
                for k in ("uid", "creationTimestamp", "generation"):
                    if k in old_meta:
                        meta[k] = old_meta[k]
                if new.get("spec") != old.get("spec"):
                    meta["generation"] = int(old_meta.get("generation") or 1) + 1
            new.setdefault("metadata", {})["resourceVersion"] = str(next(_RV))
            live.create(new)
            raw = live.last.raw
            await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})
        return aiohttp.web.json_response(raw)

    async def _apply_create(self, request: rendering.Request) -> Any:
        key = self._key(request)
        data = copy.deepcopy(request.data)
        meta = data.setdefault("metadata", {})
        meta.setdefault("name", request.name)
        if request.namespace:
            meta.setdefault("namespace", request.namespace)
        _stamp_new(data)
        async with self._lock:
            if key in self._objects:
                self._objects[key].create(data)
            else:
                self._objects[key] = data
            raw = self._objects[key].last.raw
            await self._buses[request.resource].put({"type": "ADDED", "object": raw})
        return aiohttp.web.json_response(raw, status=201)

    async def _serve_version(self, request: rendering.Request) -> Any:
        payload = await super()._serve_version(request)
        if request.resource is not None and request.resource.group == "":
            payload["groupVersion"] = request.resource.version
        return payload

    async def _serve_list(self, request: rendering.Request) -> Any:
        payload = await super()._serve_list(request)
        info = self.resources.get(request.resource) if request.resource else None
        kind = (info.kind if info and info.kind else "Object") + "List"
        group = request.resource.group if request.resource else ""
        version = request.resource.version if request.resource else "v1"
        payload["kind"] = kind
        payload["apiVersion"] = f"{group}/{version}" if group else version
        # The counter's next value minus one is the newest version handed out.
        payload["metadata"] = {"resourceVersion": str(_peek_rv())}
        # kmock ignores fieldSelector=metadata.name=X; honour the one form the proxy sends.
        wanted = _field_selector_name(request)
        if wanted is not None:
            payload["items"] = [
                o for o in payload["items"] if o.get("metadata", {}).get("name") == wanted
            ]
        return payload


@attrs.frozen
class ConflictError(k8s.KubernetesError):
    status: int = 409
    reason: str = "Conflict"
    message: str = "the object has been modified; please apply your changes to the latest version and try again"


def _stamp_new(data: dict) -> None:
    meta = data.setdefault("metadata", {})
    if isinstance(meta, dict):
        meta["resourceVersion"] = str(next(_RV))
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["generation"] = 1


def _peek_rv() -> int:
    global _RV
    n = next(_RV)
    _RV = itertools.count(n)
    return n - 1


def _field_selector_name(request: rendering.Request) -> str | None:
    params = getattr(request, "params", None) or {}
    sel = params.get("fieldSelector") if hasattr(params, "get") else None
    if sel and sel.startswith("metadata.name="):
        return sel[len("metadata.name="):]
    return None


async def main(port_file: str) -> None:
    async with KubeServer() as handler, kmock.Server(handler) as server:
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(server.port))
        os.replace(tmp, port_file)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
