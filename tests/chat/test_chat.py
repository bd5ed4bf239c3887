"""The chat example (examples/chat/) end to end with real clients, as the README's "WebSocket
APIs" walk-through drives it: the portico-proxy binary serving the example's manifests, its
chat function (backend.py) as a process, Python `websockets` clients connecting with JWTs, and
boto3's `apigatewaymanagementapi` client calling the stage's @connections API (SigV4 signed
by botocore, as against AWS).

Everything listens on 127.0.0.1 ephemeral ports; every wait is bounded (a deadline only
bounds how long a failure takes to show); every process is killed by PID at teardown.
Run with scripts/test-chat.sh (a venv with pinned websockets, boto3 and pytest).
"""

import datetime
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
import botocore.config
import botocore.exceptions
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "examples" / "chat"
PROXY = pathlib.Path(os.environ.get("PORTICO_PROXY_BIN", ROOT / "target/debug/portico-proxy"))

# The example's @connections credential (restapi.yaml, management-secret.yaml).
ACCESS_KEY_ID = "AKIAPORTICOCHATEXAMPLE"
SECRET_ACCESS_KEY = "example-only-chat-secret-0123456789abcdef"
HELP = (
    '{"message":"Unknown action. Send {\\"action\\":\\"sendmessage\\",\\"message\\":\\"<text>\\"}'
    ' to talk to everyone in the room."}'
)

# No wait gives up sooner than this: a debug proxy and Python on a busy 2-core machine.
WAIT = 60


def wait_for(what, fn, timeout=WAIT, interval=0.05):
    """Calls `fn` until it returns something truthy (returned) or `timeout` s pass."""
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chat:
    """The example served: portico-proxy on examples/chat (a copy whose function URIs name the
    function's port) and backend.py, both on 127.0.0.1 ephemeral ports."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        fn_port = free_port()
        manifests = tmp / "manifests"
        manifests.mkdir()
        for f in sorted(EXAMPLE.glob("*.yaml")):
            text = f.read_text().replace("127.0.0.1:9002", f"127.0.0.1:{fn_port}")
            (manifests / f.name).write_text(text)
        ready = tmp / "ready.json"
        proxy = self.start("proxy", [str(PROXY), "--manifests", str(manifests), "--listen", "127.0.0.1:0",
                                     "--admin-listen", "127.0.0.1:0", "--ready-file", str(ready),
                                     "--log-format", "text", "--workers", "1"])
        addrs = wait_for("the proxy's ready file",
                         lambda: proxy.poll() is None and ready.exists() and json.loads(ready.read_text()))
        self.listen = addrs["listen"]
        self.stage_url = f"http://{self.listen}/prod"
        self.ws_url = f"ws://{self.listen}/prod"
        self.fn_url = f"http://127.0.0.1:{fn_port}"
        fn = self.start("backend", [sys.executable, str(EXAMPLE / "backend.py"), str(fn_port), self.stage_url])
        wait_for("the chat function", lambda: fn.poll() is None and self.connections() is not None)

    def start(self, name, args):
        log = open(self.tmp / f"{name}.log", "wb")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.procs.append(p)
        return p

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)

    def logs(self):
        return "\n".join(f"--- {f.name} ---\n{f.read_text(errors='replace')[-4000:]}"
                         for f in sorted(self.tmp.glob("*.log")))

    def connections(self):
        """The function's table: {connection id: user}."""
        with urllib.request.urlopen(f"{self.fn_url}/connections", timeout=30) as r:
            return {c["connectionId"]: c["user"] for c in json.load(r)["connections"]}

    def id_of(self, user):
        """The connection id of `user`'s (only) connection, once the function has it."""
        return wait_for(f"{user}'s connection in the function's table",
                        lambda: next((c for c, u in self.connections().items() if u == user), None))

    def connect(self, user=None, token=None, **kw):
        """A `websockets` client on the stage, with `user`'s token (minted by backend.py)."""
        headers = {}
        if user:
            token = token or subprocess.check_output(
                [sys.executable, str(EXAMPLE / "backend.py"), "token", user], text=True).strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return connect(self.ws_url, additional_headers=headers, open_timeout=WAIT, **kw)

    def management(self, secret=SECRET_ACCESS_KEY):
        """boto3's apigatewaymanagementapi client on the stage, as the README makes it."""
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=self.stage_url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=secret,
            config=botocore.config.Config(retries={"max_attempts": 1}, read_timeout=WAIT),
        )


