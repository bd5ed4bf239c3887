"""End to end: kubectl + the real portico-operator (`run`: watches, debounce, leader election
with a Lease, ConfigMap publishing, status writes, Events) + the real portico-proxy following
the ConfigMap (--kube-configmap) + the mobile-backend example and its sample backend.

Two targets, the same scenarios:
- `kmock`: the API-compatible test server (kube_server.py), always run;
- `cluster`: a real cluster from PORTICO_E2E_KUBECONFIG (kind, k3d, ...); skipped without it.
  The CRDs are applied (and left installed), every object lives in a namespace
  `portico-e2e-<random>` that is created and deleted; operator and proxy run locally.

Every wait is bounded; every process started here is killed by PID on teardown.
Run through scripts/test-kube.sh (builds the binaries, keeps the venv).
"""

import base64
import copy
import datetime
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from kube_helpers import (
    OPERATOR,
    ROOT,
    free_port,
    http,
    http_get,
    metric,
    run_kubectl,
    start_kube_server,
    start_proxy,
    wait_for,
    write_kubeconfig,
)

EXAMPLE = ROOT / "examples/mobile-backend"
CRDS = ROOT / "charts/portico/crds"
CM_NAME = "portico-gateway-config"
KINDS = ["restapis", "stages", "usageplans", "apikeys", "authorizers"]
SKIP_CLUSTER = (
    "real-cluster variant: set PORTICO_E2E_KUBECONFIG to a kind/k3d cluster's kubeconfig to run it "
    "(it applies charts/portico/crds/, creates and deletes a namespace portico-e2e-<random>, and runs "
    "the operator and proxy locally), e.g. PORTICO_E2E_KUBECONFIG=$HOME/.kube/config scripts/test-kube.sh -k cluster"
)


class Cluster:
    """An API server (kmock or real), a kubeconfig for it and the test's namespace."""

    def __init__(self, kind, kubeconfig, namespace, tmp):
        self.kind = kind
        self.kubeconfig = kubeconfig
        self.ns = namespace
        self.tmp = tmp

    def kubectl(self, *args, stdin=None, check=True, timeout=60):
        return run_kubectl(self.kubeconfig, *args, stdin=stdin, check=check, timeout=timeout)

    def apply(self, manifest_text):
        # kmock serves no /openapi, so kubectl cannot validate against it.
        validate = ["--validate=false"] if self.kind == "kmock" else []
        return self.kubectl("apply", *validate, "-f", "-", stdin=manifest_text)

    def get(self, kind, name, namespace=None):
        return json.loads(self.kubectl("get", kind, name, "-n", namespace or self.ns, "-o", "json"))

    def events(self):
        return json.loads(self.kubectl("get", "events.events.k8s.io", "-n", self.ns, "-o", "json"))["items"]


@pytest.fixture(params=["kmock", "cluster"])
def cluster(request, procs, tmp_path):
    if request.param == "cluster":
        kubeconfig = os.environ.get("PORTICO_E2E_KUBECONFIG")
        if not kubeconfig:
            pytest.skip(SKIP_CLUSTER)
    else:
        _, url = start_kube_server(procs, tmp_path)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig.yaml", url, "default")
    c = Cluster(request.param, kubeconfig, f"portico-e2e-{uuid.uuid4().hex[:8]}", tmp_path)
    if c.kind == "cluster":  # kmock serves no namespaces; any name works there
        c.kubectl("create", "namespace", c.ns)
    try:
        c.kubectl("apply", *(["--validate=false"] if c.kind == "kmock" else []), "-f", str(CRDS))
        if c.kind == "cluster":
            c.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                      *[f"crd/{k}.portico.dev" for k in KINDS], timeout=90)
        yield c
    finally:
        # Stop the processes first so nothing recreates objects in the namespace.
        procs.stop_all()
        if c.kind == "cluster":
            c.kubectl("delete", "namespace", c.ns, "--wait=false", check=False, timeout=30)


