//! Process lifecycle: refusing to start on an invalid manifest, graceful shutdown on SIGTERM.

use portico_e2e::yaml::{http_proxy, mock, rest_api, stage};
use portico_e2e::{Backend, Client, Proxy, eventually, run_to_exit};
use std::time::Duration;

#[tokio::test]
async fn startup_with_an_invalid_manifest_exits_1_naming_the_object_and_field() {
    let api = rest_api(
        "broken",
        &format!(
            "  resources:\n    - path: content\n      methods:\n        GET: {{integration: {}}}\n",
            mock("x")
        ),
    );
    let (status, _out, err) = run_to_exit(
        &[
            ("api.yaml", &api),
            (
                "stage.yaml",
                &stage("broken-dev", "broken", "  stageName: dev\n"),
            ),
        ],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        status.code(),
        Some(1),
        "exit status {status}; stderr:\n{err}"
    );
    assert!(
        err.contains("resources[0].path"),
        "stderr should name the field spec.resources[0].path:\n{err}"
    );
    assert!(
        err.contains("broken"),
        "stderr should name the object:\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_in_flight_request_refuses_new_connections_and_exits_0() {
    let be = Backend::start("slow").await;
    be.set_delay(Duration::from_secs(6));
    let api = rest_api(
        "drain",
        &format!(
            r#"  resources:
    - path: /slow
      methods:
        GET: {{integration: {slow}}}
    - path: /fast
      methods:
        GET: {{integration: {fast}}}
"#,
            slow = http_proxy(&format!("http://{}/slow", be.host_port())),
            fast = mock("fast"),
        ),
    );
    let mut proxy = Proxy::builder()
        .manifest("api.yaml", &api)
        .manifest(
            "stage.yaml",
            &stage("drain-dev", "drain", "  stageName: dev\n"),
        )
        .arg("--shutdown-grace-seconds")
        .arg("20")
        .start()
        .await;

    // An idle keep-alive connection: graceful shutdown must close it, not wait on it.
    let idle = Client::new();
    let r = idle.get(&proxy.url("/dev/fast")).await;
    assert_eq!(r.status, 200);
    let r = idle.get(&proxy.admin_url("/readyz")).await;
    assert_eq!(r.status, 200, "/readyz before shutdown");

    let slow_url = proxy.url("/dev/slow");
    let in_flight = tokio::spawn(async move { Client::new().get(&slow_url).await });
    be.wait_started(1, Duration::from_secs(15)).await;
    proxy.sigterm();

    // While the slow request is still running: not ready, and the listener is closed.
    let admin = proxy.admin_url("/readyz");
    eventually(
        "/readyz stops answering 200 after SIGTERM",
        Duration::from_secs(3),
        || async {
            match Client::new()
                .try_send(http::Method::GET, &admin, &[], bytes::Bytes::new())
                .await
            {
                Ok(r) if r.status == 200 => None,
                _ => Some(()),
            }
        },
    )
    .await;
    let listen = proxy.listen;
    eventually(
        "new connections are refused after SIGTERM",
        Duration::from_secs(3),
        || async {
            match tokio::net::TcpStream::connect(listen).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
                _ => None,
            }
        },
    )
    .await;
    assert!(
        proxy.try_wait().is_none(),
        "the proxy exited before its in-flight request finished"
    );

    let r = in_flight.await.expect("in-flight task");
    assert_eq!(r.status, 200, "in-flight request: {}", r.text());
    assert_eq!(r.header("x-backend"), "slow");

    let status = proxy.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some(),
        "the proxy did not exit within 15 s of finishing its last request (grace is 20 s: \
         is it waiting on the idle keep-alive connection?)"
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status {status:?}"
    );
    drop(idle);
}

/// `--client-header-timeout-seconds`: a connection that does not send a whole request head in
/// time is closed, whether it is sending one slowly or idling after a response; a client that
/// keeps sending requests sooner than that keeps its connection.
#[tokio::test]
async fn client_connections_without_a_request_head_in_time_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;
    let api = rest_api(
        "timeouts",
        &format!(
            "  resources:\n    - path: /open\n      methods:\n        GET: {{integration: {}}}\n",
            mock("open")
        ),
    );
    let st = stage("timeouts-dev", "timeouts", "  stageName: dev\n");
    let proxy = Proxy::builder()
        .manifest("api.yaml", &api)
        .manifest("stage.yaml", &st)
        .arg("--client-header-timeout-seconds")
        .arg("1")
        .start()
        .await;
    const REQUEST: &[u8] = b"GET /dev/open HTTP/1.1\r\nhost: a\r\n\r\n";

    // Reads one response (head and Content-Length body); returns its status line.
    async fn response(s: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let read = portico_e2e::read_response_with_length(s, &mut buf);
        let (status, _body) = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("a response within 10 s");
        assert!(buf.is_empty(), "more than one response");
        status
    }
    // Waits (bounded) for the proxy to close `s` without sending anything; returns how long.
    async fn closed_after(s: &mut tokio::net::TcpStream, since: Instant) -> Duration {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("closed within 10 s")
            .unwrap_or(0);
        assert_eq!(n, 0, "sent {:?}", String::from_utf8_lossy(&chunk[..n]));
        since.elapsed()
    }

    // A head sent slowly: closed about 1 s after the connection opened.
    let opened = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(proxy.listen).await.unwrap();
    slow.write_all(&REQUEST[..20]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow.write_all(&REQUEST[20..30]).await.unwrap();
    let took = closed_after(&mut slow, opened).await;
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");

    // Requests every 400 ms for 2 s on one connection: each head arrives in time.
    let mut busy = tokio::net::TcpStream::connect(proxy.listen).await.unwrap();
    for _ in 0..5 {
        busy.write_all(REQUEST).await.unwrap();
        let status = response(&mut busy).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Then idle after a response: closed about 1 s after it.
    busy.write_all(REQUEST).await.unwrap();
    response(&mut busy).await;
    let answered = Instant::now();
    let took = closed_after(&mut busy, answered).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");

    // The proxy serves on.
    let r = Client::new().get(&proxy.url("/dev/open")).await;
    assert_eq!(r.status, 200);
}
