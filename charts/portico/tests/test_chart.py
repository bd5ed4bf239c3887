"""Render checks for the portico chart, without a helm binary.

The Helm SDK comes from PyPI `helm-python-sdk` (it bundles Helm v4 as a native library):
`lint(dir)` is `helm lint`, `Chart.load(dir).render(values, name=, namespace=, is_install=True)`
is `helm template` (returns `{template path: rendered text}`; `lookup` returns empty) and
`Chart.crds` lists the files under `crds/` as `[{"name", "filename", "data"}]`. Rendered objects
are also validated against the Kubernetes OpenAPI schemas with PyPI `kubernetes-validate`
(what kubeconform does, offline).
Run through `scripts/test-chart.sh`, which installs the SDK into a cached venv.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from helm_python.chart import Chart, lint

CHART_DIR = Path(__file__).resolve().parent.parent
RELEASE = "portico"
NAMESPACE = "portico-system"

# The variations the tests render, besides the defaults.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "watch-namespaces": {"watchNamespaces": ["team-a", "team-b"], "labelSelector": "portico.dev/gateway=public"},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "hpa-disabled": {"proxy": {"autoscaling": {"enabled": False}, "replicas": 3}},
    "pdb-max-unavailable": {"proxy": {"podDisruptionBudget": {"maxUnavailable": "25%"}}},
    "pdb-disabled": {"proxy": {"podDisruptionBudget": {"enabled": False}}},
    "load-balancer": {
        "proxy": {
            "service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "loadBalancerSourceRanges": ["10.0.0.0/8"]},
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
            ],
            "podAntiAffinity": "hard",
            "preStopSleepSeconds": 5,
        }
    },
    "redis-bundled": {"redis": {"bundled": {"enabled": True}}},
    "redis-url": {"redis": {"url": "redis://cache.shared.svc:6379/2", "failureMode": "closed"}, "proxy": {"autoscaling": {"maxReplicas": 4}}},
    "redis-secret": {"redis": {"existingSecret": {"name": "portico-redis-url", "key": "uri"}}},
    "custom-names": {
        "gatewayConfig": {"configMapName": "edge-gateway"},
        "operator": {"leaderElection": {"leaseName": "edge-leader"}},
        "image": {"repository": "registry.example/portico", "tag": "1.2.3"},
        "proxy": {"image": {"repository": "registry.example/portico-proxy"}},
    },
}

OPERATOR_CR_PLURALS = {"restapis", "stages", "usageplans", "apikeys", "authorizers"}


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chart():
    c = Chart.load(str(CHART_DIR))
    yield c
    c.close()


def render(chart: Chart, values: dict[str, Any] | None = None, name: str = RELEASE, namespace: str = NAMESPACE) -> list[dict]:
    """`helm template`: every rendered document, parsed (NOTES.txt and empty documents left out)."""
    out = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
    assert out, "render returned nothing"
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert "kind" in doc and "apiVersion" in doc, f"{path}: document without kind/apiVersion"
                doc["__path"] = path
                docs.append(doc)
    return docs


def notes(chart: Chart, values: dict[str, Any] | None = None) -> str:
    out = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, component: str | None = None, name: str | None = None) -> dict:
    found = [
        d
        for d in of_kind(docs, kind)
        if (component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)
        and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} (component={component}, name={name}), got {[d['metadata']['name'] for d in found]}"
    return found[0]


def deployment(docs: list[dict], component: str) -> dict:
    return one(docs, "Deployment", component)


def arg_value(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


def config_map_name(docs: list[dict]) -> str:
    """The ConfigMap name as the operator's args give it; the tests compare everything else to it."""
    return arg_value(deployment(docs, "operator")["spec"]["template"]["spec"]["containers"][0]["args"], "--config-map-name")


def rbac_rules_of(docs: list[dict], component: str) -> list[tuple[dict, dict]]:
    """(role, rule) for every Role/ClusterRole rule of a component."""
    return [
        (role, rule)
        for role in docs
        if role["kind"] in ("Role", "ClusterRole") and role["metadata"]["labels"]["app.kubernetes.io/component"] == component
        for rule in role["rules"]
    ]


@pytest.fixture(scope="session", params=sorted(VARIANTS))
def variant(request, chart):
    """(variant name, values, rendered docs) for each variation."""
    values = VARIANTS[request.param]
    return request.param, values, render(chart, values)


