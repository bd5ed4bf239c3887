"""The mobile-backend example's in-cluster form (examples/mobile-backend/k8s/): the backend
Deployments and Services, the ConfigMap holding backend.py, and the Stage and Authorizer
pointed at those Services.

- the ConfigMap is the committed backend.py and signing key, byte for byte (it is generated
  with `kubectl create configmap --dry-run`, see its header);
- k8s/stages.yaml and k8s/authorizer.yaml differ from the example's only in the backend
  addresses (and the Stages' descriptions);
- the Deployment's command, run here as written, from the ConfigMap laid out as its volume
  mounts it: it listens on all interfaces (BACKEND_HOST=0.0.0.0) and serves the key set;
- `kubectl apply -f examples/mobile-backend/ -f examples/mobile-backend/k8s/` (the README's
  command) against the test API server with the operator running: every object is accepted and
  the published config sends both stages and the Authorizer to the Services.

Every wait is bounded; every process is killed by PID on teardown.
"""

import json
import os
import socket

import pytest

from kube_helpers import OPERATOR, ROOT, Procs, free_port, http_get, run_kubectl, start_kube_server, wait_for, write_kubeconfig

EXAMPLE = ROOT / "examples/mobile-backend"
K8S = EXAMPLE / "k8s"
CRDS = ROOT / "charts/portico/crds"


@pytest.fixture(scope="module")
def parse(tmp_path_factory):
    """Parses manifest files with kubectl itself (client-side dry run against the test server,
    which kubectl needs for the kinds' mappings; the venv has no YAML parser)."""
    tmp = tmp_path_factory.mktemp("parse")
    procs = Procs(tmp)
    try:
        _, url = start_kube_server(procs, tmp)
        kubeconfig = write_kubeconfig(tmp / "kubeconfig.yaml", url, "default")

        def objects(*paths):
            out = run_kubectl(kubeconfig, "create", "--dry-run=client", "--validate=false", "-o", "json",
                              *[a for p in paths for a in ("-f", str(p))])
            docs, decoder, i = [], json.JSONDecoder(), 0
            while out[i:].strip():  # one JSON document per object, back to back
                i += len(out[i:]) - len(out[i:].lstrip())
                doc, i = decoder.raw_decode(out, i)
                docs.extend(doc["items"] if doc.get("kind") == "List" else [doc])
            return {(o["kind"], o["metadata"]["name"]): o for o in docs}
        yield objects
    finally:
        procs.stop_all()


@pytest.fixture(scope="module")
def k8s_objects(parse):
    return parse(K8S)


def test_configmap_is_the_committed_backend(k8s_objects):
    cm = k8s_objects[("ConfigMap", "mobile-backend-app")]
    assert cm["data"] == {
        "backend.py": (EXAMPLE / "backend.py").read_text(),
        "signing-key.json": (EXAMPLE / "identity/signing-key.json").read_text(),
    }, "k8s/backend-app.yaml is stale: regenerate it with the command in its header"


def test_stages_and_authorizer_differ_only_in_the_backend_addresses(parse, k8s_objects):
    local = parse(EXAMPLE / "stages.yaml", EXAMPLE / "authorizer.yaml")
    for key in [("Stage", "mobile-dev"), ("Stage", "mobile-prod"), ("Authorizer", "mobile-users")]:
        want, got = local[key], k8s_objects[key]
        assert want["metadata"] == got["metadata"], key
        if key[0] == "Stage":
            env = key[1].removeprefix("mobile-")
            assert got["spec"]["variables"] == {"backend": f"mobile-backend-{env}.default.svc:80"}
            strip = lambda spec: {k: v for k, v in spec.items() if k not in ("variables", "description")}  # noqa: E731
        else:
            assert got["spec"]["jwt"]["jwksUri"] == "http://mobile-backend-dev.default.svc:80/.well-known/jwks.json"
            strip = lambda spec: {**spec, "jwt": {k: v for k, v in spec["jwt"].items() if k != "jwksUri"}}  # noqa: E731
        assert strip(want["spec"]) == strip(got["spec"]), key