def example_manifests(ns, backends):
    """The mobile-backend example, moved to `ns`, its stages pointing at `backends`."""
    files = ("restapi.yaml", "restapi-v2.yaml", "stages.yaml", "authorizer.yaml", "usage-plan.yaml")
    text = "\n---\n".join((EXAMPLE / f).read_text() for f in files)
    text = text.replace("namespace: default", f"namespace: {ns}")
    # The dev backend is also the identity provider (login, the Authorizer's jwksUri).
    text = text.replace("127.0.0.1:9000", backends["dev"]).replace("127.0.0.1:9001", backends["prod"])
    # 2 RestApis (v2 is the prod canary), 2 Stages, Authorizer, UsagePlan, ApiKey and its Secret.
    assert text.count(f"namespace: {ns}") == 8, "the example changed: update example_manifests"
    assert backends["dev"] in text and backends["prod"] in text, "the example changed: update example_manifests"
    return text


def start_backends(procs):
    """The example's sample backend, once per stage, on free ports."""
    addrs = {}
    for env in ("dev", "prod"):
        port = free_port()
        procs.start(f"backend-{env}", [sys.executable, str(EXAMPLE / "backend.py"), str(port), env])
        addrs[env] = f"127.0.0.1:{port}"
    for env, addr in addrs.items():
        wait_for(f"backend {env}", 10, lambda a=addr: http_get(f"http://{a}/content")[0] == 200)
    return addrs


def start_operator(procs, c, identity, name="operator", extra=()):
    """portico-operator run against `c`, leader election on; returns (process, admin address)."""
    admin = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, KUBECONFIG=str(c.kubeconfig), RUST_LOG="info,portico_operator=debug")
    env.pop("POD_NAMESPACE", None)
    env.pop("PORTICO_NAMESPACES", None)
    p = procs.start(name, [
        str(OPERATOR), "run",
        "--namespaces", c.ns,
        "--config-map-namespace", c.ns,
        "--identity", identity,
        "--debounce-ms", "100",
        "--resync-seconds", "3",  # the periodic pass that restores a deleted ConfigMap
        "--metrics-listen", admin,
        "--log-format", "text",
        *extra,
    ], env=env)
    wait_for(f"{name} /readyz", 20, lambda: p.poll() is None and http_get(f"http://{admin}/readyz")[0] == 200)
    return p, admin


def rest_api_manifest(c, mutate):
    """The live RestApi as an applyable manifest, its spec changed by `mutate(spec)`."""
    live = c.get("restapi", "mobile-backend")
    spec = copy.deepcopy(live["spec"])
    mutate(spec)
    return json.dumps({
        "apiVersion": live["apiVersion"], "kind": live["kind"],
        "metadata": {"name": "mobile-backend", "namespace": c.ns}, "spec": spec,
    })


def condition(obj, type_):
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def config_version(c):
    cm = c.get("configmap", CM_NAME)
    return (cm["metadata"].get("annotations") or {}).get("portico.dev/config-version")


def lease_holder(c):
    return (c.get("lease", "portico-operator")["spec"] or {}).get("holderIdentity")


def set_signup_body(body):
    def mutate(spec):
        signup = next(r for r in spec["resources"] if r["path"] == "/auth/signup")
        signup["methods"]["POST"]["integration"]["mockResponse"]["body"] = body
    return mutate


CREDENTIALS = '{"username":"ana","password":"s3cret"}'
EXAMPLE_KEY = "example-mobile-key-0123456789abcdef"  # usage-plan.yaml's Secret