@pytest.fixture()
def chat(tmp_path):
    c = Chat(tmp_path)
    try:
        yield c
    finally:
        c.stop()
        print(c.logs())  # shown by pytest when the test failed


def recv(ws):
    return ws.recv(timeout=WAIT)


def test_the_handshake_needs_a_token_of_the_example_identity_provider(chat):
    with pytest.raises(InvalidStatus) as e, chat.connect():
        pass
    assert e.value.response.status_code == 401
    assert json.loads(e.value.response.body) == {"message": "Unauthorized"}
    # A token whose signature does not verify (its last character changed).
    token = subprocess.check_output([sys.executable, str(EXAMPLE / "backend.py"), "token", "eve"], text=True).strip()
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(InvalidStatus) as e, chat.connect(token=forged):
        pass
    assert e.value.response.status_code == 401
    assert chat.connections() == {}


def test_two_clients_chat_and_unknown_actions_get_the_help_text(chat):
    with chat.connect("ana") as ana, chat.connect("bo") as bo:
        chat.id_of("ana")
        chat.id_of("bo")
        ana.send(json.dumps({"action": "sendmessage", "message": "hi"}))
        assert recv(ana) == "ana: hi"
        assert recv(bo) == "ana: hi"
        bo.send(json.dumps({"action": "sendmessage", "message": "hello ana"}))
        assert recv(ana) == "bo: hello ana"
        assert recv(bo) == "bo: hello ana"
        # $default: a two-way MOCK, answered to the sender only, without the function.
        bo.send(json.dumps({"action": "dance"}))
        assert recv(bo) == HELP
        bo.send("not json")
        assert recv(bo) == HELP
        assert json.loads(HELP)["message"].startswith("Unknown action.")
    # $disconnect: the function forgets both.
    wait_for("the function to forget both connections", lambda: chat.connections() == {})


def test_boto3_posts_describes_and_deletes_connections(chat):
    api = chat.management()
    with chat.connect("ana") as ana, chat.connect("bo", user_agent_header="chat-test-client/1.0") as bo:
        bo_id = chat.id_of("bo")
        chat.id_of("ana")
        before = datetime.datetime.now(datetime.timezone.utc)

        api.post_to_connection(ConnectionId=bo_id, Data=b"psst, from boto3")
        assert recv(bo) == "psst, from boto3"

        info = api.get_connection(ConnectionId=bo_id)
        assert info["ResponseMetadata"]["HTTPStatusCode"] == 200
        connected_at = info.get("ConnectedAt")
        assert isinstance(connected_at, datetime.datetime), f"boto3 parsed no ConnectedAt: {info}"
        assert abs((connected_at - before).total_seconds()) < WAIT, info
        assert info["Identity"]["SourceIp"] == "127.0.0.1", info
        assert info["Identity"]["UserAgent"] == "chat-test-client/1.0", info
        assert isinstance(info.get("LastActiveAt"), datetime.datetime), info

        # DELETE: the socket closes (normally), $disconnect runs, and the id is gone.
        api.delete_connection(ConnectionId=bo_id)
        with pytest.raises(ConnectionClosed) as closed:
            recv(bo)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000, closed.value
        wait_for("the function to forget bo", lambda: bo_id not in chat.connections())
        with pytest.raises(api.exceptions.GoneException) as gone:
            api.post_to_connection(ConnectionId=bo_id, Data=b"x")
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
        assert gone.value.response["Error"]["Code"] == "GoneException"

        # A broadcast after bo left reaches ana only.
        ana.send(json.dumps({"action": "sendmessage", "message": "still here?"}))
        assert recv(ana) == "ana: still here?"


