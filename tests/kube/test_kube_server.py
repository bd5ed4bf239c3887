"""The test API server itself (kube_server.py): label and field selectors on lists and watches,
driven with the real kubectl and with raw HTTP watches, so that a client relying on a selector
(the operator's `portico.dev/secret` filter on Secrets, the proxy's `metadata.name` field
selector) sees what an API server would show it.

Every wait is bounded; the server is killed by PID on teardown. Needs no Portico binary.
"""

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from kube_helpers import MIN_WAIT, run_kubectl, start_kube_server, write_kubeconfig

NS = "sel"


@pytest.fixture()
def api(procs, tmp_path):
    _, url = start_kube_server(procs, tmp_path)
    return {"url": url, "kubeconfig": write_kubeconfig(tmp_path / "kubeconfig.yaml", url, NS)}


def kubectl(api, *args, stdin=None, check=True):
    return run_kubectl(api["kubeconfig"], *args, stdin=stdin, check=check)


def secret(name, labels=None, type_="Opaque", ns=NS):
    meta = {"name": name, "namespace": ns, **({"labels": labels} if labels is not None else {})}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": type_, "stringData": {"v": name}}


def apply(api, *objs):
    kubectl(api, "apply", "--validate=false", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def names(api, *args):
    out = kubectl(api, "get", "secrets", "-o", "json", *args)
    return sorted(o["metadata"]["name"] for o in json.loads(out)["items"])


SECRETS = [
    secret("plain"),
    secret("marked", {"portico.dev/secret": "true"}),
    secret("marked-team-a", {"portico.dev/secret": "true", "team": "a"}),
    secret("team-b", {"team": "b"}),
    secret("tls", {"team": "c"}, type_="kubernetes.io/tls"),
    secret("elsewhere", {"portico.dev/secret": "true"}, ns="other"),
]


LABEL_CASES = [
    ("portico.dev/secret", ["marked", "marked-team-a"]),
    ("!portico.dev/secret", ["plain", "team-b", "tls"]),
    ("portico.dev/secret=true", ["marked", "marked-team-a"]),
    ("portico.dev/secret==true,team=a", ["marked-team-a"]),
    ("team!=a", ["marked", "plain", "team-b", "tls"]),  # != also matches an absent key
    ("team in (a, b)", ["marked-team-a", "team-b"]),
    ("team notin (a,b)", ["marked", "plain", "tls"]),  # notin also matches an absent key
    ("team,team notin (c)", ["marked-team-a", "team-b"]),
    ("team=z", []),
]


def test_list_honours_label_selectors(api):
    apply(api, *SECRETS)
    got = {selector: names(api, "-n", NS, "-l", selector) for selector, _ in LABEL_CASES}
    assert got == dict(LABEL_CASES)


def test_list_honours_field_selectors(api):
    apply(api, *SECRETS)
    assert names(api, "-n", NS, "--field-selector", "metadata.name=tls") == ["tls"]
    assert names(api, "-n", NS, "--field-selector", "metadata.name!=tls,type=Opaque") == ["marked", "marked-team-a", "plain", "team-b"]
    assert names(api, "-A", "--field-selector", "metadata.namespace=other") == ["elsewhere"]
    assert names(api, "-A", "-l", "portico.dev/secret", "--field-selector", "metadata.namespace!=other") == ["marked", "marked-team-a"]


def test_bad_selectors_are_refused(api):
    apply(api, *SECRETS)
    for param, message in [({"labelSelector": "team in a"}, "unable to parse"),
                           ({"fieldSelector": "spec.x=1"}, "not a known field selector")]:
        for watch in ({}, {"watch": "true"}):
            query = urllib.parse.urlencode({**param, **watch})
            r = urllib.request.Request(f"{api['url']}/api/v1/namespaces/{NS}/secrets?{query}")
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(r, timeout=30)
            body = json.loads(e.value.read())
            assert (e.value.code, body["reason"]) == (400, "BadRequest") and message in body["message"], body


class Watch:
    """A raw watch stream: one JSON event per line, each read with a bounded wait."""

    def __init__(self, api, path, **params):
        query = urllib.parse.urlencode({"watch": "true", **params})
        # The timeout only bounds how long a missing event takes to show (MIN_WAIT, kube_helpers).
        self.resp = urllib.request.urlopen(f"{api['url']}{path}?{query}", timeout=MIN_WAIT)

    def next(self):
        line = self.resp.readline()  # bounded by the socket timeout above
        assert line, "the watch ended"
        event = json.loads(line)
        return event["type"], event["object"]["metadata"]["name"]

    def close(self):
        self.resp.close()


def test_watch_honours_selectors_and_sends_transitions(api):
    apply(api, secret("marked", {"portico.dev/secret": "true"}), secret("plain"))
    w = Watch(api, f"/api/v1/namespaces/{NS}/secrets", labelSelector="portico.dev/secret")
    try:
        # The initial state: only the matching object.
        assert w.next() == ("ADDED", "marked")
        # A non-matching object is never sent; the next matching change is.
        apply(api, secret("plain", {"other": "x"}))
        apply(api, secret("marked", {"portico.dev/secret": "true", "rev": "2"}))
        assert w.next() == ("MODIFIED", "marked")
        # Gaining the label: ADDED. Losing it: DELETED (as an API server reports leaving the selection).
        apply(api, secret("plain", {"portico.dev/secret": "true"}))
        assert w.next() == ("ADDED", "plain")
        kubectl(api, "label", "secret", "plain", "-n", NS, "portico.dev/secret-")
        assert w.next() == ("DELETED", "plain")
        # Deleting a non-matching object says nothing; deleting a matching one does.
        kubectl(api, "delete", "secret", "plain", "-n", NS)
        kubectl(api, "delete", "secret", "marked", "-n", NS)
        assert w.next() == ("DELETED", "marked")
    finally:
        w.close()


def test_watch_honours_a_field_selector(api):
    apply(api, secret("a"), secret("b"))
    w = Watch(api, f"/api/v1/namespaces/{NS}/secrets", fieldSelector="metadata.name=b")
    try:
        assert w.next() == ("ADDED", "b")
        apply(api, secret("a", {"x": "1"}))
        apply(api, secret("b", {"x": "1"}))
        assert w.next() == ("MODIFIED", "b")
    finally:
        w.close()
