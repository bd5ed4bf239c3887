"""End to end: kubectl + an API-compatible test server (kmock, kube_server.py) + the real
portico-proxy binary following a ConfigMap with --kube-configmap.

Every wait is bounded; every process started here is killed by PID on teardown.
Run through scripts/test-kube.sh (builds the proxy, keeps the venv).
"""

import base64
import copy
import gzip
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROXY = pathlib.Path(os.environ.get("PORTICO_PROXY_BIN", ROOT / "target/debug/portico-proxy"))
FIXTURE = json.loads((HERE / "fixtures/gateway-config.json").read_text())
NS, NAME = "demo", "portico-gateway-config"


def wait_for(what, timeout, fn, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def http_get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(admin, name):
    _, text = http_get(f"http://{admin}/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def config_with_body(body):
    doc = copy.deepcopy(FIXTURE)
    doc["apis"][0]["routes"][0]["integration"]["body"] = body
    return doc


class Procs:
    """Processes started by a test, killed by PID at teardown."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def start(self, name, args, **kw):
        log = open(self.tmp / f"{name}.log", "wb")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kw)
        self.procs.append((name, p))
        return p

    def stop(self, p, timeout=10):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def stop_all(self):
        for _, p in reversed(self.procs):
            self.stop(p)

    def log(self, name):
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture()
def procs(tmp_path):
    p = Procs(tmp_path)
    yield p
    p.stop_all()


@pytest.fixture()
def api(procs, tmp_path):
    """The test API server and a kubeconfig pointing at it."""
    port_file = tmp_path / "port"
    server = procs.start("kube-server", [sys.executable, str(HERE / "kube_server.py"), str(port_file)])
    port = wait_for("kube_server port", 20, lambda: port_file.exists() and port_file.read_text().strip())
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        f"clusters:\n- name: test\n  cluster:\n    server: http://127.0.0.1:{port}\n"
        "users:\n- name: test\n  user:\n    token: test-token\n"
        f"contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: {NS}\n"
    )
    return {"server": server, "kubeconfig": kubeconfig, "tmp": tmp_path}


def kubectl(api, *args, stdin=None):
    env = dict(os.environ, KUBECONFIG=str(api["kubeconfig"]))
    r = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
    return r.stdout


def apply_configmap(api, *, json_text=None, gzip_text=None):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": NS}}
    if json_text is not None:
        cm["data"] = {"gateway-config.json": json_text}
    if gzip_text is not None:
        cm["binaryData"] = {"gateway-config.json.gz": base64.b64encode(gzip.compress(gzip_text.encode())).decode()}
    kubectl(api, "apply", "--validate=false", "-f", "-", stdin=json.dumps(cm))


def start_proxy(procs, tmp, args, name="proxy"):
    ready = tmp / f"{name}-ready.json"
    p = procs.start(name, [str(PROXY), *args, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                           "--ready-file", str(ready), "--log-format", "text", "--workers", "1"])
    addrs = wait_for(f"{name} ready file", 20, lambda: p.poll() is None and ready.exists() and json.loads(ready.read_text()))
    return p, addrs["listen"], addrs["admin"]


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
