//! Hot reload: atomic swaps under load, and broken changes that must not take traffic down.

use portico_e2e::yaml::{mock, rest_api, stage};
use portico_e2e::{Client, Proxy, eventually, metric_sum};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn versioned_api(body: &str) -> String {
    rest_api(
        "live",
        &format!(
            "  resources:\n    - path: /v\n      methods:\n        GET: {{integration: {}}}\n",
            mock(body)
        ),
    )
}

fn live_stage() -> String {
    stage("live-dev", "live", "  stageName: dev\n")
}

async fn reload_success(proxy: &Proxy, c: &Client) -> Option<f64> {
    metric_sum(
        &proxy.metrics(c).await,
        "portico_config_reload_success",
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_eight_concurrent_clients_fail_no_request_and_serve_the_new_body() {
    let proxy = Proxy::start(&[
        ("api.yaml", &versioned_api("v0")),
        ("stage.yaml", &live_stage()),
    ])
    .await;
    let url = proxy.url("/dev/v");
    let stop = Arc::new(AtomicBool::new(false));
    // Clients that have been served the last version at least once.
    let saw_last = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (url, stop, saw_last) = (url.clone(), stop.clone(), saw_last.clone());
        clients.push(tokio::spawn(async move {
            let c = Client::new();
            let hard_stop = Instant::now() + Duration::from_secs(180);
            let (mut ok, mut failures, mut seen) = (0u64, Vec::new(), BTreeSet::new());
            while !stop.load(Ordering::SeqCst) && Instant::now() < hard_stop {
                match c
                    .try_send(http::Method::GET, &url, &[], bytes::Bytes::new())
                    .await
                {
                    Ok(r) if r.status == 200 => {
                        ok += 1;
                        if seen.insert(r.text()) && r.text() == "v4" {
                            saw_last.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(r) => failures.push(format!("{} {}", r.status, r.text())),
                    Err(e) => failures.push(format!("{e:#}")),
                }
            }
            (ok, failures, seen)
        }));
    }

    let started = Instant::now();
    let probe = Client::new();
    for version in 1..=4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let body = format!("v{version}");
        proxy.write_manifest("api.yaml", &versioned_api(&body));
        eventually(
            &format!("the proxy serves {body} after the rewrite"),
            Duration::from_secs(60),
            || async {
                let r = probe.get(&url).await;
                (r.status == 200 && r.text() == body).then_some(())
            },
        )
        .await;
    }
    // Keep the load on for at least ~3 s in total, and until every client has been served
    // the last version (however long the steps above took).
    if let Some(left) = Duration::from_secs(3).checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }
    eventually(
        "every client is served v4",
        Duration::from_secs(60),
        || async { (saw_last.load(Ordering::SeqCst) == 8).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::SeqCst);

    let (mut total, mut failures, mut seen) = (0, Vec::new(), BTreeSet::new());
    for c in clients {
        let (ok, f, s) = c.await.expect("client task");
        total += ok;
        failures.extend(f);
        seen.extend(s);
    }
    assert!(
        failures.is_empty(),
        "{} failed requests (of {}), first: {:?}",
        failures.len(),
        total + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert!(total > 0);
    let allowed: BTreeSet<String> = (0..=4).map(|v| format!("v{v}")).collect();
    assert!(seen.is_subset(&allowed), "unexpected bodies: {seen:?}");
    assert!(seen.contains("v4"), "clients never saw v4: {seen:?}");
    assert_eq!(reload_success(&proxy, &probe).await, Some(1.0));
}

#[tokio::test]
async fn broken_manifests_are_refused_and_the_old_config_keeps_serving() {
    let proxy = Proxy::start(&[
        ("api.yaml", &versioned_api("good")),
        ("stage.yaml", &live_stage()),
    ])
    .await;
    let c = Client::new();
    let url = proxy.url("/dev/v");
    let serves = |want: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let r = c.get(&url).await;
            assert_eq!(
                (r.status.as_u16(), r.text()),
                (200, want.to_string()),
                "old config must keep serving"
            );
        }
    };
    serves("good").await;
    assert_eq!(reload_success(&proxy, &c).await, Some(1.0));

    // 1. Not YAML at all.
    proxy.write_manifest("api.yaml", "kind: RestApi\nspec: [unclosed\n  - {\n");
    eventually(
        "portico_config_reload_success drops to 0 after a parse error",
        Duration::from_secs(60),
        || async { (reload_success(&proxy, &c).await == Some(0.0)).then_some(()) },
    )
    .await;
    serves("good").await;

    // 2. A fix is picked up: the watcher survived the failure.
    proxy.write_manifest("api.yaml", &versioned_api("good2"));
    eventually(
        "the fixed manifest is served",
        Duration::from_secs(60),
        || async {
            let r = c.get(&url).await;
            (r.text() == "good2").then_some(())
        },
    )
    .await;
    assert_eq!(reload_success(&proxy, &c).await, Some(1.0));

    // 3. Valid YAML, but compile reports an error diagnostic (the same route twice).
    let duplicate = rest_api(
        "live",
        &format!(
            "  resources:\n    - path: /v\n      methods:\n        GET: {{integration: {}}}\n    - path: /v\n      methods:\n        GET: {{integration: {}}}\n",
            mock("bad"),
            mock("bad")
        ),
    );
    proxy.write_manifest("api.yaml", &duplicate);
    eventually(
        "portico_config_reload_success drops to 0 after an error diagnostic",
        Duration::from_secs(60),
        || async { (reload_success(&proxy, &c).await == Some(0.0)).then_some(()) },
    )
    .await;
    serves("good2").await;
    let stderr = proxy.stderr();
    assert!(
        stderr.contains("resources[1]") || stderr.to_ascii_lowercase().contains("duplicate"),
        "stderr should name the duplicate route diagnostic:\n{stderr}"
    );
    assert!(
        stderr.contains("live"),
        "stderr should name the object:\n{stderr}"
    );
}
