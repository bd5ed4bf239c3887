"""End to end, a sharded config (docs/config-distribution.md): kubectl applies a generated fleet
(100 RestApis with a Stage each, 1,000 ApiKeys with their Secrets on one UsagePlan, server-side
applied from a few multi-document files) to the test API server (kube_server.py); the real portico-operator publishes it with a small
`--config-shard-bytes`, so as shard ConfigMaps under an index; the real portico-proxy
(`--kube-configmap`) serves the last tenant's route with the last key. Then one ApiKey (and its
Secret) is applied: it is served, and only one shard ConfigMap and the index were rewritten.

Every wait is bounded; every process started here is killed by PID on teardown.
Run through scripts/test-kube.sh (builds the binaries, keeps the venv).
"""

import json
import os
import time

from kube_helpers import (
    OPERATOR,
    free_port,
    http_get,
    metric,
    run_kubectl,
    start_kube_server,
    start_proxy,
    wait_for,
    write_kubeconfig,
)
from test_operator import CRDS

NS = "portico-shards"
CM_NAME = "portico-gateway-config"
# 200 / 2,000 takes 90 s here (the operator's first pass writes 2,401 statuses and their
# Events); half of it keeps the test well under a minute and still makes dozens of shards.
APIS = 100
KEYS = 1000
SHARD_BYTES = 8192
CONFIG_OF = "portico.dev/config-of"
SHARD_VERSION = "portico.dev/shard-version"
CONFIG_VERSION = "portico.dev/config-version"


def api_name(i):
    return f"t{i:04d}"


def key_name(k):
    return f"k{k:05d}"


def key_value(k):
    return f"shard-test-key-value-{k:05d}"


def tenant(i):
    name = api_name(i)
    return (
        f"apiVersion: portico.dev/v1alpha1\nkind: RestApi\nmetadata: {{name: {name}, namespace: {NS}}}\n"
        "spec:\n  resources:\n    - path: /r\n      methods:\n"
        f"        GET: {{apiKeyRequired: true, integration: {{type: MOCK, mockResponse: {{statusCode: 200, body: {name}}}}}}}\n"
        f"---\napiVersion: portico.dev/v1alpha1\nkind: Stage\nmetadata: {{name: {name}, namespace: {NS}}}\n"
        f"spec: {{restApiRef: {{name: {name}}}, stageName: {name}}}\n"
    )


def plan():
    stages = "".join(f"    - stageRef: {{name: {api_name(i)}}}\n" for i in range(APIS))
    return (
        f"apiVersion: portico.dev/v1alpha1\nkind: UsagePlan\nmetadata: {{name: plan, namespace: {NS}}}\n"
        f"spec:\n  throttle: {{rateLimit: 100000.0, burstLimit: 100000}}\n  apiStages:\n{stages}"
    )


def key(k):
    name = key_name(k)
    return (
        f"apiVersion: portico.dev/v1alpha1\nkind: ApiKey\nmetadata: {{name: {name}, namespace: {NS}}}\n"
        f"spec:\n  valueFrom: {{secretKeyRef: {{name: {name}, key: value}}}}\n  usagePlanRefs: [{{name: plan}}]\n"
        f"---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {NS}, labels: {{portico.dev/secret: \"true\"}}}}\n"
        f"stringData: {{value: {key_value(k)}}}\n"
    )