def test_unknown_connections_are_gone_and_forged_signatures_forbidden(chat):
    api = chat.management()
    for call in (lambda: api.post_to_connection(ConnectionId="AAAAAAAAAAAAAAAA", Data=b"x"),
                 lambda: api.get_connection(ConnectionId="AAAAAAAAAAAAAAAA"),
                 lambda: api.delete_connection(ConnectionId="AAAAAAAAAAAAAAAA")):
        with pytest.raises(api.exceptions.GoneException) as gone:
            call()
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410

    with chat.connect("ana") as ana:
        ana_id = chat.id_of("ana")
        forged = chat.management(secret="not-the-example-secret-0123456789")
        for call in (lambda: forged.post_to_connection(ConnectionId=ana_id, Data=b"spoofed"),
                     lambda: forged.get_connection(ConnectionId=ana_id),
                     lambda: forged.delete_connection(ConnectionId=ana_id)):
            with pytest.raises(botocore.exceptions.ClientError) as refused:
                call()
            err = refused.value.response
            assert err["ResponseMetadata"]["HTTPStatusCode"] == 403, err
            assert err["Error"]["Code"] in ("InvalidSignatureException", "ForbiddenException"), err
        # Another access key id, unknown to the API, with the right secret.
        stranger = boto3.client("apigatewaymanagementapi", endpoint_url=chat.stage_url, region_name="us-east-1",
                                aws_access_key_id="AKIANOTLISTEDINTHEAPI", aws_secret_access_key=SECRET_ACCESS_KEY)
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            stranger.post_to_connection(ConnectionId=ana_id, Data=b"spoofed")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        # Nothing reached the socket, and it still works.
        api.post_to_connection(ConnectionId=ana_id, Data=b"only this")
        assert recv(ana) == "only this"


def test_the_function_signs_like_botocore():
    """backend.py's stdlib SigV4 signer agrees with botocore's on the @connections URLs
    (an encoded connection id, a query, unreserved characters)."""
    import hashlib
    import importlib.util

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    spec = importlib.util.spec_from_file_location("chat_backend", EXAMPLE / "backend.py")
    backend = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backend)
    for method, url, body in [
        ("POST", "http://127.0.0.1:8080/prod/@connections/L0SM9cOFvHcCIhw%3D", b"hello"),
        ("GET", "http://127.0.0.1:8080/prod/@connections/abc?x=1&a-b=2&a=b%20c", b""),
        ("DELETE", "http://gw.example:8443/v1/@connections/a~b-c_d.e", b""),
    ]:
        req = AWSRequest(method=method, url=url, data=body,
                         headers={"x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
        SigV4Auth(Credentials(ACCESS_KEY_ID, "s3cret"), "execute-api", "eu-west-1").add_auth(req)
        now = datetime.datetime.strptime(req.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc)
        mine = backend.sigv4_headers(method, url, body, ACCESS_KEY_ID, "s3cret", "eu-west-1", now=now)
        assert mine["authorization"] == req.headers["Authorization"], url


def test_the_example_authorizer_lists_the_identity_keys_public_half():
    """authorizer.yaml's inline JWKS is the public half of the key backend.py signs with."""
    key = json.loads((ROOT / "examples/mobile-backend/identity/signing-key.json").read_text())
    text = (EXAMPLE / "authorizer.yaml").read_text()
    jwks = json.loads(re.search(r"jwks: '(.*)'", text).group(1))
    assert jwks == {"keys": [{k: key[k] for k in ("kty", "kid", "alg", "use", "n", "e")}]}