def test_operator_publishes_the_example_and_the_proxy_serves_it(procs, cluster):
    c = cluster
    backends = start_backends(procs)
    operator, op_admin = start_operator(procs, c, "op-a")
    proxy, listen, admin = start_proxy(procs, c.tmp, ["--kube-configmap", f"{c.ns}/{CM_NAME}", "--kubeconfig", str(c.kubeconfig)])

    # Leader election is on: the operator holds the Lease (in the ConfigMap's namespace).
    wait_for("the operator leads", 10, lambda: metric(op_admin, "portico_operator_leader") == 1)
    assert lease_holder(c) == "op-a"

    # Objects applied after the operator started arrive through its watches.
    c.apply(example_manifests(c.ns, backends))
    # Login (proxied to the example's identity provider) mints a JWT; the other methods need it.
    login = f"http://{listen}/dev/auth/login"
    signup = f"http://{listen}/dev/auth/signup"
    status, body = wait_for("POST /dev/auth/login served", 20, lambda: (r := http("POST", login, CREDENTIALS))[0] == 200 and r)
    assert json.loads(body)["user"]["username"] == "ana", body
    auth = {"Authorization": f"Bearer {json.loads(body)['token']}"}
    assert http_get(f"http://{listen}/dev/content/1")[0] == 401
    # /content also needs the example's API key: the operator resolved its Secret into a hash.
    assert http_get(f"http://{listen}/dev/content/1", headers=auth)[0] == 403
    auth["x-api-key"] = EXAMPLE_KEY
    status, body = http_get(f"http://{listen}/dev/content/1", headers=auth)
    # 403 here: the key's Secret was not read (it must carry the `portico.dev/secret` label the
    # operator's Secret watch selects on; the test server honours label selectors as a cluster does).
    assert status == 200, (status, body)
    assert (json.loads(body)["env"], json.loads(body)["item"]["id"]) == ("dev", "1"), body
    assert json.loads(body)["user"] == "u-ana", body  # the token's sub, mapped to x-user-id
    status, body = http_get(f"http://{listen}/prod/content/1", headers=auth)
    assert (status, json.loads(body)["env"]) == (200, "prod"), body
    assert http_get(f"http://{admin}/readyz")[0] == 200

    # Statuses: the RestApi is Accepted and Ready; the Stages carry the published version.
    def accepted_and_ready():
        api = c.get("restapi", "mobile-backend")
        a, r = condition(api, "Accepted"), condition(api, "Ready")
        return a and r and a["status"] == "True" and r["status"] == "True" and api
    api = wait_for("RestApi Accepted=True, Ready=True", 10, accepted_and_ready)
    assert condition(api, "Accepted")["reason"] == "Accepted"
    assert api["status"]["observedGeneration"] == api["metadata"]["generation"]
    version = config_version(c)
    assert version and len(version) == 64, version
    for stage in ("mobile-dev", "mobile-prod"):
        # The version of what serves the stage (its own content hash), not the ConfigMap's.
        s = wait_for(f"{stage} configVersion", 10, lambda st=stage: len((s := c.get("stage", st))["status"].get("configVersion") or "") == 64 and s)
        assert condition(s, "Ready")["reason"] == "Published", s["status"]
    assert wait_for("/dev/ invoke URL", 5, lambda: c.get("stage", "mobile-dev")["status"].get("invokeUrls")) == ["http://*/dev/"]
    # Normal Events for the conditions that appeared.
    evs = wait_for("Accepted Event", 10, lambda: [e for e in c.events()
                                                   if e["regarding"]["name"] == "mobile-backend" and e["reason"] == "Accepted"])
    assert evs[0]["type"] == "Normal" and evs[0]["reportingController"] == "portico-operator", evs[0]

    # Settled: a quiet second neither publishes nor writes statuses (no write -> watch -> write loop).
    def counters():
        return (metric(op_admin, "portico_operator_publish_total"), metric(op_admin, "portico_operator_status_patches_total"))

    def quiet_second():
        before = counters()
        time.sleep(1.0)
        return before == counters()
    wait_for("the operator to settle", 10, quiet_second)

    # A change to a MOCK body is published and served; the stages serving that API get a new
    # configVersion (theirs: what serves them changed).
    stage_version = c.get("stage", "mobile-dev")["status"]["configVersion"]
    c.apply(rest_api_manifest(c, set_signup_body('{"id":"t2"}')))
    wait_for("the new signup body", 15, lambda: http("POST", signup, "{}") == (201, '{"id":"t2"}'))
    wait_for("a new configVersion on the Stage", 10, lambda: config_version(c) != version
             and c.get("stage", "mobile-dev")["status"].get("configVersion") not in (None, stage_version))

    # A broken RestApi change: a resource with an invalid path is refused, naming the field.
    def add_bad(spec):
        spec["resources"].append({"path": "/content/{id", "methods": {"GET": {"integration": {
            "type": "MOCK", "mockResponse": {"statusCode": 200, "body": "bad"}}}}})
    c.apply(rest_api_manifest(c, add_bad))
    bad_index = len(c.get("restapi", "mobile-backend")["spec"]["resources"]) - 1
    field = f"spec.resources[{bad_index}].path"
    accepted = wait_for("Accepted=False", 15, lambda: (a := condition(c.get("restapi", "mobile-backend"), "Accepted"))
                        and a["status"] == "False" and a)
    assert accepted["reason"] == "InvalidPath", accepted
    assert field in accepted["message"], accepted
    api = c.get("restapi", "mobile-backend")
    assert condition(api, "Ready")["status"] == "False" and condition(api, "Ready")["reason"] == "NotAccepted"
    assert api["status"]["observedGeneration"] == api["metadata"]["generation"]
    ev = wait_for("InvalidPath Warning Event", 10, lambda: [e for e in c.events()
                                                            if e["regarding"]["name"] == "mobile-backend" and e["reason"] == "InvalidPath"])[0]
    assert ev["type"] == "Warning" and field in ev["note"], ev
    assert ev["regarding"]["kind"] == "RestApi", ev
    # The other routes keep serving.
    assert http("POST", signup, "{}") == (201, '{"id":"t2"}')
    assert http_get(f"http://{listen}/dev/content/1", headers=auth)[0] == 200
    assert http_get(f"http://{listen}/prod/comments", headers=auth)[0] == 200

    # Fixed again: Accepted=True comes back.
    c.apply(rest_api_manifest(c, lambda spec: spec["resources"].pop()))
    wait_for("Accepted=True again", 15, lambda: condition(c.get("restapi", "mobile-backend"), "Accepted")["status"] == "True")

    # prod's canary (mobile-backend-v2) answers a forced request: the backend sees v2.
    forced = dict(auth, **{"x-portico-canary": "always"})
    comments = f"http://{listen}/prod/comments"
    assert json.loads(http_get(comments, headers=forced)[1]).get("api") == "v2"
    # A canary that cannot be served (its RestApi does not exist): the Stage says so, naming the
    # field, with a Warning Event; the stage keeps serving its own API with all of its traffic.
    def canary_api(name):
        c.kubectl("patch", "stage", "mobile-prod", "-n", c.ns, "--type", "merge", "-p",
                  json.dumps({"spec": {"canarySettings": {"restApiRef": {"name": name}}}}))
    canary_api("mobile-backend-v3")
    accepted = wait_for("Stage Accepted=False", 15, lambda: (a := condition(c.get("stage", "mobile-prod"), "Accepted"))
                        and a["status"] == "False" and a)
    assert accepted["reason"] == "InvalidCanary", accepted
    assert "spec.canarySettings.restApiRef.name" in accepted["message"], accepted
    assert "its share goes to the stage's API" in accepted["message"], accepted
    ev = wait_for("InvalidCanary Warning Event", 10, lambda: [e for e in c.events()
                                                              if e["regarding"]["name"] == "mobile-prod" and e["reason"] == "InvalidCanary"])[0]
    assert ev["type"] == "Warning" and ev["regarding"]["kind"] == "Stage", ev
    status, body = wait_for("the base serves forced requests", 15,
                            lambda: (r := http_get(comments, headers=forced))[0] == 200 and "api" not in json.loads(r[1]) and r)
    assert json.loads(body)["env"] == "prod", body
    canary_api("mobile-backend-v2")
    wait_for("Stage Accepted=True again", 15, lambda: condition(c.get("stage", "mobile-prod"), "Accepted")["status"] == "True")
    wait_for("the canary back", 15, lambda: json.loads(http_get(comments, headers=forced)[1]).get("api") == "v2")

    # The ConfigMap is deleted (by hand, by a namespace clean-up, ...): the next resync pass
    # re-reads it and publishes again; the proxy keeps serving the config it has meanwhile.
    current = config_version(c)
    c.kubectl("delete", "configmap", CM_NAME, "-n", c.ns)
    assert http("POST", signup, "{}") == (201, '{"id":"t2"}')
    wait_for("the ConfigMap published again", 15, lambda: config_version(c) == current)

    # SIGTERM: the operator exits cleanly and gives the Lease up; the proxy keeps serving.
    assert procs.stop(operator) == 0, procs.log("operator")
    assert not lease_holder(c), c.get("lease", "portico-operator")
    assert http("POST", signup, "{}") == (201, '{"id":"t2"}')
    assert proxy.poll() is None, procs.log("proxy")


