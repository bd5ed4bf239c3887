#!/usr/bin/env python3
"""Generates a multi-tenant Portico fleet as manifests for `portico-proxy --manifests DIR`.

    gen.py fleet  --apis N --routes R --keys K --out DIR [--authorizers A] [--plans P]
                  [--per-file 1000 | --single-file] [--backend 127.0.0.1:18280]
    gen.py change {key|route|stagevar} --out DIR      # one-object change, written atomically

The fleet (all in namespace `default`):

- N RestApis `t00000` ...: each with R/N routes (the remainder spread over the first APIs): the
  resources /r00, /r01, ... each get a GET and, while routes remain, a POST. Every GET needs an
  API key (`apiKeyRequired`); with A > 0 authorizers it also needs a JWT (API i uses authorizer
  i % A). Every method is HTTP_PROXY to `http://${stageVariables.backend}/${stageVariables.ver}
  /<api>/<resource>`, so a response (the bench backend echoes the URI) shows the stage variable.
- N Stages, one per API, `stageName` = the API's name: served at /t00000, /t00001, ...
- P UsagePlans `plan-0` ... (default 1), each covering every stage, with a throttle far above
  what one core can send.
- K ApiKeys `key-00000000` ... on plan k % P, each with its Secret (`valueFrom.secretKeyRef`,
  labelled `portico.dev/secret: "true"` as a cluster needs). The value of key k is
  `key_value(k)` (printed by `gen.py value K`).
- A JWT Authorizers `jwt-0` ... (RS256, the mobile example's public key, as bench/run.sh's).

Layout: objects are written in files of at most --per-file objects (`apis-00000.yaml` holds
RestApis with their Stages, `keys-00000.yaml` ApiKeys with their Secrets, then `plans.yaml`,
`authorizers.yaml`); --single-file writes everything as one multi-document `fleet.yaml` (the
parser's case). `fleet.json` next to DIR (not in it: the proxy reads only *.yaml, *.yml and
*.json in DIR, and this one is outside) records the parameters for `change`.

`change` rewrites one file of DIR through a temporary file beside DIR and an atomic rename, and
prints the wall-clock time (seconds since the epoch) of the rename and what to request to see
the change served:
- key:      a new ApiKey (+ Secret) `key-new-<n>` on plan-0, in a new file `zz-new-key-<n>.yaml`;
            check: GET /<first api>/r00 with it answers 200 (403 before).
- route:    the last API gets one more resource `/rnew<n>` (GET, like the others): its file is
            rewritten; check: GET /<last api>/rnew<n> with key 0 answers 200 (403 before).
- stagevar: the last Stage's `ver` becomes `v<n+1>`: its file is rewritten; check: the body of
            GET /<last api>/r00 with key 0 names /v<n+1>/.
Each `change` call builds on the previous ones (the counters live in fleet.json).
"""

import argparse
import hashlib
import json
import os
import sys
import time

NS = "default"
# The mobile example's public key (examples/mobile-backend), as in bench/portico-bench.yaml:
# bench/run.sh mints tokens for it with examples/mobile-backend/backend.py.
JWKS = (
    '{"keys":[{"kty":"RSA","kid":"mobile-example-2026","alg":"RS256","use":"sig","n":"rjq6mFQpZNnln'
    "V5k_2l963gd6JM5HCKqh4RycXpxv08CzdPj9C66BjlBkKxnbd7m8TI_k2zx_KH54mqkNJEqx8NAz08Q0EL0g24mL9aDh"
    "V4XoNDScQC1DFTpqLuzOTRJLIqp_FJGz5plBOUQCd8idrnt2BpbEKwNJdFvKgilRPxBObJHS9T-8WjSGve1QzCbkGH7wz"
    "3sCNRGV9rrCLgpy_JyU7NItZPROsrdWzt9HPMEHmqFVw9Oa3Em7tXsmPxC-7FK4lZtz-nC4VlJfow4A6Avt3yEfhw-E8y"
    'K56TmQvyvxLHfqBAZoDz8mFT8CbhA-aR6z23VnDI4lD6w8dJpLQ","e":"AQAB"}]}'
)
ISSUER = "https://auth.mobile.example"
AUDIENCE = "mobile-app"


