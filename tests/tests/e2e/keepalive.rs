//! Kept-alive client connections across their idle periods (issue 17): a connection that
//! waits for its next request longer than the proxy's park delay (250 ms) gives its hyper
//! state back and is served again by a fresh one when bytes arrive. These tests drive raw
//! sockets so that every request of a test provably shares one TCP connection, and pause
//! for longer than the park delay where a connection must be parked. No assertion depends on
//! the machine's speed: a pause can only be longer than asked, and a timeout is checked as
//! "not sooner than", with generous upper bounds.

use futures::{SinkExt, StreamExt};
use portico_e2e::yaml::{http_proxy, mock, rest_api, stage};
use portico_e2e::{Backend, Client, Proxy, REQUEST_TIMEOUT};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Longer than the proxy's park delay (`server::PARK_AFTER`, 250 ms): the connection has
/// parked by the end of such a pause (a slower machine only makes the pause longer).
const PARKED: Duration = Duration::from_millis(700);

/// An API `ka` at stage `dev`: `/dev/one` and `/dev/two` are MOCKs answering "one" and "two";
/// `/dev/be` proxies to `backend` (when given).
async fn start(backend: Option<&Backend>, args: &[&str]) -> Proxy {
    let mut resources = format!(
        "  resources:\n    - path: /one\n      methods:\n        GET: {{integration: {}}}\n    - path: /two\n      methods:\n        GET: {{integration: {}}}\n",
        mock("one"),
        mock("two")
    );
    if let Some(be) = backend {
        resources.push_str(&format!(
            "    - path: /be\n      methods:\n        ANY: {{integration: {}}}\n",
            http_proxy(&format!("http://{}/be", be.host_port()))
        ));
    }
    let mut b = Proxy::builder()
        .manifest("api.yaml", &rest_api("ka", &resources))
        .manifest("stage.yaml", &stage("ka-dev", "ka", "  stageName: dev\n"));
    for a in args {
        b = b.arg(a);
    }
    b.start().await
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n").into_bytes()
}

/// Reads one response (head and Content-Length body): (status line, body), or None when the
/// connection ends first. Bounded by REQUEST_TIMEOUT. Bytes past the response stay in `buf`.
async fn response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String)> {
    match portico_e2e::try_read_response(s, buf).await {
        Ok((status, body)) => Some((status, String::from_utf8_lossy(&body).into_owned())),
        Err(e) if e.starts_with("no bytes") => panic!("a response or a close: {e}"),
        Err(_) => None,
    }
}

/// One response that must be a 200 with `body`.
async fn expect_ok(s: &mut TcpStream, buf: &mut Vec<u8>, body: &str, what: &str) {
    let (status, got) = response(s, buf)
        .await
        .unwrap_or_else(|| panic!("{what}: the connection closed instead of answering"));
    assert!(status.starts_with("HTTP/1.1 200"), "{what}: {status} {got}");
    assert_eq!(got, body, "{what}");
}

/// Waits (bounded) for the proxy to close `s` without sending anything more.
async fn expect_closed(s: &mut TcpStream, what: &str) {
    let mut chunk = [0u8; 1024];
    let n = tokio::time::timeout(REQUEST_TIMEOUT, s.read(&mut chunk))
        .await
        .unwrap_or_else(|_| panic!("{what}: not closed within {REQUEST_TIMEOUT:?}"))
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "{what}: sent {:?}",
        String::from_utf8_lossy(&chunk[..n])
    );
}

