//! WebSocket APIs (`protocol: WEBSOCKET`) end to end, with a real WebSocket client
//! (tokio-tungstenite) and real backends: route selection, two-way and one-way routes,
//! `$default` and AWS's error frame, the Lambda events of `$connect`, messages and
//! `$disconnect`, authorizer and API key on `$connect`, limits and their close codes, reloads
//! and SIGTERM.
//!
//! AWS behaviour pinned here: AWS developer guide, "Working with routes for WebSocket APIs"
//! (websocket-api-develop-routes.html: `$request.body.action`, `$default`, the
//! `{"message": "Forbidden", "connectionId", "requestId"}` frame when no route matches),
//! "Setting up a WebSocket API integration request" (the event's `requestContext`), and
//! "Quotas" (128 KB messages, 10-minute idle timeout, 2-hour connections).

use futures::{SinkExt, StreamExt};
use portico_e2e::yaml::stage;
use portico_e2e::{Backend, Client, Proxy};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket API `chat` with `routes` (YAML list items, indented by four spaces) and
/// `websocket` settings (the body of `websocket:`, indented by four spaces, or "").
fn chat_api(routes: &str, websocket: &str) -> String {
    let ws = if websocket.is_empty() {
        String::new()
    } else {
        format!("  websocket:\n{websocket}")
    };
    format!(
        "apiVersion: portico.dev/v1alpha1\nkind: RestApi\nmetadata: {{name: chat, namespace: default}}\nspec:\n  protocol: WEBSOCKET\n  routeSelectionExpression: $request.body.action\n{ws}  routes:\n{routes}"
    )
}

fn chat_stage() -> String {
    stage("chat-prod", "chat", "  stageName: prod\n")
}

