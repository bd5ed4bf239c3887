"""End to end: kubectl + an API-compatible test server (kmock, kube_server.py) + the real
portico-proxy binary following a ConfigMap with --kube-configmap.

Every wait is bounded; every process started here is killed by PID on teardown.
Run through scripts/test-kube.sh (builds the proxy, keeps the venv).
"""

import base64
import copy
import gzip
import json

import pytest

from kube_helpers import HERE, http_get, metric, run_kubectl, start_kube_server, start_proxy, wait_for, write_kubeconfig

FIXTURE = json.loads((HERE / "fixtures/gateway-config.json").read_text())
NS, NAME = "demo", "portico-gateway-config"


def config_with_body(body):
    doc = copy.deepcopy(FIXTURE)
    doc["apis"][0]["routes"][0]["integration"]["body"] = body
    return doc


@pytest.fixture()
def api(procs, tmp_path):
    """The test API server and a kubeconfig pointing at it."""
    server, url = start_kube_server(procs, tmp_path)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig.yaml", url, NS)
    return {"server": server, "kubeconfig": kubeconfig, "tmp": tmp_path}


def kubectl(api, *args, stdin=None):
    return run_kubectl(api["kubeconfig"], *args, stdin=stdin)


def apply_configmap(api, *, json_text=None, gzip_text=None):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": NS}}
    if json_text is not None:
        cm["data"] = {"gateway-config.json": json_text}
    if gzip_text is not None:
        cm["binaryData"] = {"gateway-config.json.gz": base64.b64encode(gzip.compress(gzip_text.encode())).decode()}
    kubectl(api, "apply", "--validate=false", "-f", "-", stdin=json.dumps(cm))


def test_fixture_is_a_valid_gateway_config(procs, tmp_path):
    """The committed fixture loads in --config mode and serves its MOCK body."""
    cfg = tmp_path / "gateway-config.json"
    cfg.write_text(json.dumps(FIXTURE))
    _, listen, _ = start_proxy(procs, tmp_path, ["--config", str(cfg)])
    assert http_get(f"http://{listen}/dev/hello") == (200, "v1")


def test_proxy_follows_the_configmap_through_the_api(procs, api):
    tmp = api["tmp"]
    apply_configmap(api, json_text=json.dumps(config_with_body("v1")))
    assert NAME in kubectl(api, "get", "configmaps", "-n", NS, "-o", "name")

    proxy, listen, admin = start_proxy(procs, tmp, ["--kube-configmap", f"{NS}/{NAME}", "--kubeconfig", str(api["kubeconfig"])])
    wait_for("/readyz 200", 10, lambda: http_get(f"http://{admin}/readyz")[0] == 200)
    assert http_get(f"http://{listen}/dev/hello") == (200, "v1")
    assert metric(admin, "portico_config_source_up") == 1
    assert metric(admin, "portico_config_reload_success") == 1

    # A change is served within a few seconds (the watch delivers it at once).
    apply_configmap(api, json_text=json.dumps(config_with_body("v2")))
    wait_for("v2 served", 5, lambda: http_get(f"http://{listen}/dev/hello") == (200, "v2"))

    # A broken ConfigMap keeps the old config and says so in the metrics.
    apply_configmap(api, json_text="{not json")
    wait_for("reload failure", 5, lambda: metric(admin, "portico_config_reload_success") == 0)
    assert http_get(f"http://{listen}/dev/hello") == (200, "v2")
    assert http_get(f"http://{admin}/readyz")[0] == 200

    # Gzip in binaryData (what the operator writes for large configs), data key removed.
    apply_configmap(api, gzip_text=json.dumps(config_with_body("v3")))
    wait_for("v3 (gzip) served", 5, lambda: http_get(f"http://{listen}/dev/hello") == (200, "v3"))
    assert metric(admin, "portico_config_reload_success") == 1

    # The API server goes away: the proxy keeps serving and reports the source down.
    procs.stop(api["server"])
    wait_for("source down", 15, lambda: metric(admin, "portico_config_source_up") == 0)
    assert http_get(f"http://{listen}/dev/hello") == (200, "v3")
    assert http_get(f"http://{admin}/readyz")[0] == 200
    assert proxy.poll() is None, procs.log("proxy")


def test_proxy_is_not_ready_until_the_configmap_exists(procs, api):
    proxy, listen, admin = start_proxy(procs, api["tmp"], ["--kube-configmap", f"{NS}/{NAME}", "--kubeconfig", str(api["kubeconfig"])])
    wait_for("source up", 10, lambda: metric(admin, "portico_config_source_up") == 1)
    assert http_get(f"http://{admin}/readyz")[0] == 503
    assert http_get(f"http://{listen}/dev/hello")[0] in (403, 404)
    apply_configmap(api, json_text=json.dumps(config_with_body("late")))
    wait_for("/readyz 200", 10, lambda: http_get(f"http://{admin}/readyz")[0] == 200)
    assert http_get(f"http://{listen}/dev/hello") == (200, "late")