#[tokio::test]
async fn one_connection_serves_requests_across_idle_pauses() {
    let be = Backend::start("ka").await;
    let proxy = start(Some(&be), &[]).await;
    let mut s = TcpStream::connect(proxy.listen).await.unwrap();
    let mut buf = Vec::new();
    // Parked before the first request too: a new connection waits without hyper.
    tokio::time::sleep(PARKED).await;
    for (i, pause) in [0, 700, 10, 900, 0, 700].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let path = if i % 2 == 0 { "/dev/one" } else { "/dev/two" };
        s.write_all(&get(path)).await.unwrap();
        let body = if i % 2 == 0 { "one" } else { "two" };
        expect_ok(
            &mut s,
            &mut buf,
            body,
            &format!("request {i} after {pause} ms"),
        )
        .await;
    }
    // A request with a body to a backend after a parked period, then another after one more:
    // the body reaches the backend whole, and the connection goes on.
    for round in 0..2 {
        tokio::time::sleep(PARKED).await;
        let payload = format!("payload-{round}-").repeat(1000);
        let req = format!(
            "POST /dev/be HTTP/1.1\r\nhost: a\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{payload}",
            payload.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let (status, _) = response(&mut s, &mut buf).await.expect("POST answered");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let got = be.received();
        assert_eq!(got.len(), round + 1);
        assert_eq!(got[round].body, payload.as_bytes(), "round {round}");
    }
    s.write_all(&get("/dev/one")).await.unwrap();
    expect_ok(&mut s, &mut buf, "one", "after the POSTs").await;
    assert!(buf.is_empty(), "stray bytes: {buf:?}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_across_a_park() {
    let proxy = start(None, &[]).await;
    let mut s = TcpStream::connect(proxy.listen).await.unwrap();
    let mut buf = Vec::new();
    // Two requests in one write.
    let mut two = get("/dev/one");
    two.extend_from_slice(&get("/dev/two"));
    s.write_all(&two).await.unwrap();
    expect_ok(&mut s, &mut buf, "one", "first of two in one write").await;
    expect_ok(&mut s, &mut buf, "two", "second of two in one write").await;

    // A request and the first part of the next in one write; the rest of the second after
    // the connection had time to park with that part read (and not yet parsed).
    for split in [1, 9, 20, 30] {
        let second = get("/dev/two");
        let mut first = get("/dev/one");
        first.extend_from_slice(&second[..split]);
        s.write_all(&first).await.unwrap();
        expect_ok(&mut s, &mut buf, "one", &format!("split {split}: first")).await;
        tokio::time::sleep(PARKED).await;
        s.write_all(&second[split..]).await.unwrap();
        expect_ok(&mut s, &mut buf, "two", &format!("split {split}: second")).await;
    }

    // The same split after a parked period (the first request wakes the connection).
    tokio::time::sleep(PARKED).await;
    let second = get("/dev/two");
    let mut first = get("/dev/one");
    first.extend_from_slice(&second[..12]);
    s.write_all(&first).await.unwrap();
    expect_ok(&mut s, &mut buf, "one", "after a park: first").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(&second[12..]).await.unwrap();
    expect_ok(&mut s, &mut buf, "two", "after a park: second").await;
    assert!(buf.is_empty(), "stray bytes: {buf:?}");
}

#[tokio::test]
async fn requests_arriving_around_the_park_point_are_answered() {
    let proxy = start(None, &[]).await;
    let mut s = TcpStream::connect(proxy.listen).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(&get("/dev/one")).await.unwrap();
    expect_ok(&mut s, &mut buf, "one", "first").await;
    // Pauses from before to after the park delay (250 ms) in 5 ms steps: wherever the
    // request lands relative to the park (before it, while hyper lets go, after it), it is
    // answered on the same connection. Whole heads and heads in two writes around it.
    for (i, ms) in (200..=300).step_by(5).enumerate() {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let req = get("/dev/two");
        if i % 2 == 0 {
            s.write_all(&req).await.unwrap();
        } else {
            s.write_all(&req[..10]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(&req[10..]).await.unwrap();
        }
        expect_ok(&mut s, &mut buf, "two", &format!("after {ms} ms")).await;
    }
    assert!(buf.is_empty(), "stray bytes: {buf:?}");
}

/// The header timeout is also the idle timeout of a parked connection: closed, without an
/// answer, not sooner than the timeout after the last response; a head begun while parked
/// still has to be whole by then (408).
#[tokio::test]
async fn the_idle_timeout_closes_a_parked_connection() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let never_sooner = TIMEOUT - Duration::from_millis(100);
    let proxy = start(None, &["--client-header-timeout-seconds", "2"]).await;

    let mut idle = TcpStream::connect(proxy.listen).await.unwrap();
    let mut buf = Vec::new();
    idle.write_all(&get("/dev/one")).await.unwrap();
    // The proxy's idle clock starts after the response is written, so after this point.
    let sent = Instant::now();
    expect_ok(&mut idle, &mut buf, "one", "idle: request").await;
    expect_closed(&mut idle, "idle").await;
    let took = sent.elapsed();
    assert!(
        took >= never_sooner,
        "an idle connection closed after {took:?}"
    );

    // A head begun after the connection parked and never finished: 408, not sooner than the
    // timeout after the last response (the head's time is counted from there, as before).
    let mut slow = TcpStream::connect(proxy.listen).await.unwrap();
    slow.write_all(&get("/dev/one")).await.unwrap();
    let sent = Instant::now();
    expect_ok(&mut slow, &mut buf, "one", "slow: request").await;
    tokio::time::sleep(PARKED).await;
    // (A stalled machine may have let the proxy close already: then this write may fail.)
    let _ = slow.write_all(&get("/dev/two")[..12]).await;
    let (status, _) = response(&mut slow, &mut buf)
        .await
        .expect("an answer to the incomplete head");
    assert_eq!(status, "HTTP/1.1 408 Request Timeout");
    let took = sent.elapsed();
    assert!(took >= never_sooner, "408 after {took:?}");
    expect_closed(&mut slow, "slow, after the 408").await;

    // A connection that never sends anything: closed the same way (it was parked from the
    // start).
    let opened = Instant::now();
    let mut silent = TcpStream::connect(proxy.listen).await.unwrap();
    expect_closed(&mut silent, "silent").await;
    let took = opened.elapsed();
    assert!(
        took >= never_sooner,
        "a silent connection closed after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_a_parked_connection_at_once_and_finishes_the_request_in_flight() {
    let be = Backend::start("slow").await;
    be.hold();
    let mut proxy = start(Some(&be), &["--shutdown-grace-seconds", "300"]).await;

    let mut parked = TcpStream::connect(proxy.listen).await.unwrap();
    let mut buf = Vec::new();
    parked.write_all(&get("/dev/one")).await.unwrap();
    expect_ok(&mut parked, &mut buf, "one", "before the drain").await;
    tokio::time::sleep(PARKED).await;

    let url = proxy.url("/dev/be");
    let in_flight = tokio::spawn(async move { Client::new().get(&url).await });
    be.wait_started(1, Duration::from_secs(60)).await;
    proxy.sigterm();

    // The parked connection closes while the request in flight is still held by the backend
    // (it is held until released below: "at once" does not depend on timing).
    expect_closed(&mut parked, "the parked connection after SIGTERM").await;
    assert!(
        !in_flight.is_finished(),
        "the in-flight request ended early"
    );
    assert!(
        proxy.try_wait().is_none(),
        "the proxy exited before its request finished"
    );

    be.release();
    let r = in_flight.await.expect("in-flight task");
    assert_eq!(r.status, 200, "in-flight request: {}", r.text());
    assert_eq!(r.header("x-backend"), "slow");
    let status = proxy.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status {status:?}"
    );
}

#[tokio::test]
async fn a_websocket_upgrade_after_a_parked_period_works() {
    let chat = "apiVersion: portico.dev/v1alpha1\nkind: RestApi\nmetadata: {name: chat, namespace: default}\nspec:\n  protocol: WEBSOCKET\n  routeSelectionExpression: $request.body.action\n  routes:\n    - routeKey: $connect\n      integration: {type: MOCK, mockResponse: {statusCode: 200}}\n    - routeKey: $default\n      routeResponseSelectionExpression: $default\n      integration: {type: MOCK, mockResponse: {statusCode: 200, body: '{\"route\":\"$default\"}'}}\n";
    let resources = format!(
        "  resources:\n    - path: /one\n      methods:\n        GET: {{integration: {}}}\n",
        mock("one")
    );
    let proxy = Proxy::builder()
        .manifest("api.yaml", &rest_api("ka", &resources))
        .manifest("stage.yaml", &stage("ka-dev", "ka", "  stageName: dev\n"))
        .manifest("chat.yaml", chat)
        .manifest(
            "chat-stage.yaml",
            &stage("chat-prod", "chat", "  stageName: prod\n"),
        )
        .start()
        .await;

    // A plain request, a parked period, then the upgrade on the same connection.
    let mut s = TcpStream::connect(proxy.listen).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(&get("/dev/one")).await.unwrap();
    expect_ok(&mut s, &mut buf, "one", "before the upgrade").await;
    tokio::time::sleep(PARKED).await;
    let addr = proxy.listen;
    s.write_all(
        format!("GET /prod HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(REQUEST_TIMEOUT, s.read(&mut chunk))
            .await
            .expect("the handshake's answer in time")
            .unwrap();
        assert!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        buf.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(head_end, buf.len(), "bytes after the 101's head");
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        s,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    // Messages across a pause longer than the park delay: the socket is the WebSocket's now.
    for i in 0..2 {
        if i > 0 {
            tokio::time::sleep(PARKED).await;
        }
        ws.send(tokio_tungstenite::tungstenite::Message::Text(
            r#"{"action":"nothing"}"#.into(),
        ))
        .await
        .unwrap();
        let m = tokio::time::timeout(REQUEST_TIMEOUT, ws.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .expect("a frame");
        assert_eq!(m.into_text().unwrap().as_str(), r#"{"route":"$default"}"#);
    }
}

/// A client that does not read a large answer for a while: the end of the answer waits in
/// the proxy's buffers for the socket (the kernel's are full) while nothing is read. The
/// connection must not be let go then (the end would be lost). hyper awaits the next head,
/// and so runs the timer that parks a connection, only once its buffer is flushed; this pins
/// that. Sizes around the kernel's buffers (the client's receive buffer is 64 KiB), each
/// read after several park periods, must arrive whole, and the connection serves again.
#[tokio::test]
async fn a_large_answer_read_late_arrives_whole_and_the_connection_stays_usable() {
    let be = Backend::start("ka").await;
    let proxy = start(Some(&be), &[]).await;
    for n in [256 << 10, 1 << 20, 3 << 20, 6 << 20] {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(64 * 1024).unwrap();
        let mut s = sock.connect(proxy.listen).await.unwrap();
        let req = format!("GET /dev/be HTTP/1.1\r\nhost: a\r\nx-echo-bytes: {n}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        // Nothing read for several park periods.
        tokio::time::sleep(PARKED * 2).await;
        let (status, body) = portico_e2e::try_read_response(&mut s, &mut Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{n} bytes: {e}"));
        assert!(status.starts_with("HTTP/1.1 200"), "{n} bytes: {status}");
        assert_eq!(body.len(), n, "{n} bytes: the body arrived short");
        assert!(
            body == portico_e2e::pattern(n),
            "{n} bytes: the body differs"
        );
        // Parked since, and served again.
        tokio::time::sleep(PARKED).await;
        let mut buf = Vec::new();
        s.write_all(&get("/dev/one")).await.unwrap();
        expect_ok(
            &mut s,
            &mut buf,
            "one",
            &format!("after the {n}-byte answer"),
        )
        .await;
    }
}