def test_each_stage_has_a_deployment_and_service_running_the_backend(k8s_objects):
    for env in ("dev", "prod"):
        name = f"mobile-backend-{env}"
        deploy, svc = k8s_objects[("Deployment", name)], k8s_objects[("Service", name)]
        pod = deploy["spec"]["template"]
        assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        (container,) = pod["spec"]["containers"]
        assert container["image"].startswith("python:")
        assert container["command"] == ["python3", "/app/backend.py", "8080", env]
        assert {"name": "BACKEND_HOST", "value": "0.0.0.0"} in container["env"]
        assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(80, "http")]
        assert container["ports"][0] == {"name": "http", "containerPort": 8080, "protocol": "TCP"}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        (volume,) = pod["spec"]["volumes"]
        assert volume["configMap"]["name"] == "mobile-backend-app"


def test_the_deployment_command_serves_from_the_configmap_layout(k8s_objects, procs, tmp_path):
    """The container's command and env, run here on the ConfigMap laid out as the volume mounts it."""
    cm = k8s_objects[("ConfigMap", "mobile-backend-app")]
    deploy = k8s_objects[("Deployment", "mobile-backend-dev")]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    (volume,) = deploy["spec"]["template"]["spec"]["volumes"]
    (mount,) = container["volumeMounts"]
    app = tmp_path / "app"
    for item in volume["configMap"]["items"]:
        (app / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        (app / item["path"]).write_text(cm["data"][item["key"]])
    port = free_port()
    command = [c.replace(mount["mountPath"], str(app)) for c in container["command"]]
    command[command.index("8080")] = str(port)
    env = dict(os.environ, **{e["name"]: e["value"] for e in container["env"]})
    procs.start("backend-from-configmap", command, env=env)
    status, body = wait_for("the backend", 10, lambda: (r := http_get(f"http://127.0.0.1:{port}/.well-known/jwks.json"))[0] == 200 and r)
    assert json.loads(body)["keys"][0]["kid"]
    # Bound to all interfaces (BACKEND_HOST=0.0.0.0), not only loopback: reachable by this
    # machine's own non-loopback address when it has one.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent, only a route chosen
            own = s.getsockname()[0]
        except OSError:
            own = None
    if own and not own.startswith("127."):
        assert http_get(f"http://{own}:{port}/content")[0] == 200


def test_readme_apply_command_is_accepted_and_published(procs, tmp_path):
    """`kubectl apply -f examples/mobile-backend/ -f examples/mobile-backend/k8s/` + the operator."""
    _, url = start_kube_server(procs, tmp_path)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig.yaml", url, "default")
    run_kubectl(kubeconfig, "apply", "--validate=false", "-f", str(CRDS))
    run_kubectl(kubeconfig, "apply", "--validate=false", "-f", str(EXAMPLE), "-f", str(K8S))
    admin = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    env.pop("POD_NAMESPACE", None)
    env.pop("PORTICO_NAMESPACES", None)
    op = procs.start("operator", [
        str(OPERATOR), "run", "--namespaces", "default", "--config-map-namespace", "portico-system",
        "--disable-leader-election", "--debounce-ms", "100", "--metrics-listen", admin, "--log-format", "text",
    ], env=env)
    cm = wait_for("the published ConfigMap", 20, lambda: op.poll() is None and json.loads(run_kubectl(
        kubeconfig, "get", "configmap", "portico-gateway-config", "-n", "portico-system", "-o", "json")))
    config = cm["data"]["gateway-config.json"]
    for env_name in ("dev", "prod"):
        assert f"mobile-backend-{env_name}.default.svc:80" in config
    assert "http://mobile-backend-dev.default.svc:80/.well-known/jwks.json" in config
    assert "127.0.0.1:900" not in config

    def all_accepted():
        for kind in ("restapis", "stages", "authorizers", "usageplans", "apikeys"):
            for obj in json.loads(run_kubectl(kubeconfig, "get", kind, "-n", "default", "-o", "json"))["items"]:
                conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
                if conds.get("Accepted", {}).get("status") != "True":
                    return None
        return True
    wait_for("every example object Accepted=True", 15, all_accepted)
    # The API key resolved: its Secret carries the label the operator's Secret watch selects on.
    key = json.loads(run_kubectl(kubeconfig, "get", "apikey", "mobile-app", "-n", "default", "-o", "json"))
    assert key["status"].get("keyId"), key["status"]