def q(s):
    """A YAML scalar, double-quoted (JSON strings are valid YAML)."""
    return json.dumps(s)


def api_name(i):
    return f"t{i:05d}"


def key_name(k):
    return f"key-{k:08d}"


def key_value(k):
    """Key k's value: 40 hex digits, derived from k (reproducible, distinct)."""
    return hashlib.sha256(f"portico-scale-key-{k}".encode()).hexdigest()[:40]


def routes_of(i, p):
    """API i's method count."""
    base, extra = divmod(p["routes"], p["apis"])
    return base + (1 if i < extra else 0)


def rest_api(i, p, extra_resources=0):
    m = max(routes_of(i, p), 1)
    nres = (m + 1) // 2
    posts = m - nres
    name = api_name(i)
    lines = [
        "apiVersion: portico.dev/v1alpha1",
        "kind: RestApi",
        f"metadata: {{name: {name}, namespace: {NS}}}",
        "spec:",
        "  protocol: REST",
        "  resources:",
    ]

    def method(verb, res, keyed):
        uri = f"http://${{stageVariables.backend}}/${{stageVariables.ver}}/{name}/{res}"
        parts = []
        if keyed:
            parts.append("apiKeyRequired: true")
            if p["authorizers"] > 0:
                parts.append("authorizationType: JWT")
                parts.append(f"authorizerRef: {{name: jwt-{i % p['authorizers']}}}")
        parts.append(f"integration: {{type: HTTP_PROXY, uri: {q(uri)}}}")
        return f"        {verb}: {{{', '.join(parts)}}}"

    for j in range(nres):
        res = f"r{j:02d}"
        lines.append(f"    - path: /{res}")
        lines.append("      methods:")
        lines.append(method("GET", res, True))
        if j < posts:
            lines.append(method("POST", res, False))
    for n in range(extra_resources):
        res = f"rnew{n}"
        lines.append(f"    - path: /{res}")
        lines.append("      methods:")
        lines.append(method("GET", res, True))
    return "\n".join(lines)


def stage(i, p, ver="v1"):
    name = api_name(i)
    return "\n".join(
        [
            "apiVersion: portico.dev/v1alpha1",
            "kind: Stage",
            f"metadata: {{name: {name}, namespace: {NS}}}",
            "spec:",
            f"  restApiRef: {{name: {name}}}",
            f"  stageName: {name}",
            f"  variables: {{backend: {q(p['backend'])}, ver: {q(ver)}}}",
            "  accessLogSettings: {enabled: false}",
        ]
    )


def usage_plan(j, p):
    lines = [
        "apiVersion: portico.dev/v1alpha1",
        "kind: UsagePlan",
        f"metadata: {{name: plan-{j}, namespace: {NS}}}",
        "spec:",
        "  throttle: {rateLimit: 10000000.0, burstLimit: 20000000}",
        "  apiStages:",
    ]
    lines += [f"    - stageRef: {{name: {api_name(i)}}}" for i in range(p["apis"])]
    return "\n".join(lines)


def api_key(name, value, plan):
    return "\n".join(
        [
            "apiVersion: portico.dev/v1alpha1",
            "kind: ApiKey",
            f"metadata: {{name: {name}, namespace: {NS}}}",
            "spec:",
            f"  valueFrom: {{secretKeyRef: {{name: {name}, key: value}}}}",
            f"  usagePlanRefs: [{{name: plan-{plan}}}]",
            "---",
            "apiVersion: v1",
            "kind: Secret",
            f"metadata: {{name: {name}, namespace: {NS}, labels: {{portico.dev/secret: \"true\"}}}}",
            f"stringData: {{value: {q(value)}}}",
        ]
    )