# --- lint --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_lint_has_no_errors(name):
    report = lint(str(CHART_DIR), VARIANTS[name], namespace=NAMESPACE, strict=True)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == [], report
    # Severity 3 is an error, 2 a warning (strict makes warnings fail too); 1 (info) is allowed.
    bad = [m for m in report["messages"] if m["severity"] >= 2]
    assert bad == [], bad


# --- every variant -----------------------------------------------------------------------------


def test_every_container_is_non_root_read_only_with_requests(variant):
    _, values, docs = variant
    deployments = of_kind(docs, "Deployment")
    bundled = values.get("redis", {}).get("bundled", {}).get("enabled", False)
    expected = {"operator", "proxy"} | ({"redis"} if bundled else set())
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} == expected
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c["securityContext"]
            where = f"{d['metadata']['name']}/{c['name']}"
            assert sc["runAsNonRoot"] is True, where
            assert sc["runAsUser"] == 65532, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], where
            assert c["resources"]["limits"]["memory"], where
            if c["name"] == "redis":  # no HTTP: a TCP probe on its port
                assert c["livenessProbe"]["tcpSocket"] == c["readinessProbe"]["tcpSocket"] == {"port": "redis"}, where
                continue
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where


def test_operator_runs_two_replicas_with_leader_election(variant):
    _, _, docs = variant
    op = deployment(docs, "operator")
    assert op["spec"]["replicas"] == 2
    c = op["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["portico-operator"]
    assert c["args"][0] == "run"
    lease = arg_value(c["args"], "--lease-name")
    assert lease
    assert arg_value(c["args"], "--config-map-namespace") == "$(POD_NAMESPACE)"
    assert arg_value(c["args"], "--metrics-listen") == "0.0.0.0:8080"
    assert arg_value(c["args"], "--config-shard-bytes") == "262144"
    pod_ns = next(e for e in c["env"] if e["name"] == "POD_NAMESPACE")
    assert pod_ns["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # The Lease the operator uses is the one its Role names.
    lease_rules = [r for _, r in rbac_rules_of(docs, "operator") if "leases" in r["resources"]]
    assert {tuple(r["verbs"]) for r in lease_rules} == {("create",), ("get", "update", "patch")}
    named = [r for r in lease_rules if r.get("resourceNames")]
    assert [r["resourceNames"] for r in named] == [[lease]]
    assert all(r["apiGroups"] == ["coordination.k8s.io"] for r in lease_rules)


def test_proxy_role_reads_only_the_configmaps_and_its_credentials_secret(variant):
    _, _, docs = variant
    cm = config_map_name(docs)
    rules = rbac_rules_of(docs, "proxy")
    # The credentials Secret is only read with a get (never listed or watched); the shards of a
    # sharded config are listed and watched by label, which RBAC cannot express: list/watch on
    # the release namespace's ConfigMaps, no get, no write.
    assert [r for _, r in rules] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [cm], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [f"{cm}-credentials"], "verbs": ["get"]},
    ]
    assert rules[0][0] is rules[1][0] is rules[2][0], "one Role"
    role, _ = rules[0]
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == NAMESPACE
    binding = one(docs, "RoleBinding", "proxy")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    sa = deployment(docs, "proxy")["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]


def test_operator_rbac_is_least_privilege(variant):
    _, _, docs = variant
    rules = [r for _, r in rbac_rules_of(docs, "operator")]
    assert rules
    allowed: dict[tuple[str, str], set[str]] = {
        **{("portico.dev", p): {"get", "list", "watch"} for p in OPERATOR_CR_PLURALS},
        **{("portico.dev", f"{p}/status"): {"get", "patch", "update"} for p in OPERATOR_CR_PLURALS},
        ("", "secrets"): {"get", "list", "watch", "create", "patch"},
        ("", "services"): {"get", "list", "watch"},
        ("", "events"): {"create", "patch"},
        ("events.k8s.io", "events"): {"create", "patch"},
        ("", "configmaps"): {"create", "get", "patch", "update", "list", "delete"},
        ("coordination.k8s.io", "leases"): {"create", "get", "update", "patch"},
    }
    for r in rules:
        assert "*" not in r["verbs"], r
        assert "*" not in r["resources"] and "*" not in r["apiGroups"], r
        assert "nonResourceURLs" not in r, r
        for group in r["apiGroups"]:
            for resource in r["resources"]:
                assert (group, resource) in allowed, f"unexpected grant {group}/{resource}: {r}"
                extra = set(r["verbs"]) - allowed[(group, resource)]
                assert not extra, f"{group}/{resource} grants {extra}"
        # Leases: only `create` may come without resourceNames. ConfigMaps: also the shards'
        # list (by label), patch and delete, whose names follow the config's size.
        if "leases" in r["resources"] and set(r["verbs"]) != {"create"}:
            assert r.get("resourceNames"), r
        if "configmaps" in r["resources"] and not r.get("resourceNames"):
            assert set(r["verbs"]) <= {"create", "list", "patch", "delete"}, r
            assert "watch" not in r["verbs"] and "get" not in r["verbs"], r
    secrets = {v for r in rules if "secrets" in r["resources"] and not r.get("resourceNames") for v in r["verbs"]}
    assert secrets <= {"get", "list", "watch", "create"}
    # Writes beyond `create` only to the credentials Secret, in the release namespace.
    cm = config_map_name(docs)
    named = [
        (role, r) for role, r in rbac_rules_of(docs, "operator") if "secrets" in r["resources"] and r.get("resourceNames")
    ]
    assert [r for _, r in named] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [f"{cm}-credentials"], "verbs": ["get", "patch"]}
    ]
    role, _ = named[0]
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == NAMESPACE
    creates = [r for role, r in rbac_rules_of(docs, "operator") if role is named[0][0] and "secrets" in r["resources"]]
    assert {tuple(r["verbs"]) for r in creates} == {("create",), ("get", "patch")}, "create (SSA creates it) in the same Role"