def test_a_second_replica_follows_and_takes_over_when_the_leader_stops(procs, cluster):
    c = cluster
    backends = {"dev": "127.0.0.1:9", "prod": "127.0.0.1:9"}  # never called here
    # Objects that exist before the operator starts arrive through its initial list.
    c.apply(example_manifests(c.ns, backends))
    a, a_admin = start_operator(procs, c, "op-a", name="operator-a")
    wait_for("op-a leads", 10, lambda: metric(a_admin, "portico_operator_leader") == 1)
    first = wait_for("a ConfigMap", 10, lambda: config_version(c))
    b, b_admin = start_operator(procs, c, "op-b", name="operator-b")
    # Two retry periods (2 s each): op-b sees a live Lease held by op-a and stays a follower.
    time.sleep(4.5)
    assert metric(b_admin, "portico_operator_leader") == 0
    assert lease_holder(c) == "op-a"
    assert metric(b_admin, "portico_operator_publish_total") == 0

    # The leader stops and releases the Lease: op-b takes over within a few retry periods and
    # publishes the next change.
    assert procs.stop(a) == 0, procs.log("operator-a")
    wait_for("op-b leads", 10, lambda: metric(b_admin, "portico_operator_leader") == 1)
    assert lease_holder(c) == "op-b"
    assert c.get("lease", "portico-operator")["spec"]["leaseTransitions"] >= 1
    c.apply(rest_api_manifest(c, set_signup_body('{"by":"op-b"}')))
    wait_for("op-b publishes", 15, lambda: config_version(c) != first
             and "op-b" in c.get("configmap", CM_NAME)["data"]["gateway-config.json"])
    assert b.poll() is None, procs.log("operator-b")