def authorizer(j):
    return "\n".join(
        [
            "apiVersion: portico.dev/v1alpha1",
            "kind: Authorizer",
            f"metadata: {{name: jwt-{j}, namespace: {NS}}}",
            "spec:",
            "  type: JWT",
            "  jwt:",
            f"    issuer: {ISSUER}",
            f"    audiences: [{AUDIENCE}]",
            "    algorithms: [RS256]",
            f"    jwks: '{JWKS}'",
        ]
    )


def api_chunks(p):
    """[(file name, [api index, ...])]: RestApi + Stage pairs, per_file objects a file."""
    per = max(p["per_file"] // 2, 1)
    return [
        (f"apis-{c:05d}.yaml", list(range(s, min(s + per, p["apis"]))))
        for c, s in enumerate(range(0, p["apis"], per))
    ]


def api_file(indexes, p):
    docs = []
    for i in indexes:
        extra = p["extra_routes"] if i == p["apis"] - 1 else 0
        ver = f"v{p['ver'] + 1}" if i == p["apis"] - 1 else "v1"
        docs.append(rest_api(i, p, extra))
        docs.append(stage(i, p, ver))
    return docs


def all_files(p):
    """[(file name, [document, ...])] in write order."""
    files = [(name, api_file(ix, p)) for name, ix in api_chunks(p)]
    files.append(("plans.yaml", [usage_plan(j, p) for j in range(p["plans"])]))
    if p["authorizers"] > 0:
        files.append(("authorizers.yaml", [authorizer(j) for j in range(p["authorizers"])]))
    per = max(p["per_file"] // 2, 1)
    for c, s in enumerate(range(0, p["keys"], per)):
        docs = [
            api_key(key_name(k), key_value(k), k % p["plans"])
            for k in range(s, min(s + per, p["keys"]))
        ]
        files.append((f"keys-{c:05d}.yaml", docs))
    return files


def write_atomic(out, name, docs):
    """Writes DIR/name through a temporary file beside DIR (same filesystem) and a rename."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".gen-{os.getpid()}-{name}")
    with open(tmp, "w") as f:
        f.write("\n---\n".join(docs))
        f.write("\n")
    os.replace(tmp, os.path.join(out, name))
    return time.time()


def state_path(out):
    return os.path.join(os.path.dirname(os.path.abspath(out)), "fleet.json")


def cmd_fleet(a):
    p = {
        "apis": a.apis,
        "routes": a.routes,
        "keys": a.keys,
        "authorizers": a.authorizers,
        "plans": a.plans,
        "per_file": a.per_file,
        "single_file": a.single_file,
        "backend": a.backend,
        "extra_routes": 0,
        "ver": 0,
        "new_keys": 0,
    }
    if a.apis < 1 or a.keys < 1 or a.plans < 1 or a.routes < a.apis:
        sys.exit("gen.py: need apis >= 1, routes >= apis, keys >= 1, plans >= 1")
    os.makedirs(a.out, exist_ok=True)
    files = all_files(p)
    if a.single_file:
        files = [("fleet.yaml", [d for _, docs in files for d in docs])]
    total_bytes = 0
    for name, docs in files:
        write_atomic(a.out, name, docs)
        total_bytes += os.path.getsize(os.path.join(a.out, name))
    with open(state_path(a.out), "w") as f:
        json.dump(p, f)
    objects = 2 * a.apis + a.plans + a.authorizers + 2 * a.keys
    print(json.dumps({"files": len(files), "objects": objects, "bytes": total_bytes,
                      "first_api": api_name(0), "last_api": api_name(a.apis - 1),
                      "first_key": key_value(0), "last_key": key_value(a.keys - 1)}))


def cmd_change(a):
    with open(state_path(a.out)) as f:
        p = json.load(f)
    last = p["apis"] - 1
    if a.kind == "key":
        n = p["new_keys"]
        name, value = f"key-new-{n}", key_value(10**9 + n)
        p["new_keys"] += 1
        at = write_atomic(a.out, f"zz-new-key-{n}.yaml", [api_key(name, value, 0)])
        check = {"path": f"/{api_name(0)}/r00", "key": value, "expect": "200"}
    else:
        if a.kind == "route":
            n = p["extra_routes"]
            p["extra_routes"] += 1
            check = {"path": f"/{api_name(last)}/rnew{n}", "key": key_value(0), "expect": "200"}
        else:
            p["ver"] += 1
            check = {"path": f"/{api_name(last)}/r00", "key": key_value(0),
                     "expect": f"/v{p['ver'] + 1}/"}
        if p["single_file"]:
            files = all_files(p)
            name, docs = "fleet.yaml", [d for _, ds in files for d in ds]
        else:
            name, ix = api_chunks(p)[-1]
            docs = api_file(ix, p)
        at = write_atomic(a.out, name, docs)
    with open(state_path(a.out), "w") as f:
        json.dump(p, f)
    check["at"] = f"{at:.6f}"
    print(json.dumps(check))


def cmd_config_change(a):
    """A one-object change made to a compiled GatewayConfig JSON file (what the operator
    publishes; `portico-proxy --config FILE` serves it as a Kubernetes-mode proxy would): a
    new API key on key 0's plans, or the last stage's `ver` variable bumped."""
    with open(a.config) as f:
        cfg = json.load(f)
    if a.kind == "key":
        n = sum(1 for k in cfg["apiKeys"] if k["id"].startswith("apikey/default/key-new-"))
        name, value = f"key-new-{n}", key_value(10**9 + n)
        cfg["apiKeys"].append({
            "id": f"apikey/default/{name}",
            "source": {"kind": "ApiKey", "namespace": "default", "name": name},
            "hash": hashlib.sha256(value.encode()).hexdigest(),
            "enabled": True,
            "usagePlans": cfg["apiKeys"][0]["usagePlans"],
        })
        cfg["apiKeys"].sort(key=lambda k: k["id"])
        check = {"path": f"/{cfg['stages'][0]['basePath'].strip('/')}/r00", "key": value,
                 "expect": "200"}
    else:
        stage = cfg["stages"][-1]
        ver = int(stage["variables"]["ver"].lstrip("v")) + 1
        stage["variables"]["ver"] = f"v{ver}"
        check = {"path": f"/{stage['basePath'].strip('/')}/r00", "key": key_value(0),
                 "expect": f"/v{ver}/"}
    tmp = f"{a.config}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(cfg, f, separators=(",", ":"))
    os.replace(tmp, a.config)
    check["at"] = f"{time.time():.6f}"
    print(json.dumps(check))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fleet", help="write a fleet into --out")
    f.add_argument("--apis", type=int, required=True)
    f.add_argument("--routes", type=int, required=True, help="methods over all APIs")
    f.add_argument("--keys", type=int, required=True)
    f.add_argument("--authorizers", type=int, default=0)
    f.add_argument("--plans", type=int, default=1)
    f.add_argument("--per-file", type=int, default=1000, help="objects per file")
    f.add_argument("--single-file", action="store_true", help="one multi-document fleet.yaml")
    f.add_argument("--backend", default="127.0.0.1:18280", help="host:port of the backend")
    f.add_argument("--out", required=True)
    f.set_defaults(func=cmd_fleet)
    c = sub.add_parser("change", help="a one-object change to the fleet in --out")
    c.add_argument("kind", choices=["key", "route", "stagevar"])
    c.add_argument("--out", required=True)
    c.set_defaults(func=cmd_change)
    cc = sub.add_parser("config-change", help="a one-object change to a compiled config file")
    cc.add_argument("kind", choices=["key", "stagevar"])
    cc.add_argument("--config", required=True)
    cc.set_defaults(func=cmd_config_change)
    v = sub.add_parser("value", help="print key K's value")
    v.add_argument("k", type=int)
    v.set_defaults(func=lambda a: print(key_value(a.k)))
    a = ap.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