async fn connect(
    proxy: &Proxy,
    headers: &[(&str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let url = proxy.url("/prod").replace("http://", "ws://");
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The next text frame (bounded: a frame that never comes fails the test).
async fn next_text(ws: &mut Ws) -> String {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame within 20 s")
            .expect("the socket is open")
            .expect("a frame");
        match m {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The close frame's code (bounded).
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the close within 30 s")
        {
            Some(Ok(Message::Close(f))) => return f.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn messages_pick_their_route_two_way_answers_come_back_one_way_ones_do_not() {
    let backend = Backend::start("chat").await;
    let b = backend.host_port();
    let routes = format!(
        r#"    - routeKey: $connect
      integration: {{type: MOCK, mockResponse: {{statusCode: 200}}}}
    - routeKey: echo
      routeResponseSelectionExpression: $default
      integration: {{type: HTTP_PROXY, uri: 'http://{b}/echo'}}
    - routeKey: note
      integration: {{type: HTTP_PROXY, uri: 'http://{b}/note'}}
    - routeKey: $default
      routeResponseSelectionExpression: $default
      integration: {{type: MOCK, mockResponse: {{statusCode: 200, body: '{{"route":"$default"}}'}}}}
"#
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &chat_api(&routes, "")),
        ("stage.yaml", &chat_stage()),
    ])
    .await;
    let mut ws = connect(&proxy, &[]).await.expect("the handshake");
    // One-way: the backend gets it, nothing comes back; the two-way answer after it is the
    // next frame.
    ws.send(Message::Text(r#"{"action":"note","text":"hi"}"#.into()))
        .await
        .unwrap();
    ws.send(Message::Text(r#"{"action":"echo","text":"hello"}"#.into()))
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(
        (answer["path"].clone(), answer["method"].clone()),
        (json!("/echo"), json!("POST"))
    );
    let got = backend.received();
    assert_eq!(got[0].path, "/note");
    assert_eq!(got[0].body, r#"{"action":"note","text":"hi"}"#);
    assert_eq!(got[1].body, r#"{"action":"echo","text":"hello"}"#);
    // An unknown action, and a message that is not JSON: $default.
    for m in [r#"{"action":"nope"}"#, "plain text"] {
        ws.send(Message::Text(m.into())).await.unwrap();
        assert_eq!(next_text(&mut ws).await, r#"{"route":"$default"}"#);
    }
    ws.close(None).await.unwrap();

    // Without $default, an unmatched message gets AWS's error frame.
    let routes =
        "    - routeKey: only\n      integration: {type: MOCK, mockResponse: {statusCode: 200}}\n";
    proxy.write_manifest("api.yaml", &chat_api(routes, ""));
    portico_e2e::eventually("the reload", Duration::from_secs(20), || async {
        let mut ws = connect(&proxy, &[]).await.ok()?;
        ws.send(Message::Text(r#"{"action":"nope"}"#.into()))
            .await
            .ok()?;
        let frame: Value = serde_json::from_str(&next_text(&mut ws).await).ok()?;
        (frame["message"] == "Forbidden").then_some(frame)
    })
    .await;
}

/// A Lambda-style function behind `$connect`, a message route and `$disconnect`: AWS's
/// WebSocket events, and the function's answer on a two-way route.
#[tokio::test]
async fn functions_get_aws_websocket_events() {
    let events: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = events.clone();
    let (addr, _) = portico_e2e::serve_connections(move |stream| {
        let seen = seen.clone();
        async move {
            use http_body_util::BodyExt;
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let event: Value = serde_json::from_slice(&body).unwrap();
                        seen.lock().unwrap().push(event);
                        let answer = json!({"statusCode": 200, "body": "pong"});
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(answer.to_string())),
                        ))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        }
    })
    .await;
    let f =
        format!("{{type: AWS_PROXY, uri: 'http://{addr}/2015-03-31/functions/chat/invocations'}}");
    let routes = format!(
        "    - routeKey: $connect\n      integration: {f}\n    - routeKey: ping\n      routeResponseSelectionExpression: $default\n      integration: {f}\n    - routeKey: $disconnect\n      integration: {f}\n"
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &chat_api(&routes, "")),
        ("stage.yaml", &chat_stage()),
    ])
    .await;
    let mut ws = connect(&proxy, &[("x-client", "e2e")])
        .await
        .expect("the handshake");
    ws.send(Message::Text(r#"{"action":"ping"}"#.into()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, "pong");
    ws.close(None).await.unwrap();
    let all = portico_e2e::eventually("the $disconnect event", Duration::from_secs(20), || {
        let events = events.clone();
        async move {
            let all = events.lock().unwrap().clone();
            (all.len() == 3).then_some(all)
        }
    })
    .await;
    let rc = |i: usize| all[i]["requestContext"].clone();
    assert_eq!(
        (rc(0)["eventType"].clone(), rc(0)["routeKey"].clone()),
        (json!("CONNECT"), json!("$connect"))
    );
    assert_eq!(all[0]["headers"]["x-client"], "e2e");
    assert_eq!(
        (rc(1)["eventType"].clone(), rc(1)["routeKey"].clone()),
        (json!("MESSAGE"), json!("ping"))
    );
    assert_eq!(all[1]["body"], r#"{"action":"ping"}"#);
    assert_eq!(all[1]["isBase64Encoded"], false);
    assert!(rc(1)["messageId"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(rc(2)["eventType"], "DISCONNECT");
    // One connection id throughout, with its time and the stage.
    let id = rc(0)["connectionId"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    for i in 0..3 {
        assert_eq!(rc(i)["connectionId"], id.as_str());
        assert_eq!(rc(i)["stage"], "prod");
        assert_eq!(rc(i)["messageDirection"], "IN");
        assert_eq!(rc(i)["connectedAt"], rc(0)["connectedAt"]);
        assert_eq!(rc(i)["identity"]["sourceIp"], "127.0.0.1");
    }
}

/// `$connect` decides the handshake: its authorizer and API key, and its integration's
/// status (anything but 2XX refuses the upgrade with it).
#[tokio::test]
async fn connect_refuses_without_the_key_or_when_its_integration_says_no() {
    let routes = r#"    - routeKey: $connect
      apiKeyRequired: true
      integration: {type: MOCK, mockResponse: {statusCode: 200}}
    - routeKey: $default
      routeResponseSelectionExpression: $default
      integration: {type: MOCK, mockResponse: {statusCode: 200, body: ok}}
"#;
    let plan = r#"apiVersion: portico.dev/v1alpha1
kind: UsagePlan
metadata: {name: chat-plan, namespace: default}
spec:
  apiStages: [{stageRef: {name: chat-prod}}]
---
apiVersion: portico.dev/v1alpha1
kind: ApiKey
metadata: {name: chat-key, namespace: default}
spec:
  valueFrom: {secretKeyRef: {name: chat-key, key: value}}
  usagePlanRefs: [{name: chat-plan}]
---
apiVersion: v1
kind: Secret
metadata: {name: chat-key, namespace: default}
stringData: {value: chat-key-0123456789abcdef0123}
"#;
    let proxy = Proxy::start(&[
        ("api.yaml", &chat_api(routes, "")),
        ("stage.yaml", &chat_stage()),
        ("plan.yaml", plan),
    ])
    .await;
    let status = |e: tokio_tungstenite::tungstenite::Error| match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    };
    assert_eq!(status(connect(&proxy, &[]).await.unwrap_err()), 403);
    assert_eq!(
        status(
            connect(&proxy, &[("x-api-key", "wrong-key-0123456789abcdef")])
                .await
                .unwrap_err()
        ),
        403
    );
    let mut ws = connect(&proxy, &[("x-api-key", "chat-key-0123456789abcdef0123")])
        .await
        .expect("the key opens it");
    ws.send(Message::Text("hi".into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "ok");

    // A $connect integration answering 401 refuses the upgrade with 401.
    let routes = "    - routeKey: $connect\n      integration: {type: MOCK, mockResponse: {statusCode: 401, body: no}}\n";
    proxy.write_manifest("api.yaml", &chat_api(routes, ""));
    portico_e2e::eventually("the reload", Duration::from_secs(20), || async {
        match connect(&proxy, &[]).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401 => Some(()),
            _ => None,
        }
    })
    .await;
    // A plain GET (no upgrade) gets 426.
    let r = Client::new().get(&proxy.url("/prod")).await;
    assert_eq!(r.status, 426);
}

/// The limits: a message over maxMessageBytes closes with 1009, a connection idle past
/// idleTimeoutSeconds with 1001 (and not before the timeout: asserted on the time that
/// actually passed), invalid UTF-8 in a text frame with 1007.
#[tokio::test]
async fn limits_close_with_aws_codes() {
    let routes = "    - routeKey: $default\n      integration: {type: MOCK, mockResponse: {statusCode: 200}}\n";
    let settings =
        "    maxMessageBytes: 1024\n    maxFrameBytes: 1024\n    idleTimeoutSeconds: 1\n";
    let proxy = Proxy::start(&[
        ("api.yaml", &chat_api(routes, settings)),
        ("stage.yaml", &chat_stage()),
    ])
    .await;
    let mut ws = connect(&proxy, &[]).await.unwrap();
    ws.send(Message::Text("x".repeat(2000).into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));

    let started = Instant::now();
    let mut ws = connect(&proxy, &[]).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "closed before the idle timeout"
    );

    // A masked text frame whose payload is not UTF-8 (0xff), sent by hand.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = proxy.url("").trim_start_matches("http://").to_string();
    let mut s = raw_handshake(&addr).await;
    let mask = [1u8, 2, 3, 4];
    s.write_all(&[
        0x81,
        0x80 | 1,
        mask[0],
        mask[1],
        mask[2],
        mask[3],
        0xff ^ mask[0],
    ])
    .await
    .unwrap();
    let mut frame = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut frame))
        .await
        .expect("a close frame")
        .unwrap();
    assert_eq!(frame[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1007);
}

/// A reload keeps open sockets (the next message runs on the new config); SIGTERM closes
/// them with 1001 after the grace period and runs `$disconnect` for each.
#[tokio::test]
async fn reloads_keep_sockets_and_sigterm_closes_them_with_1001() {
    let backend = Backend::start("chat").await;
    let b = backend.host_port();
    let routes = |body: &str| {
        format!(
            "    - routeKey: $default\n      routeResponseSelectionExpression: $default\n      integration: {{type: MOCK, mockResponse: {{statusCode: 200, body: {body}}}}}\n    - routeKey: $disconnect\n      integration: {{type: HTTP_PROXY, uri: 'http://{b}/gone'}}\n"
        )
    };
    let mut proxy = Proxy::builder()
        .manifest("api.yaml", &chat_api(&routes("v1"), ""))
        .manifest("stage.yaml", &chat_stage())
        .arg("--shutdown-grace-seconds")
        .arg("1")
        .start()
        .await;
    let mut ws = connect(&proxy, &[]).await.unwrap();
    ws.send(Message::Text("a".into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "v1");
    proxy.write_manifest("api.yaml", &chat_api(&routes("v2"), ""));
    // The same socket, until the reload has happened (bounded).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        ws.send(Message::Text("a".into())).await.unwrap();
        if next_text(&mut ws).await == "v2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload did not reach the open socket"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.sigterm();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
    let status = proxy
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("exits");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        backend
            .received()
            .iter()
            .filter(|r| r.path == "/gone")
            .count(),
        1
    );
}

/// A function that answers every event with its connection id (so the client learns it).
async fn id_echo_function() -> std::net::SocketAddr {
    let (addr, _) = portico_e2e::serve_connections(|stream| async move {
        use http_body_util::BodyExt;
        let svc =
            hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let event: Value = serde_json::from_slice(&body).unwrap();
                let id = event["requestContext"]["connectionId"].clone();
                let answer = json!({"statusCode": 200, "body": id.as_str().unwrap_or_default()});
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(answer.to_string()),
                )))
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
            .await;
    })
    .await;
    addr
}

const AKID: &str = "AKIAPORTICOE2E000001";
const SECRET: &str = "e2e-secret-access-key-0123456789abcdef";

/// Headers of a request signed with AWS Signature Version 4 by the AWS SDK for Rust's signer
/// (`aws-sigv4`), as boto3's `apigatewaymanagementapi` client signs them (service
/// `execute-api`).
fn signed(method: &str, url: &str, body: &[u8], secret: &str) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity = aws_credential_types::Credentials::new(AKID, secret, None, None, "e2e").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-west-1")
        .name("execute-api")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let pairs = [("host", host.as_str())];
    let signable = SignableRequest::new(
        method,
        url,
        pairs.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions
        .headers()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The `@connections` API: a SigV4-signed POST reaches the socket, GET describes the
/// connection, DELETE closes it; a forged signature is 403, an unknown connection 410
/// GoneException (AWS developer guide, "Use @connections commands in your backend service").
#[tokio::test]
async fn the_connections_api_sends_describes_and_closes_with_sigv4() {
    let f = id_echo_function().await;
    let routes = format!(
        "    - routeKey: whoami\n      routeResponseSelectionExpression: $default\n      integration: {{type: AWS_PROXY, uri: 'http://{f}/'}}\n"
    );
    let settings = format!(
        "    managementCredentials:\n      - accessKeyId: {AKID}\n        secretKeyRef: {{name: chat-management, key: secretAccessKey}}\n"
    );
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: chat-management, namespace: default}}\nstringData: {{secretAccessKey: {SECRET}}}\n"
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &chat_api(&routes, &settings)),
        ("stage.yaml", &chat_stage()),
        ("secret.yaml", &secret),
    ])
    .await;
    let mut ws = connect(&proxy, &[("user-agent", "e2e-client")])
        .await
        .unwrap();
    ws.send(Message::Text(r#"{"action":"whoami"}"#.into()))
        .await
        .unwrap();
    let id = next_text(&mut ws).await;
    assert_eq!(id.len(), 16, "{id}");
    let c = Client::new();
    let url = proxy.url(&format!("/prod/@connections/{id}"));
    let call = |method: http::Method, url: String, body: &'static str, secret: &'static str| {
        let c = c.clone();
        async move {
            let h = signed(method.as_str(), &url, body.as_bytes(), secret);
            let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            c.send(method, &url, &h, body).await
        }
    };
    // POST: the message arrives on the socket.
    let r = call(
        http::Method::POST,
        url.clone(),
        "hello from the backend",
        SECRET,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(next_text(&mut ws).await, "hello from the backend");
    // GET: the connection's description.
    let r = call(http::Method::GET, url.clone(), "", SECRET).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let info = r.json();
    // The wire names of AWS's GetConnection (botocore's model: connectedAt, identity,
    // lastActiveAt; boto3 shows them as ConnectedAt, Identity, LastActiveAt).
    assert_eq!(info["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(info["identity"]["userAgent"], "e2e-client");
    assert!(
        info["connectedAt"].as_str().unwrap().ends_with('Z'),
        "{info}"
    );
    assert!(
        info["lastActiveAt"].as_str().unwrap().ends_with('Z'),
        "{info}"
    );
    // A signature made with another secret, or none at all: 403.
    let r = call(
        http::Method::POST,
        url.clone(),
        "x",
        "not-the-secret-0123456789",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.header("x-amzn-errortype"), "InvalidSignatureException");
    let r = c.send(http::Method::POST, &url, &[], "x").await;
    assert_eq!(r.status, 403);
    // An unknown connection: 410 GoneException.
    let other = proxy.url("/prod/@connections/AAAAAAAAAAAAAAAA");
    let r = call(http::Method::POST, other, "x", SECRET).await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-amzn-errortype")),
        (410, "GoneException")
    );
    // DELETE: 204 and the socket closes; then the connection is gone.
    let r = call(http::Method::DELETE, url.clone(), "", SECRET).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Normal));
    let r = portico_e2e::eventually("the connection gone", Duration::from_secs(20), || {
        let call = &call;
        let url = url.clone();
        async move {
            let r = call(http::Method::POST, url, "x", SECRET).await;
            (r.status == 410).then_some(r)
        }
    })
    .await;
    assert_eq!(r.header("x-amzn-errortype"), "GoneException");
}

/// `$connect` behind a REQUEST authorizer (AWS: WebSocket APIs authorize the handshake with a
/// REQUEST function): the function's Deny refuses the upgrade with 403, no identity 401, an
/// Allow opens the socket, and the function's context reaches the message integration.
#[tokio::test]
async fn a_request_authorizer_decides_the_handshake() {
    let (fn_addr, _) = portico_e2e::serve_connections(|stream| async move {
        use http_body_util::BodyExt;
        let svc =
            hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let event: Value = serde_json::from_slice(&body).unwrap();
                let token = event["headers"]["Authorization"]
                    .as_str()
                    .or_else(|| event["headers"]["authorization"].as_str())
                    .unwrap_or_default()
                    .to_string();
                let effect = if token == "let-me-in" {
                    "Allow"
                } else {
                    "Deny"
                };
                let answer = json!({"principalId": "user-7", "context": {"room": "lobby"},
                "policyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Effect": effect, "Action": "execute-api:Invoke", "Resource": "*"}]}});
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(answer.to_string()),
                )))
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
            .await;
    })
    .await;
    let f = id_echo_function().await;
    let _ = f;
    let backend = Backend::start("chat").await;
    let authorizer = format!(
        "apiVersion: portico.dev/v1alpha1\nkind: Authorizer\nmetadata: {{name: gate, namespace: default}}\nspec:\n  type: REQUEST\n  identitySource: [$request.header.Authorization]\n  functionUri: http://{fn_addr}/\n  resultTtlInSeconds: 0\n"
    );
    let routes = format!(
        "    - routeKey: $connect\n      authorizationType: CUSTOM\n      authorizerRef: {{name: gate}}\n      integration: {{type: MOCK, mockResponse: {{statusCode: 200}}}}\n    - routeKey: $default\n      integration:\n        type: HTTP_PROXY\n        uri: 'http://{}/msg'\n        requestParameters:\n          integration.request.header.x-room: context.authorizer.room\n",
        backend.host_port()
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &chat_api(&routes, "")),
        ("stage.yaml", &chat_stage()),
        ("authorizer.yaml", &authorizer),
    ])
    .await;
    let status = |e: tokio_tungstenite::tungstenite::Error| match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    };
    assert_eq!(status(connect(&proxy, &[]).await.unwrap_err()), 401);
    assert_eq!(
        status(
            connect(&proxy, &[("authorization", "nope")])
                .await
                .unwrap_err()
        ),
        403
    );
    let mut ws = connect(&proxy, &[("authorization", "let-me-in")])
        .await
        .unwrap();
    ws.send(Message::Text("hello".into())).await.unwrap();
    let got = portico_e2e::eventually(
        "the message at the backend",
        Duration::from_secs(20),
        || async { backend.received().into_iter().find(|r| r.path == "/msg") },
    )
    .await;
    assert_eq!(got.header("x-room"), "lobby");
    assert_eq!(got.body, "hello");
}

