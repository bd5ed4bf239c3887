"""Helpers shared by the tests in tests/kube: bounded waits, HTTP, processes killed by PID,
kubectl, the proxy binary. Imported by the test modules (pytest puts this directory on
sys.path), fixtures live in conftest.py.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROXY = pathlib.Path(os.environ.get("PORTICO_PROXY_BIN", ROOT / "target/debug/portico-proxy"))
OPERATOR = pathlib.Path(os.environ.get("PORTICO_OPERATOR_BIN", ROOT / "target/debug/portico-operator"))


# A wait's deadline only bounds how long a failure takes to show, so no wait gives up sooner
# than this, whatever `timeout` a test names (the machine may be small and busy: a debug
# build, kubectl and a Python API server on two cores).
MIN_WAIT = 60


def wait_for(what, timeout, fn, interval=0.05):
    """Calls `fn` until it returns something truthy (returned) or `max(timeout, MIN_WAIT)`
    seconds pass."""
    timeout = max(timeout, MIN_WAIT)
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


def http(method, url, body=None, timeout=30, headers=None):
    """(status, text) of one request; HTTP errors are answers, not exceptions. The timeout
    only bounds a hung request: a slow answer on a busy machine is still an answer."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def http_get(url, timeout=30, headers=None):
    return http("GET", url, timeout=timeout, headers=headers)


def metric(admin, name):
    """The value of an unlabelled metric on `admin`'s /metrics, None when absent."""
    _, text = http_get(f"http://{admin}/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def free_port():
    """A port free right now on 127.0.0.1 (for programs that cannot report an ephemeral one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def stop(self, p, timeout=30):
        """SIGTERM, then SIGKILL after `timeout` s; returns the exit status."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        return p.returncode

    def stop_all(self):
        for _, p in reversed(self.procs):
            self.stop(p)

    def log(self, name):
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self):
        """Every log, for assertion messages."""
        return "\n".join(f"--- {name}.log ---\n{self.log(name)[-4000:]}" for name, _ in self.procs)


def write_kubeconfig(path, server, namespace):
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        f"clusters:\n- name: test\n  cluster:\n    server: {server}\n"
        "users:\n- name: test\n  user:\n    token: test-token\n"
        f"contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: {namespace}\n"
    )
    return path


def run_kubectl(kubeconfig, *args, stdin=None, check=True, timeout=60):
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    r = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout)
    if check:
        assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
    return r.stdout


def start_proxy(procs, tmp, args, name="proxy"):
    """Starts portico-proxy on ephemeral ports; returns (process, listen, admin)."""
    ready = tmp / f"{name}-ready.json"
    p = procs.start(name, [str(PROXY), *args, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                           "--ready-file", str(ready), "--log-format", "text", "--workers", "1"])
    addrs = wait_for(f"{name} ready file", 20, lambda: p.poll() is None and ready.exists() and json.loads(ready.read_text()))
    return p, addrs["listen"], addrs["admin"]


def start_kube_server(procs, tmp, name="kube-server"):
    """Starts kube_server.py (kmock) on 127.0.0.1; returns (process, base URL)."""
    import sys

    port_file = tmp / f"{name}.port"
    server = procs.start(name, [sys.executable, str(HERE / "kube_server.py"), str(port_file)])
    port = wait_for(f"{name} port", 20, lambda: server.poll() is None and port_file.exists() and port_file.read_text().strip())
    return server, f"http://127.0.0.1:{port}"