def test_an_api_key_without_a_value_gets_a_generated_secret(procs, cluster):
    """Also the single-replica mode: --disable-leader-election leads at once, with no Lease."""
    c = cluster
    _, admin = start_operator(procs, c, "solo", extra=["--disable-leader-election"])
    assert metric(admin, "portico_operator_leader") == 1
    c.apply(json.dumps({"apiVersion": "portico.dev/v1alpha1", "kind": "ApiKey",
                        "metadata": {"name": "e2e-key", "namespace": c.ns}, "spec": {"enabled": True}}))
    key = wait_for("ApiKey status.keyId", 15, lambda: (k := c.get("apikey", "e2e-key")).get("status", {}).get("keyId") and k)
    assert key["status"]["secretName"] == "e2e-key-value", key["status"]
    secret = c.get("secret", "e2e-key-value")
    assert secret["metadata"]["labels"]["portico.dev/secret"] == "true"
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("ApiKey", "e2e-key", key["metadata"]["uid"], True)
    value = base64.b64decode(secret["data"]["value"])
    assert len(value) == 40 and value.isalnum(), value
    assert key["status"]["keyId"] == hashlib.sha256(value).hexdigest()[:8]
    assert value.decode() not in json.dumps(key)
    # No Lease in single-replica mode.
    assert "portico-operator" not in c.kubectl("get", "leases", "-n", c.ns, "-o", "name")


AKID = "AKIAPORTICOKUBE00001"
WS_SECRET = "kube-e2e-secret-access-key-0123456789"
WS_ROTATED = "kube-e2e-rotated-access-key-9876543210"
CREDENTIALS_SECRET = f"{CM_NAME}-credentials"