/// Garbage after the handshake (random bytes, frames with huge declared lengths, reserved
/// opcodes) closes that socket and nothing else: the gateway keeps serving. Route selection
/// takes any bytes without failing. Deterministic pseudo-random inputs (fixed seed).
#[tokio::test]
async fn malformed_frames_close_one_socket_and_never_the_gateway() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let routes = "    - routeKey: $default\n      routeResponseSelectionExpression: $default\n      integration: {type: MOCK, mockResponse: {statusCode: 200, body: ok}}\n";
    let proxy = Proxy::start(&[
        ("api.yaml", &chat_api(routes, "")),
        ("stage.yaml", &chat_stage()),
    ])
    .await;
    let addr = proxy.url("").trim_start_matches("http://").to_string();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut cases: Vec<Vec<u8>> = vec![
        // 64-bit length of 2^63 on a binary frame.
        vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
        // Reserved opcode 0x3, RSV bits set, an unmasked client frame.
        vec![0x83, 0x80, 1, 2, 3, 4],
        vec![0xf1, 0x80, 1, 2, 3, 4],
        vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'],
        // A control frame longer than 125 bytes.
        vec![0x89, 0xfe, 0x01, 0x00, 1, 2, 3, 4],
    ];
    for _ in 0..20 {
        cases.push((0..64).map(|_| next() as u8).collect());
    }
    for (i, garbage) in cases.iter().enumerate() {
        let mut s = raw_handshake(&addr).await;
        let _ = s.write_all(garbage).await;
        // The end of the client's stream: a frame still waiting for its declared length
        // cannot wait on (the gateway would, until the idle timeout, as it should).
        let _ = s.shutdown().await;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("case {i}: the socket was neither answered nor closed"))
            .ok();
    }
    // Still serving: a well-formed client gets its answer.
    let mut ws = connect(&proxy, &[]).await.unwrap();
    ws.send(Message::Text("hi".into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "ok");
}

