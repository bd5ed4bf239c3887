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