def write_fleet(directory):
    """The fleet in a few multi-document files."""
    directory.mkdir()
    (directory / "apis.yaml").write_text("---\n".join(tenant(i) for i in range(APIS)))
    (directory / "plan.yaml").write_text(plan())
    for part in range(2):
        keys = range(part * KEYS // 2, (part + 1) * KEYS // 2)
        (directory / f"keys-{part}.yaml").write_text("---\n".join(key(k) for k in keys))


def shard_config_maps(kubeconfig):
    """name -> (resourceVersion, shard hash) of the shard ConfigMaps of CM_NAME."""
    out = run_kubectl(kubeconfig, "get", "configmaps", "-n", NS, "-l", f"{CONFIG_OF}={CM_NAME}", "-o", "json")
    return {
        cm["metadata"]["name"]: (cm["metadata"]["resourceVersion"], (cm["metadata"].get("annotations") or {}).get(SHARD_VERSION))
        for cm in json.loads(out)["items"]
    }


def index_config_map(kubeconfig):
    cm = json.loads(run_kubectl(kubeconfig, "get", "configmap", CM_NAME, "-n", NS, "-o", "json"))
    return cm["metadata"]["resourceVersion"], json.loads(cm["data"]["gateway-config-index.json"])


def test_a_sharded_fleet_is_served_and_one_key_rewrites_one_shard_and_the_index(procs, tmp_path):
    _, url = start_kube_server(procs, tmp_path)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig.yaml", url, NS)
    run_kubectl(kubeconfig, "apply", "--validate=false", "-f", str(CRDS))
    fleet = tmp_path / "fleet"
    write_fleet(fleet)
    started = time.monotonic()
    # Server-side apply: one PATCH per object (client-side apply costs ~80 ms an object here).
    run_kubectl(kubeconfig, "apply", "--server-side", "--validate=false", "-f", str(fleet), timeout=120)
    applied_in = time.monotonic() - started

    admin = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), RUST_LOG="info")
    env.pop("POD_NAMESPACE", None)
    env.pop("PORTICO_NAMESPACES", None)
    operator = procs.start("operator", [
        str(OPERATOR), "run", "--namespaces", NS, "--config-map-namespace", NS,
        "--disable-leader-election", "--debounce-ms", "100", "--metrics-listen", admin,
        "--log-format", "text", "--config-shard-bytes", str(SHARD_BYTES),
    ], env=env)
    wait_for("operator /readyz", 30, lambda: operator.poll() is None and http_get(f"http://{admin}/readyz")[0] == 200)
    _, listen, proxy_admin = start_proxy(procs, tmp_path, ["--kube-configmap", f"{NS}/{CM_NAME}", "--kubeconfig", str(kubeconfig)])

    # The last tenant's route with the last key: the whole fleet is there.
    last = api_name(APIS - 1)
    headers = {"x-api-key": key_value(KEYS - 1)}

    def served(path, hdrs, body):
        status, text = http_get(f"http://{listen}{path}", headers=hdrs)
        return (status, text) == (200, body) or None

    try:
        wait_for(f"GET /{last}/r with the last key", 90, lambda: served(f"/{last}/r", headers, last))
    except AssertionError as e:
        raise AssertionError(f"{e}\n{procs.logs()}") from None
    assert http_get(f"http://{listen}/{last}/r", headers={"x-api-key": "not-a-key"})[0] == 403

    # It was sharded: the index names every shard ConfigMap there is, with its hash.
    index_rv, index = index_config_map(kubeconfig)
    shards = shard_config_maps(kubeconfig)
    assert len(index["shards"]) >= 8, index
    assert {f"{CM_NAME}-{s['name']}": s["hash"] for s in index["shards"]} == {n: h for n, (_, h) in shards.items()}
    assert {s["kind"] for s in index["shards"]} == {"apis", "keys", "plans"}, index
    assert metric(proxy_admin, "portico_config_reload_success") == 1

    # Settled (the first pass's 1,201 status writes done: no publish or status write in a quiet
    # second), then one ApiKey with its Secret.
    def counters():
        return (metric(admin, "portico_operator_publish_total"), metric(admin, "portico_operator_status_patches_total"))

    def quiet_second():
        before = counters()
        time.sleep(1.0)
        return before == counters()
    wait_for("the operator to settle", 120, quiet_second)
    index_rv, index = index_config_map(kubeconfig)
    shards = shard_config_maps(kubeconfig)
    new = KEYS + 10
    run_kubectl(kubeconfig, "apply", "--server-side", "--validate=false", "-f", "-", stdin=key(new))
    try:
        wait_for("the new key served", 60, lambda: served(f"/{last}/r", {"x-api-key": key_value(new)}, last))
    except AssertionError as e:
        raise AssertionError(f"{e}\n{procs.logs()}") from None

    # Exactly one shard ConfigMap (a key shard) and the index were rewritten.
    after_rv, after = index_config_map(kubeconfig)
    after_shards = shard_config_maps(kubeconfig)
    assert after_rv != index_rv and after["version"] != index["version"]
    assert set(after_shards) == set(shards), "same shard names"
    changed = sorted(n for n in shards if after_shards[n] != shards[n])
    assert len(changed) == 1 and changed[0].startswith(f"{CM_NAME}-keys-"), (changed, len(shards))
    assert after_shards[changed[0]][1] != shards[changed[0]][1]
    assert run_kubectl(kubeconfig, "get", "configmap", CM_NAME, "-n", NS, "-o",
                       "jsonpath={.metadata.annotations.portico\\.dev/config-version}") == after["version"]
    # The old keys still work; the proxy never stopped being ready.
    assert served(f"/{api_name(0)}/r", {"x-api-key": key_value(0)}, api_name(0))
    assert http_get(f"http://{proxy_admin}/readyz")[0] == 200
    print(f"fleet applied in {applied_in:.1f}s; {len(shards)} shards")