/// The access log has a line per connect, message and disconnect with the WebSocket
/// `$context` variables; the metrics count connects, messages and open connections.
#[tokio::test]
async fn access_log_lines_and_metrics_per_event() {
    let routes = "    - routeKey: $connect\n      integration: {type: MOCK, mockResponse: {statusCode: 200}}\n    - routeKey: $default\n      routeResponseSelectionExpression: $default\n      integration: {type: MOCK, mockResponse: {statusCode: 200, body: ok}}\n    - routeKey: $disconnect\n      integration: {type: MOCK, mockResponse: {statusCode: 200}}\n";
    let st = stage(
        "chat-prod",
        "chat",
        "  stageName: prod\n  accessLogSettings:\n    format: '{\"requestId\":\"$context.requestId\",\"eventType\":\"$context.eventType\",\"routeKey\":\"$context.routeKey\",\"connectionId\":\"$context.connectionId\",\"status\":\"$context.status\"}'\n",
    );
    let proxy = Proxy::start(&[("api.yaml", &chat_api(routes, "")), ("stage.yaml", &st)]).await;
    let mut ws = connect(&proxy, &[]).await.unwrap();
    ws.send(Message::Text("one".into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "ok");
    let text = proxy.metrics(&Client::new()).await;
    let m = |name: &str| {
        portico_e2e::metric_sum(&text, name, &[("stage", "prod")]).unwrap_or(0.0) as u64
    };
    assert_eq!(
        (
            m("portico_connect_count"),
            m("portico_message_count"),
            m("portico_websocket_connections")
        ),
        (1, 1, 1)
    );
    ws.close(None).await.unwrap();
    let lines = portico_e2e::eventually(
        "three access-log lines",
        Duration::from_secs(20),
        || async {
            let lines: Vec<Value> = proxy
                .stdout()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .filter(|v: &Value| v.get("eventType").is_some())
                .collect();
            (lines.len() >= 3).then_some(lines)
        },
    )
    .await;
    let kinds: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["eventType"].as_str().unwrap(),
                l["routeKey"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("CONNECT", "$connect"),
            ("MESSAGE", "$default"),
            ("DISCONNECT", "$disconnect")
        ]
    );
    let id = lines[0]["connectionId"].as_str().unwrap();
    assert!(!id.is_empty() && lines.iter().all(|l| l["connectionId"] == id));
    let text = proxy.metrics(&Client::new()).await;
    assert_eq!(
        portico_e2e::metric_sum(&text, "portico_websocket_connections", &[("stage", "prod")]),
        Some(0.0)
    );
}

