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
- the record of served requests is not kept (kmock scans it on every request: quadratic);
- ``apiextensions.k8s.io/v1`` CustomResourceDefinitions are accepted and stored (so the same
  ``kubectl apply -f charts/portico/crds/`` works as on a cluster) but register nothing: the
  portico.dev kinds are declared up front.

- ``labelSelector`` (``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``,
  ``!k``) and ``fieldSelector`` (``metadata.name``, ``metadata.namespace``; ``type`` on Secrets;
  ``=``, ``==``, ``!=``) are honoured on lists AND watches, as an API server does: a watched
  object that stops matching (a label removed) arrives as ``DELETED``, one that starts matching
  as ``ADDED``; a selector that does not parse, or a field the server does not index, is a 400
  ``BadRequest`` (kmock ignores both, so the operator's ``portico.dev/secret`` filter on
  Secrets went unchecked).

Still not emulated (see tests/kube/README.md): pagination, server-side apply field ownership
(an applied key that is left out is not removed), validation, ``/openapi``, watch
``resourceVersion`` (every watch replays all objects) and ``timeoutSeconds``.

Run as a program: ``python kube_server.py PORT_FILE`` serves on 127.0.0.1 (a free port,
written to PORT_FILE once listening) until killed. Resources served: v1 configmaps, secrets,
services, events; apps/v1 deployments (stored only: the example's backend); coordination.k8s.io/v1
leases; the portico.dev/v1alpha1 kinds.
"""

import asyncio
import copy
import datetime
import itertools
import os
import re
import uuid
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
    "apps/v1/deployments": ("Deployment", "deployment"),
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
        # kmock records every request and matches each new one against its reactions by scanning
        # that record (an identity check from the oldest): quadratic, a quarter of a second a
        # request after a few thousand. Nothing here reads the record: keep only this request.
        del self._requests[:-1]
        if request.resource is not None and request.action in (enums.action.LIST, enums.action.WATCH):
            # A bad selector is refused before anything streams (a 400, as an API server does).
            Selectors.of(request)
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
        # kmock ignores labelSelector and fieldSelector.
        selectors = Selectors.of(request)
        payload["items"] = [o for o in payload["items"] if selectors.match(o)]
        return payload

    async def _serve_watch(self, request: rendering.Request):
        """kmock's watch (every live object as ADDED, then the resource's events), filtered by
        the request's selectors the way an API server filters a watch: an object enters the
        stream as ADDED when it starts matching and leaves it as DELETED when it stops."""
        selectors = Selectors.of(request)
        seen: set[tuple] = set()  # (namespace, name) of the objects this watch has sent as present
        async for event in super()._serve_watch(request):
            if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
                yield event  # the b'' that starts the stream
                continue
            obj = event["object"]
            meta = obj.get("metadata") or {}
            key = (meta.get("namespace"), meta.get("name"))
            if event.get("type") == "DELETED":
                if key in seen:
                    seen.discard(key)
                    yield event
            elif selectors.match(obj):
                yield {"type": "MODIFIED" if key in seen else "ADDED", "object": obj}
                seen.add(key)
            elif key in seen:
                seen.discard(key)
                yield {"type": "DELETED", "object": obj}


@attrs.frozen
class BadRequestError(k8s.KubernetesError):
    status: int = 400
    reason: str = "BadRequest"
    message: str = "bad request"


# A label key (optional DNS prefix + name) and value, as the API server's selector parser takes them.
_LABEL_KEY = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9.]*[A-Za-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_REQ = re.compile(rf"^({_LABEL_KEY})\s+(in|notin)\s*\(\s*((?:{_LABEL_VALUE}\s*,\s*)*{_LABEL_VALUE})\s*\)$")
_EQ_REQ = re.compile(rf"^({_LABEL_KEY})\s*(==|=|!=)\s*({_LABEL_VALUE})$")
_EXISTS_REQ = re.compile(rf"^(!?)\s*({_LABEL_KEY})$")
# Fields every resource's list/watch may select on, plus the extra ones an API server indexes
# for some kinds (only those this server serves and a client here might send).
_FIELDS = {"metadata.name", "metadata.namespace"}
_EXTRA_FIELDS = {"secrets": {"type"}}


def _split_top_level(text: str) -> list[str]:
    """Splits a selector on the commas outside parentheses (`a in (x,y),b` is two requirements)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_label_selector(text: str | None) -> list[tuple[str, str, frozenset[str]]]:
    """`labelSelector` as (key, op, values) requirements; op is one of `=`, `!=`, `in`, `notin`,
    `exists`, `!exists`. Raises BadRequestError when it does not parse (empty: no requirement)."""
    reqs: list[tuple[str, str, frozenset[str]]] = []
    if not text or not text.strip():
        return reqs
    for part in _split_top_level(text):
        part = part.strip()
        if m := _SET_REQ.match(part):
            values = frozenset(v.strip() for v in m.group(3).split(","))
            reqs.append((m.group(1), m.group(2), values))
        elif m := _EQ_REQ.match(part):
            reqs.append((m.group(1), "!=" if m.group(2) == "!=" else "=", frozenset([m.group(3)])))
        elif m := _EXISTS_REQ.match(part):
            reqs.append((m.group(2), "!exists" if m.group(1) else "exists", frozenset()))
        else:
            raise BadRequestError(message=f"unable to parse requirement: {part!r} in labelSelector {text!r}")
    return reqs


def parse_field_selector(text: str | None, plural: str) -> list[tuple[str, str, str]]:
    """`fieldSelector` as (field, op, value); op is `=` or `!=`. Raises BadRequestError for a
    requirement that does not parse or a field the API server does not support for `plural`."""
    reqs: list[tuple[str, str, str]] = []
    if not text or not text.strip():
        return reqs
    for part in text.split(","):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise BadRequestError(message=f"invalid selector: {part!r} in fieldSelector {text!r}")
        field, op, value = m.groups()
        if field not in _FIELDS | _EXTRA_FIELDS.get(plural, set()):
            raise BadRequestError(message=f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"')
        reqs.append((field, "!=" if op == "!=" else "=", value))
    return reqs


def _label_matches(labels: dict, key: str, op: str, values: frozenset[str]) -> bool:
    present = key in labels
    if op == "exists":
        return present
    if op == "!exists":
        return not present
    if op in ("=", "in"):
        return present and str(labels[key]) in values
    return not present or str(labels[key]) not in values  # != and notin match an absent key


def _field_value(obj: dict, field: str) -> str:
    value: Any = obj
    for step in field.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    return "" if value is None else str(value)


@attrs.frozen
class Selectors:
    """A list/watch request's `labelSelector` and `fieldSelector`, parsed."""

    labels: list[tuple[str, str, frozenset[str]]]
    fields: list[tuple[str, str, str]]

    @classmethod
    def of(cls, request: rendering.Request) -> "Selectors":
        params = getattr(request, "params", None) or {}
        plural = request.resource.plural if request.resource is not None else ""
        return cls(parse_label_selector(params.get("labelSelector")),
                   parse_field_selector(params.get("fieldSelector"), plural))

    def match(self, obj: dict) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if not all(_label_matches(labels, k, op, vs) for k, op, vs in self.labels):
            return False
        return all((_field_value(obj, f) == v) == (op == "=") for f, op, v in self.fields)


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