def test_configmap_name_is_the_same_everywhere(variant):
    name, values, docs = variant
    cm = config_map_name(docs)
    expected = values.get("gatewayConfig", {}).get("configMapName") or f"{RELEASE}-gateway-config"
    assert cm == expected
    proxy_args = deployment(docs, "proxy")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert arg_value(proxy_args, "--kube-configmap") == f"{NAMESPACE}/{cm}"
    names = {
        tuple(r["resourceNames"])
        for _, r in rbac_rules_of(docs, "operator") + rbac_rules_of(docs, "proxy")
        if "configmaps" in r["resources"] and r.get("resourceNames")
    }
    assert names == {(cm,)}
    # The credentials Secret: `<ConfigMap name>-credentials`, as the operator and proxy derive it.
    secrets = [
        r["resourceNames"]
        for _, r in rbac_rules_of(docs, "operator") + rbac_rules_of(docs, "proxy")
        if "secrets" in r["resources"] and r.get("resourceNames")
    ]
    assert secrets == [[f"{cm}-credentials"]] * 2


def test_admin_service_is_separate_from_the_public_one(variant):
    _, values, docs = variant
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    public = services[f"{RELEASE}-proxy"]
    admin = services[f"{RELEASE}-proxy-admin"]
    assert public is not admin
    assert public["spec"]["type"] == values.get("proxy", {}).get("service", {}).get("type", "ClusterIP")
    assert [(p["port"], p["targetPort"]) for p in public["spec"]["ports"]] == [(80, "http")]
    for s in services.values():
        if s["spec"]["type"] != "ClusterIP" or s is public:
            assert all(p["port"] != 9901 and p["targetPort"] not in ("admin", 9901) for p in s["spec"]["ports"]), s
    assert admin["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in admin["spec"]["ports"]] == [(9901, "admin")]
    proxy_ports = {
        p["name"]: p["containerPort"] for p in deployment(docs, "proxy")["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert proxy_ports == {"http": 8080, "admin": 9901}
    proxy_args = deployment(docs, "proxy")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert arg_value(proxy_args, "--listen") == "0.0.0.0:8080"
    assert arg_value(proxy_args, "--admin-listen") == "0.0.0.0:9901"


def test_services_select_their_own_pods(variant):
    _, _, docs = variant
    for s in of_kind(docs, "Service"):
        component = s["metadata"]["labels"]["app.kubernetes.io/component"]
        pod_labels = deployment(docs, component)["spec"]["template"]["metadata"]["labels"]
        assert s["spec"]["selector"].items() <= pod_labels.items(), s["metadata"]["name"]
    for d in of_kind(docs, "Deployment"):
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()


def test_service_monitor_only_when_enabled(variant):
    name, values, docs = variant
    monitors = of_kind(docs, "ServiceMonitor")
    if not values.get("serviceMonitor", {}).get("enabled"):
        assert monitors == []
        return
    assert {m["metadata"]["name"] for m in monitors} == {f"{RELEASE}-proxy", f"{RELEASE}-operator"}
    services = of_kind(docs, "Service")
    for m in monitors:
        assert m["apiVersion"] == "monitoring.coreos.com/v1"
        assert m["metadata"]["labels"]["release"] == "prometheus"
        selected = [s for s in services if m["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
        assert len(selected) == 1, [s["metadata"]["name"] for s in selected]
        port_names = {p["name"] for p in selected[0]["spec"]["ports"]}
        assert [e["port"] for e in m["spec"]["endpoints"]] == [next(iter(port_names))]
        assert m["spec"]["endpoints"][0]["path"] == "/metrics"
    by_name = {m["metadata"]["name"]: m for m in monitors}
    scraped = {
        s["metadata"]["name"]
        for m in monitors
        for s in services
        if m["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    }
    assert scraped == {f"{RELEASE}-proxy-admin", f"{RELEASE}-operator-metrics"}, by_name


def test_hpa_and_pdb_follow_values(variant):
    name, values, docs = variant
    proxy_values = values.get("proxy", {})
    proxy = deployment(docs, "proxy")
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    if proxy_values.get("autoscaling", {}).get("enabled", True):
        (hpa,) = hpas
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": proxy["metadata"]["name"]}
        autoscaling = proxy_values.get("autoscaling", {})
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
            autoscaling.get("minReplicas", 2), autoscaling.get("maxReplicas", 10))
        assert hpa["spec"]["metrics"] == [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
        ]
        # The HPA owns the replica count: the Deployment must not fight it on every upgrade.
        assert "replicas" not in proxy["spec"]
    else:
        assert hpas == []
        assert proxy["spec"]["replicas"] == proxy_values["replicas"]
    pdbs = of_kind(docs, "PodDisruptionBudget")
    pdb_values = proxy_values.get("podDisruptionBudget", {})
    if not pdb_values.get("enabled", True):
        assert pdbs == []
        return
    (pdb,) = pdbs
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"] == proxy["spec"]["selector"]["matchLabels"]
    if pdb_values.get("maxUnavailable"):
        assert pdb["spec"] == {**pdb["spec"], "maxUnavailable": pdb_values["maxUnavailable"]}
        assert "minAvailable" not in pdb["spec"]
    else:
        assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]


def test_proxy_pods_spread_and_drain(variant):
    _, values, docs = variant
    proxy_values = values.get("proxy", {})
    pod = deployment(docs, "proxy")["spec"]["template"]["spec"]
    selector = deployment(docs, "proxy")["spec"]["selector"]["matchLabels"]
    anti = pod["affinity"]["podAntiAffinity"]
    if proxy_values.get("podAntiAffinity", "soft") == "soft":
        (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        term = term["podAffinityTerm"]
    else:
        (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == selector
    spread = proxy_values.get("topologySpreadConstraints")
    if spread:
        assert [c["labelSelector"]["matchLabels"] for c in pod["topologySpreadConstraints"]] == [selector]
    else:
        assert "topologySpreadConstraints" not in pod
    args = pod["containers"][0]["args"]
    grace = int(arg_value(args, "--shutdown-grace-seconds"))
    sleep = pod["containers"][0].get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert sleep == proxy_values.get("preStopSleepSeconds", 0)
    assert pod["terminationGracePeriodSeconds"] > grace + sleep


def test_namespaced_objects_live_in_the_release_namespace(variant):
    _, values, docs = variant
    watched = set(values.get("watchNamespaces", []))
    for d in docs:
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            assert "namespace" not in d["metadata"]
            assert d["metadata"]["name"].startswith(f"{NAMESPACE}-"), d["metadata"]["name"]
            continue
        ns = d["metadata"]["namespace"]
        assert ns == NAMESPACE or (d["kind"] in ("Role", "RoleBinding") and ns in watched), (d["kind"], d["metadata"]["name"], ns)


def test_bindings_point_at_rendered_roles_and_service_accounts(variant):
    _, _, docs = variant
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs if d["kind"] in ("Role", "ClusterRole")}
    accounts = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind(docs, "ServiceAccount")}
    for b in docs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ns = b["metadata"].get("namespace") if b["roleRef"]["kind"] == "Role" else None
        assert (b["roleRef"]["kind"], ns, b["roleRef"]["name"]) in roles, b["metadata"]["name"]
        for s in b["subjects"]:
            assert (s["namespace"], s["name"]) in accounts
    for component in ("operator", "proxy"):
        sa = deployment(docs, component)["spec"]["template"]["spec"]["serviceAccountName"]
        assert (NAMESPACE, sa) in accounts


def test_images_and_commands(variant):
    _, values, docs = variant
    image = values.get("image", {})
    repo, tag = image.get("repository", "portico"), image.get("tag", "0.1.0")
    proxy_repo = values.get("proxy", {}).get("image", {}).get("repository") or repo
    op = deployment(docs, "operator")["spec"]["template"]["spec"]["containers"][0]
    px = deployment(docs, "proxy")["spec"]["template"]["spec"]["containers"][0]
    assert op["image"] == f"{repo}:{tag}"
    assert px["image"] == f"{proxy_repo}:{tag}"
    assert op["command"] == ["portico-operator"] and px["command"] == ["portico-proxy"]


# Kubernetes versions whose OpenAPI schemas the rendered objects must satisfy: the chart's
# `kubeVersion` floor and the newest schema kubernetes-validate ships.
MIN_KUBE = "1.25.0"
KUBE_VERSIONS = [MIN_KUBE, kubernetes_validate.latest_version()]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_objects_match_the_kubernetes_schemas(variant, kube_version):
    """Every built-in object validates (strict: no unknown fields) against the API schema."""
    name, values, docs = variant
    if values.get("proxy", {}).get("preStopSleepSeconds") and kube_version == MIN_KUBE:
        pytest.skip("lifecycle.preStop.sleep needs Kubernetes >= 1.30 (documented in values.yaml)")
    checked = 0
    for d in docs:
        if d["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # a Prometheus Operator CRD: no schema bundled
        d = {k: v for k, v in d.items() if k != "__path"}
        try:
            kubernetes_validate.validate(d, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{d['kind']} {d['metadata']['name']} invalid for Kubernetes {kube_version}: {e.message} at {list(e.path)}")
        checked += 1
    assert checked >= 10


def test_pre_stop_sleep_is_rejected_by_old_schemas(chart):
    """Guards the skip above: the 1.25 schema really lacks preStop.sleep, newer ones have it."""
    proxy = deployment(render(chart, VARIANTS["load-balancer"]), "proxy")
    proxy.pop("__path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(proxy, MIN_KUBE, strict=True)
    kubernetes_validate.validate(proxy, "1.30.0", strict=True)


# --- specific variations -----------------------------------------------------------------------


def test_all_namespaces_uses_one_cluster_role(chart):
    docs = render(chart)
    (cr,) = of_kind(docs, "ClusterRole")
    (crb,) = of_kind(docs, "ClusterRoleBinding")
    assert crb["roleRef"]["name"] == cr["metadata"]["name"]
    args = deployment(docs, "operator")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespaces" not in args and "--label-selector" not in args
    crs = {p for r in cr["rules"] if r["apiGroups"] == ["portico.dev"] for p in r["resources"]}
    assert crs == OPERATOR_CR_PLURALS | {f"{p}/status" for p in OPERATOR_CR_PLURALS}


def test_watch_namespaces_use_namespaced_roles_only(chart):
    docs = render(chart, VARIANTS["watch-namespaces"])
    assert of_kind(docs, "ClusterRole") == [] and of_kind(docs, "ClusterRoleBinding") == []
    args = deployment(docs, "operator")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert arg_value(args, "--namespaces") == "team-a,team-b"
    assert arg_value(args, "--label-selector") == "portico.dev/gateway=public"
    watch_roles = [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-operator-watch")]
    assert sorted(r["metadata"]["namespace"] for r in watch_roles) == ["team-a", "team-b"]
    bindings = [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"].endswith("-operator-watch")]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for r in watch_roles:
        assert {p for rule in r["rules"] for p in rule["resources"]} >= OPERATOR_CR_PLURALS | {"secrets", "services", "events"}


def test_names_stay_within_63_characters(chart):
    long_release = "a-very-long-release-name-that-is-53-characters-longgg"[:53]
    docs = render(chart, {"serviceMonitor": {"enabled": True}}, name=long_release, namespace="a-rather-long-namespace-name-for-testing")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for kind, name in names:
        assert len(name) <= 63, (kind, name)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), (kind, name)
    assert len(names) == len(docs), "two objects of one kind share a name"
    services = [n for k, n in names if k == "Service"]
    assert len(set(services)) == 3
    for d in docs:
        for value in d["metadata"]["labels"].values():
            assert len(value) <= 63, value
    cm = config_map_name(docs)
    assert len(cm) <= 63 and cm.endswith("-gateway-config")


def test_grace_period_shorter_than_the_drain_fails_to_render(chart):
    with pytest.raises(Exception, match="terminationGracePeriodSeconds"):
        chart.render({"proxy": {"terminationGracePeriodSeconds": 30}}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def test_ca_bundle_is_mounted_read_only_and_passed_as_ca_file(chart):
    plain = deployment(render(chart), "proxy")["spec"]["template"]["spec"]
    assert "--ca-file" not in plain["containers"][0]["args"]
    assert [v["name"] for v in plain["volumes"]] == ["tmp"]

    docs = render(chart, {"proxy": {"caBundle": {"configMap": "corp-roots", "key": "roots.pem"}}})
    pod = deployment(docs, "proxy")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert arg_value(container["args"], "--ca-file") == "/etc/portico/ca/roots.pem"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "ca-bundle"]
    assert mount == {"name": "ca-bundle", "mountPath": "/etc/portico/ca", "readOnly": True}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "ca-bundle"]
    assert volume["configMap"] == {"name": "corp-roots"}


def test_cache_encryption_key_is_a_mounted_secret_passed_as_a_file(chart):
    plain = deployment(render(chart), "proxy")["spec"]["template"]["spec"]
    assert "--cache-encryption-key-file" not in plain["containers"][0]["args"]

    docs = render(chart, {"proxy": {"cacheEncryptionKey": {"secretName": "portico-cache-key"}}})
    pod = deployment(docs, "proxy")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert arg_value(container["args"], "--cache-encryption-key-file") == "/etc/portico/cache-key/key"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "cache-key"]
    assert mount == {"name": "cache-key", "mountPath": "/etc/portico/cache-key", "readOnly": True}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "cache-key"]
    assert volume["secret"]["secretName"] == "portico-cache-key"
    # The key is a Secret's: nothing of it in any ConfigMap the chart renders.
    assert all("cache-key" not in str(d.get("data", "")) for d in docs if d.get("kind") == "ConfigMap")


def test_unknown_anti_affinity_preset_fails_to_render(chart):
    with pytest.raises(Exception, match="podAntiAffinity must be soft, hard or none"):
        chart.render({"proxy": {"podAntiAffinity": "sometimes"}}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def test_notes_say_how_to_apply_the_example_and_call_both_stages(chart):
    text = notes(chart)
    # The example with its in-cluster backends (examples/mobile-backend/k8s/: Deployments,
    # Services, the Stages and Authorizer pointed at them).
    assert "kubectl apply -f examples/mobile-backend/ -f examples/mobile-backend/k8s/\n" in text
    assert "deploy/mobile-backend-dev deploy/mobile-backend-prod" in text
    assert f"port-forward svc/{RELEASE}-proxy 8080:80" in text
    for stage in ("dev", "prod"):
        assert f"http://$GATEWAY/{stage}/content/1" in text
    assert "/dev/auth/login" in text and "x-api-key: $KEY" in text
    # No stage is left pointing at 127.0.0.1, and there is nothing to patch by hand.
    assert "127.0.0.1:900" not in text and "kubectl patch" not in text
    repo = CHART_DIR.parent.parent
    assert "example-mobile-key-0123456789abcdef" in (repo / "examples/mobile-backend/usage-plan.yaml").read_text()
    assert (repo / "examples/mobile-backend/k8s/backend.yaml").is_file()


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_example_k8s_manifests_match_the_kubernetes_schemas(kube_version):
    """examples/mobile-backend/k8s/ (what the NOTES apply): the built-in objects validate strictly
    (the kubectl suite's test server has no schemas; tests/kube/test_example_k8s.py checks the rest)."""
    k8s = CHART_DIR.parent.parent / "examples/mobile-backend/k8s"
    docs = [d for f in sorted(k8s.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    builtin = [d for d in docs if d["apiVersion"] in ("v1", "apps/v1")]
    assert sorted(d["kind"] for d in builtin) == ["ConfigMap", "Deployment", "Deployment", "Service", "Service"]
    for d in builtin:
        try:
            kubernetes_validate.validate(d, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{d['kind']} {d['metadata']['name']} invalid for Kubernetes {kube_version}: {e.message} at {list(e.path)}")


# --- Redis (shared rate-limit counters) ----------------------------------------------------------


def proxy_container(docs: list[dict]) -> dict:
    return deployment(docs, "proxy")["spec"]["template"]["spec"]["containers"][0]


def test_expected_replicas_is_the_most_that_may_run(variant):
    """The proxy warns at start-up from this number: the HPA's maximum, or the fixed count."""
    _, values, docs = variant
    proxy_values = values.get("proxy", {})
    if proxy_values.get("autoscaling", {}).get("enabled", True):
        want = proxy_values.get("autoscaling", {}).get("maxReplicas", 10)
        assert one(docs, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] == want
    else:
        want = proxy_values["replicas"]
    assert arg_value(proxy_container(docs)["args"], "--expected-replicas") == str(want)


def test_no_redis_by_default(chart):
    docs = render(chart)
    args = proxy_container(docs)["args"]
    assert "--redis-url" not in args and "--redis-failure-mode" not in args
    assert not [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "redis"]
    assert "PORTICO_REDIS_URL" not in {e["name"] for e in proxy_container(docs)["env"]}


def test_redis_url_is_passed_to_the_proxy(chart):
    values = VARIANTS["redis-url"]
    docs = render(chart, values)
    args = proxy_container(docs)["args"]
    assert arg_value(args, "--redis-url") == "redis://cache.shared.svc:6379/2"
    assert arg_value(args, "--redis-failure-mode") == "closed"
    assert arg_value(args, "--expected-replicas") == "4"
    assert of_kind(docs, "NetworkPolicy") == []
    assert "redis" not in {d["metadata"]["labels"].get("app.kubernetes.io/component") for d in docs}


def test_redis_url_from_a_secret_stays_out_of_the_pod_spec(chart):
    docs = render(chart, VARIANTS["redis-secret"])
    c = proxy_container(docs)
    # The kubelet expands $(PORTICO_REDIS_URL) in args from the container's environment.
    assert arg_value(c["args"], "--redis-url") == "$(PORTICO_REDIS_URL)"
    assert arg_value(c["args"], "--redis-failure-mode") == "open"
    (env,) = [e for e in c["env"] if e["name"] == "PORTICO_REDIS_URL"]
    assert env["valueFrom"] == {"secretKeyRef": {"name": "portico-redis-url", "key": "uri"}}


def test_bundled_redis_is_rendered_and_wired(chart):
    docs = render(chart, VARIANTS["redis-bundled"])
    redis = deployment(docs, "redis")
    assert redis["spec"]["replicas"] == 1, "two Redis replicas would each hold their own counters"
    assert redis["spec"]["strategy"] == {"type": "Recreate"}
    pod = redis["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "redis:7-alpine"
    assert c["command"] == ["redis-server"]
    # In memory only: nothing is written to the read-only root filesystem.
    assert c["args"][c["args"].index("--save") + 1] == "" and arg_value(c["args"], "--appendonly") == "no"
    assert c["ports"] == [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}]
    assert pod["automountServiceAccountToken"] is False
    svc = one(docs, "Service", "redis")
    assert svc["metadata"]["name"] == f"{RELEASE}-redis"
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(6379, "redis")]
    # The proxies point at the Service, by its cluster DNS name.
    assert arg_value(proxy_container(docs)["args"], "--redis-url") == f"redis://{RELEASE}-redis.{NAMESPACE}.svc:6379"
    # Only the proxy pods may connect.
    (policy,) = of_kind(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == redis["spec"]["selector"]["matchLabels"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": deployment(docs, "proxy")["spec"]["selector"]["matchLabels"]}}]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    assert of_kind(render(chart, {"redis": {"bundled": {"enabled": True, "networkPolicy": False}}}), "NetworkPolicy") == []


def test_bundled_and_external_redis_together_fail_to_render(chart):
    for external in ({"url": "redis://r:6379"}, {"existingSecret": {"name": "s"}}):
        with pytest.raises(Exception, match="choose one Redis"):
            chart.render({"redis": {"bundled": {"enabled": True}, **external}}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    with pytest.raises(Exception, match="redis.failureMode must be open or closed"):
        chart.render({"redis": {"url": "redis://r:6379", "failureMode": "sometimes"}}, name=RELEASE, namespace=NAMESPACE, is_install=True)


@pytest.mark.parametrize(("values", "warned"), [
    ({}, "10"),  # the default: HPA up to 10 replicas, no Redis
    ({"proxy": {"autoscaling": {"enabled": False}, "replicas": 3}}, "3"),
    ({"proxy": {"autoscaling": {"enabled": False}, "replicas": 1}}, None),
    ({"proxy": {"autoscaling": {"minReplicas": 1, "maxReplicas": 1}}}, None),
    (VARIANTS["redis-bundled"], None),
    (VARIANTS["redis-url"], None),
    (VARIANTS["redis-secret"], None),
])
def test_notes_warn_when_replicas_run_limits_without_redis(chart, values, warned):
    text = notes(chart, values)
    if warned:
        assert f"WARNING: up to {warned} proxy replicas run without Redis" in text
        assert f"admits up to {warned} times its limits" in text
        assert "redis.bundled.enabled=true" in text and "redis.url=" in text
    else:
        assert "WARNING" not in text
    if values.get("redis"):
        assert "share their counters" in text
        assert "cache.shared.svc" not in text  # a URL may carry a password: never printed


def test_default_image_is_the_one_the_readme_builds_and_loads(chart):
    """`portico:<appVersion>`, IfNotPresent: published nowhere, built and loaded by README's kind/k3d path."""
    docs = render(chart)
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    image = f"portico:{app_version}"
    for component in ("operator", "proxy"):
        c = deployment(docs, component)["spec"]["template"]["spec"]["containers"][0]
        assert (c["image"], c["imagePullPolicy"]) == (image, "IfNotPresent")
    readme = (CHART_DIR.parent.parent / "README.md").read_text()
    assert f"docker build -t {image} ." in readme
    assert f"kind load docker-image {image}" in readme and f"k3d image import {image}" in readme
    dockerfile = (CHART_DIR.parent.parent / "Dockerfile").read_text()
    assert "USER 65532:65532" in dockerfile


# --- CRDs --------------------------------------------------------------------------------------


def test_crds_are_shipped_in_the_chart(chart):
    files = sorted((CHART_DIR / "crds").glob("*.yaml"))
    if not files:
        pytest.skip("charts/portico/crds/ has no YAML yet (generated by `portico-operator crds`)")
    crds = chart.crds
    assert sorted(c["name"] for c in crds) == sorted(f"crds/{f.name}" for f in files)
    objects = [d for c in crds for d in yaml.safe_load_all(c["data"]) if d]
    assert all(d["kind"] == "CustomResourceDefinition" for d in objects)
    groups = {d["spec"]["group"] for d in objects}
    plurals = {d["spec"]["names"]["plural"] for d in objects}
    assert groups == {"portico.dev"}
    # The operator's RBAC names exactly the CRDs the chart installs.
    assert plurals == OPERATOR_CR_PLURALS
    for d in objects:
        kubernetes_validate.validate(d, MIN_KUBE, strict=True)
        assert d["metadata"]["name"] == f"{d['spec']['names']['plural']}.portico.dev"
        assert d["spec"]["scope"] == "Namespaced"
        assert "v1alpha1" in {v["name"] for v in d["spec"]["versions"]}
    # CRDs are installed from crds/, never rendered as templates (helm would then delete them on uninstall).
    assert of_kind(render(chart), "CustomResourceDefinition") == []


# --- values documentation ----------------------------------------------------------------------


def _leaf_paths(values: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= _leaf_paths(value, path + ".")
        else:
            out.add(path)
    return out


def _documented_paths(text: str) -> set[str]:
    """Keys whose line is directly preceded by a `# --` comment (possibly multi-line)."""
    documented, stack, comment = set(), [], []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        m = re.match(r"^( *)([A-Za-z0-9_]+):", line)
        if m:
            indent = len(m.group(1))
            stack = [(i, k) for i, k in stack if i < indent] + [(indent, m.group(2))]
            if any(c.startswith("# --") for c in comment):
                documented.add(".".join(k for _, k in stack))
        comment = []
    return documented


def test_every_value_is_documented_in_values_yaml_and_readme():
    text = (CHART_DIR / "values.yaml").read_text()
    documented = _documented_paths(text)
    leaves = _leaf_paths(yaml.safe_load(text))
    undocumented = sorted(
        leaf for leaf in leaves if not any(leaf == d or leaf.startswith(d + ".") for d in documented)
    )
    assert undocumented == [], f"values without a `# --` comment: {undocumented}"
    readme = (CHART_DIR / "README.md").read_text()
    missing = sorted(d for d in documented if f"`{d}`" not in readme)
    assert missing == [], f"values missing from README.md's table: {missing}"