/// An HTTP integration with a request template (the `$default` template, selected by
/// `templateSelectionExpression: \$default`): the backend gets the rendered body, with the
/// WebSocket `$context`; the two-way answer is the backend's.
#[tokio::test]
async fn http_integrations_render_the_request_template() {
    let backend = Backend::start("chat").await;
    let routes = format!(
        r#"    - routeKey: join
      routeResponseSelectionExpression: $default
      integration:
        type: HTTP
        uri: 'http://{}/rooms/join'
        templateSelectionExpression: \$default
        requestTemplates:
          $default: '{{"room":$input.json(''$.room''),"connection":"$context.connectionId","event":"$context.eventType"}}'
"#,
        backend.host_port()
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &chat_api(&routes, "")),
        ("stage.yaml", &chat_stage()),
    ])
    .await;
    let mut ws = connect(&proxy, &[]).await.unwrap();
    ws.send(Message::Text(r#"{"action":"join","room":"lobby"}"#.into()))
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(answer["path"], "/rooms/join");
    let got = backend.received();
    let sent: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(sent["room"], "lobby");
    assert_eq!(sent["event"], "MESSAGE");
    assert_eq!(sent["connection"].as_str().map(str::len), Some(16));
}

/// A route's throttle (`methodSettings` keyed by route key) meters its messages: past the
/// bucket a message gets AWS's error frame instead of reaching the integration.
#[tokio::test]
async fn route_throttles_meter_messages() {
    let backend = Backend::start("chat").await;
    let routes = format!(
        "    - routeKey: ping\n      routeResponseSelectionExpression: $default\n      integration: {{type: HTTP_PROXY, uri: 'http://{}/ping'}}\n",
        backend.host_port()
    );
    let st = stage(
        "chat-prod",
        "chat",
        "  stageName: prod\n  methodSettings:\n    ping: {throttle: {rateLimit: 0.001, burstLimit: 2}}\n",
    );
    let proxy = Proxy::start(&[("api.yaml", &chat_api(&routes, "")), ("stage.yaml", &st)]).await;
    let mut ws = connect(&proxy, &[]).await.unwrap();
    for _ in 0..2 {
        ws.send(Message::Text(r#"{"action":"ping"}"#.into()))
            .await
            .unwrap();
        let answer: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        assert_eq!(answer["path"], "/ping");
    }
    ws.send(Message::Text(r#"{"action":"ping"}"#.into()))
        .await
        .unwrap();
    let frame: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(frame["message"], "Too Many Requests");
    assert_eq!(backend.received().len(), 2);
}

/// `--management-listen`: `@connections` is served on that listener only (a
/// cluster-internal port), and that listener serves nothing else.
#[tokio::test]
async fn a_separate_management_listener_takes_connections_calls_away_from_the_public_one() {
    let routes = "    - routeKey: $default\n      integration: {type: MOCK, mockResponse: {statusCode: 200}}\n";
    let settings = format!(
        "    managementCredentials:\n      - accessKeyId: {AKID}\n        secretKeyRef: {{name: chat-management, key: secretAccessKey}}\n"
    );
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: chat-management, namespace: default}}\nstringData: {{secretAccessKey: {SECRET}}}\n"
    );
    let port = portico_e2e::free_port();
    let proxy = Proxy::builder()
        .manifest("api.yaml", &chat_api(routes, &settings))
        .manifest("stage.yaml", &chat_stage())
        .manifest("secret.yaml", &secret)
        .arg("--management-listen")
        .arg(&format!("127.0.0.1:{port}"))
        .start()
        .await;
    let c = Client::new();
    let public = proxy.url("/prod/@connections/AAAAAAAAAAAAAAAA");
    let private = format!("http://127.0.0.1:{port}/prod/@connections/AAAAAAAAAAAAAAAA");
    let send = |url: String| {
        let c = c.clone();
        async move {
            let h = signed("GET", &url, b"", SECRET);
            let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            c.send(http::Method::GET, &url, &h, "").await
        }
    };
    // Signed alike: the public listener does not serve it; the management one does (410:
    // no such connection).
    let r = send(public).await;
    assert!(
        matches!(r.status.as_u16(), 403 | 404),
        "{} {}",
        r.status,
        r.text()
    );
    let r = portico_e2e::eventually("the management listener", Duration::from_secs(20), || {
        let send = &send;
        let private = private.clone();
        async move {
            let r = send(private).await;
            (r.status == 410).then_some(r)
        }
    })
    .await;
    assert_eq!(r.header("x-amzn-errortype"), "GoneException");
    // The handshake is the public listener's only.
    let r = c.get(&format!("http://127.0.0.1:{port}/prod")).await;
    assert!(matches!(r.status.as_u16(), 403 | 404), "{}", r.status);
    let mut ws = connect(&proxy, &[]).await.expect("the public handshake");
    ws.close(None).await.unwrap();
}

/// A route's request model (`requestModels` + `modelSelectionExpression`): a message that
/// does not match gets AWS's `Invalid request body` frame and never reaches the integration.
#[tokio::test]
async fn request_models_validate_messages() {
    let backend = Backend::start("chat").await;
    let api = chat_api(
        &format!(
            "    - routeKey: send\n      routeResponseSelectionExpression: $default\n      modelSelectionExpression: $default\n      requestModels: {{$default: SendMessage}}\n      integration: {{type: HTTP_PROXY, uri: 'http://{}/send'}}\n",
            backend.host_port()
        ),
        "",
    )
    .replace(
        "  routes:\n",
        "  models:\n    SendMessage:\n      schema: {type: object, required: [action, message], properties: {message: {type: string, maxLength: 20}}}\n  routes:\n",
    );
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &chat_stage())]).await;
    let mut ws = connect(&proxy, &[]).await.unwrap();
    for bad in [
        r#"{"action":"send"}"#,
        r#"{"action":"send","message":"this one is far too long"}"#,
    ] {
        ws.send(Message::Text(bad.into())).await.unwrap();
        let frame: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        assert_eq!(frame["message"], "Invalid request body", "{bad}");
    }
    ws.send(Message::Text(r#"{"action":"send","message":"hi"}"#.into()))
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(answer["path"], "/send");
    assert_eq!(backend.received().len(), 1);
}

/// Selection expressions reading the message pick the model and the request template per
/// message (AWS: `modelSelectionExpression`, `templateSelectionExpression`, e.g.
/// `$request.body.kind`), falling back to `$default`'s.
#[tokio::test]
async fn models_and_templates_are_picked_by_the_message() {
    let backend = Backend::start("chat").await;
    let api = chat_api(
        &format!(
            r#"    - routeKey: order
      routeResponseSelectionExpression: $default
      modelSelectionExpression: $request.body.kind
      requestModels: {{$default: AnyOrder, limit: LimitOrder}}
      integration:
        type: HTTP
        uri: 'http://{}/orders'
        templateSelectionExpression: $request.body.kind
        requestTemplates:
          limit: '{{"type":"limit","price":$input.json(''$.price'')}}'
          $default: '{{"type":"market"}}'
"#,
            backend.host_port()
        ),
        "",
    )
    .replace(
        "  routes:\n",
        "  models:\n    AnyOrder: {schema: {type: object}}\n    LimitOrder: {schema: {type: object, required: [price]}}\n  routes:\n",
    );
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &chat_stage())]).await;
    let mut ws = connect(&proxy, &[]).await.unwrap();
    // A limit order needs a price (LimitOrder); a market order does not (AnyOrder).
    ws.send(Message::Text(r#"{"action":"order","kind":"limit"}"#.into()))
        .await
        .unwrap();
    let frame: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(frame["message"], "Invalid request body");
    for m in [
        r#"{"action":"order","kind":"limit","price":7}"#,
        r#"{"action":"order","kind":"market"}"#,
    ] {
        ws.send(Message::Text(m.into())).await.unwrap();
        let answer: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        assert_eq!(answer["path"], "/orders", "{m}");
    }
    let sent: Vec<Value> = backend
        .received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(
        sent,
        [
            json!({"type": "limit", "price": 7}),
            json!({"type": "market"})
        ]
    );
}

/// A WebSocket handshake written by hand on a raw socket (for frames no client library
/// sends): the 101 is read and checked; the socket is returned right after it.
async fn raw_handshake(addr: &str) -> TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /prod HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}
