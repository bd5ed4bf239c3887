//! The shipped example (`examples/mobile-backend/`) served end to end, with its backend stage
//! variables pointed at test backends.

use portico_e2e::{Backend, Client, Proxy};
use std::path::Path;

#[tokio::test]
async fn mobile_backend_example_serves_mock_and_proxy_routes_through_dev_and_prod() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mobile-backend");
    assert!(
        dir.is_dir(),
        "{} is missing: the example is part of the product",
        dir.display()
    );
    let dev = Backend::start("dev").await;
    let prod = Backend::start("prod").await;
    let (dev_addr, prod_addr) = (dev.host_port(), prod.host_port());
    let proxy = Proxy::builder()
        .manifests_from(&dir)
        .start_rewriting(&|text| {
            text.replace("127.0.0.1:9000", &dev_addr)
                .replace("127.0.0.1:9001", &prod_addr)
        })
        .await;
    let c = Client::new();

    for stage in ["dev", "prod"] {
        let r = c.get(&proxy.url(&format!("/{stage}/profile"))).await;
        assert_eq!(r.status, 200, "GET /{stage}/profile (MOCK): {}", r.text());
        assert_eq!(
            r.header("x-backend"),
            "",
            "/profile is a MOCK, not a backend call"
        );
        r.request_id();
    }

    // /content* needs the example's API key (usage-plan.yaml): refused without it.
    let r = c.get(&proxy.url("/prod/content/7")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"message": "Forbidden"}));
    let key = [("x-api-key", "example-mobile-key-0123456789abcdef")];

    for (stage, be) in [("dev", &dev), ("prod", &prod)] {
        let url = proxy.url(&format!("/{stage}/content/7"));
        let r = c.send(http::Method::GET, &url, &key, "").await;
        assert_eq!(r.header("ratelimit-limit"), "2000", "{stage}");
        assert_eq!(r.status, 200, "GET /{stage}/content/7: {}", r.text());
        assert_eq!(r.header("x-backend"), stage, "GET /{stage}/content/7");
        let got = be.received();
        assert_eq!(got.len(), 1, "{stage} backend: {got:?}");
        assert!(
            got[0].path.ends_with("/content/7"),
            "{stage} backend got path {:?}",
            got[0].path
        );
        assert_eq!(got[0].method, "GET");
    }

    let r = c.get(&proxy.url("/dev/no-such-resource")).await;
    assert_eq!(r.status, 403, "{}", r.text());
}