def sigv4_headers(method, url, secret, body=b"", akid=AKID, region="eu-west-1", service="execute-api"):
    """AWS Signature Version 4 headers (`Authorization`, `X-Amz-Date`), as botocore signs an
    `apigatewaymanagementapi` call: canonical URI = the raw path percent-encoded again, sorted
    query, signed headers `host;x-amz-date`, hex SHA-256 of the body."""
    u = urllib.parse.urlsplit(url)
    amz_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    quote = lambda s: urllib.parse.quote(s, safe="-_.~")  # noqa: E731
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in sorted(urllib.parse.parse_qsl(u.query, keep_blank_values=True)))
    canonical = "\n".join([
        method,
        urllib.parse.quote(u.path, safe="/~"),
        query,
        f"host:{u.netloc}\nx-amz-date:{amz_date}\n",
        "host;x-amz-date",
        hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "X-Amz-Date": amz_date,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders=host;x-amz-date, Signature={signature}",
    }


def websocket_manifests(ns, secret_value):
    """A WebSocket RestApi whose @connections credential names a labelled Secret, and its Stage."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "chat-management", "namespace": ns, "labels": {"portico.dev/secret": "true"}},
         "stringData": {"secretAccessKey": secret_value}},
        {"apiVersion": "portico.dev/v1alpha1", "kind": "RestApi", "metadata": {"name": "chat", "namespace": ns},
         "spec": {"protocol": "WEBSOCKET", "routeSelectionExpression": "$request.body.action",
                  "websocket": {"managementCredentials": [
                      {"accessKeyId": AKID, "secretKeyRef": {"name": "chat-management", "key": "secretAccessKey"}}]},
                  "routes": [{"routeKey": "$connect",
                              "integration": {"type": "MOCK", "mockResponse": {"statusCode": 200}}}]}},
        {"apiVersion": "portico.dev/v1alpha1", "kind": "Stage", "metadata": {"name": "chat-prod", "namespace": ns},
         "spec": {"restApiRef": {"name": "chat"}, "stageName": "prod"}},
    ]})


def test_websocket_management_credentials_reach_the_proxy_through_the_credentials_secret(procs, cluster):
    """The @connections secret travels in Secret `<ConfigMap>-credentials` (never in the
    ConfigMap): a SigV4-signed call is accepted (410 for an unknown connection), a wrong
    signature is 403, and a rotated value reaches the proxy."""
    c = cluster
    _, op_admin = start_operator(procs, c, "solo", extra=["--disable-leader-election"])
    proxy, listen, admin = start_proxy(procs, c.tmp, ["--kube-configmap", f"{c.ns}/{CM_NAME}", "--kubeconfig", str(c.kubeconfig)])
    c.apply(websocket_manifests(c.ns, WS_SECRET))
    url = f"http://{listen}/prod/@connections/AAAAAAAAAAAAAAAA"

    def call(headers):
        """(status, x-amzn-ErrorType) of a GET on `url`."""
        req = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers.get("x-amzn-errortype")
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("x-amzn-errortype")

    def signed_get(secret):
        return call(sigv4_headers("GET", url, secret))

    # Accepted: the signature verifies, and no such connection is open.
    wait_for("a signed @connections call accepted (410)", 20, lambda: signed_get(WS_SECRET) == (410, "GoneException"))
    assert signed_get("not-the-secret-access-key-0123456789") == (403, "InvalidSignatureException")
    assert call({}) == (403, "ForbiddenException")  # not signed at all

    # The ConfigMap names the credential, never its value; the credentials Secret holds it.
    cm = c.get("configmap", CM_NAME)
    text = json.dumps(cm)
    assert WS_SECRET not in text and base64.b64encode(WS_SECRET.encode()).decode() not in text
    assert AKID in cm["data"]["gateway-config.json"] and "chat-management" in cm["data"]["gateway-config.json"]
    creds = c.get("secret", CREDENTIALS_SECRET)
    assert creds["data"] == {f"{c.ns}.chat-management.secretAccessKey": base64.b64encode(WS_SECRET.encode()).decode()}
    version = creds["metadata"]["annotations"]["portico.dev/credentials-version"]
    assert cm["metadata"]["annotations"]["portico.dev/credentials-version"] == version
    assert creds["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "portico-operator"
    assert "portico.dev/secret" not in creds["metadata"]["labels"]

    # Rotation: only the value changes (the config does not); the operator rewrites the Secret
    # and the ConfigMap's annotation, and the proxy verifies with the new value.
    config_before = config_version(c)
    c.apply(websocket_manifests(c.ns, WS_ROTATED))
    wait_for("the rotated secret accepted", 20, lambda: signed_get(WS_ROTATED) == (410, "GoneException"))
    assert signed_get(WS_SECRET) == (403, "InvalidSignatureException")
    assert config_version(c) == config_before
    assert WS_ROTATED not in json.dumps(c.get("configmap", CM_NAME))
    assert metric(admin, "portico_config_reload_success") == 1
    assert proxy.poll() is None, procs.log("proxy")
    assert metric(op_admin, "portico_operator_leader") == 1
