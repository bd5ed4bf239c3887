"""A Kubernetes-API-compatible test server: PyPI ``kmock`` plus the fixes kubectl and watch
clients need (see shared notes on test infra).

Fixes over ``kmock.KubernetesEmulator``:
- the core group is advertised as ``groupVersion: v1`` (kmock says ``/v1``);
- list responses carry ``kind``/``apiVersion`` and a numeric collection ``resourceVersion``;
- every create/update stamps ``metadata.resourceVersion`` (a global counter), so watch events
  and lists carry versions as a real API server's do.

Run as a program: ``python kube_server.py PORT_FILE`` serves on 127.0.0.1 (a free port,
written to PORT_FILE once listening) until killed. Resources served: v1 configmaps, secrets,
services, events; coordination.k8s.io/v1 leases; the portico.dev/v1alpha1 kinds.
"""

import asyncio
import itertools
import os
import signal
import sys
from typing import Any

import kmock
from kmock._internal import enums, rendering

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
VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]


class KubeServer(kmock.KubernetesEmulator):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, (kind, singular) in RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, singular=singular, namespaced=True, verbs=VERBS,
                subresources={"status"} if key.startswith("portico.dev/") else set(),
            )

    async def _handle(self, request: rendering.Request) -> Any:
        # Stamp a fresh resourceVersion into whatever is written, before kmock stores it
        # and emits the watch event.
        if request.resource is not None and isinstance(request.data, dict):
            if request.action in (enums.action.CREATE, enums.action.UPDATE):
                meta = request.data.setdefault("metadata", {})
                if isinstance(meta, dict):
                    meta["resourceVersion"] = str(next(_RV))
        return await super()._handle(request)

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
