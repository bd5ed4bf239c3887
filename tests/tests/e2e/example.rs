//! The shipped example (`examples/mobile-backend/`) served end to end with its own backend
//! (`backend.py`: content, comments and the example identity provider), the README's
//! walk-through step by step: 401 without a token, a token from `/auth/login`, claims in the
//! profile and at the backend, the API key on /content, a 429 past the usage plan, and prod's
//! canary (10% of prod's requests on version 2 of the API, the force header, the metrics).
//!
//! Nothing here depends on how fast the machine is: whether this client outruns the example
//! plan's 1,000 requests/second is the machine's business, so the burst is checked against
//! what the token bucket allows for the time that actually elapsed, and a 429 is produced
//! deterministically with a second key in a plan too small to refill during the test.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::Method;
use portico_e2e::{Client, ExampleBackend, Proxy};
use serde_json::{Value, json};
use std::path::Path;

const KEY: &str = "example-mobile-key-0123456789abcdef";
/// The example plan's bucket (usage-plan.yaml; checked against the file below).
const BURST: u32 = 2000;
const RATE: f64 = 1000.0;

/// A key of the test's own on the example's prod stage, in a plan whose bucket cannot refill
/// during the test (burst 2, one token per 1,000 s): its third request is refused however
/// slowly the machine runs.
const SMALL_KEY: &str = "e2e-small-plan-key-0123456789abcdef";

fn small_plan() -> String {
    format!(
        r#"apiVersion: portico.dev/v1alpha1
kind: UsagePlan
metadata: {{name: e2e-small, namespace: default}}
spec:
  throttle: {{rateLimit: 0.001, burstLimit: 2}}
  apiStages: [{{stageRef: {{name: mobile-prod}}}}]
---
apiVersion: portico.dev/v1alpha1
kind: ApiKey
metadata: {{name: e2e-small, namespace: default}}
spec:
  valueFrom: {{secretKeyRef: {{name: e2e-small-key, key: value}}}}
  usagePlanRefs: [{{name: e2e-small}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: e2e-small-key, namespace: default}}
stringData: {{value: {SMALL_KEY}}}
"#
    )
}

fn example_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mobile-backend")
}

/// A token signed with the example's signing key by `ring` (not by backend.py), so the test
/// also checks that the committed key, the JWKS backend.py publishes and authorizer.yaml agree.
fn mint(claims: &Value) -> String {
    let jwk: Value = serde_json::from_str(
        &std::fs::read_to_string(example_dir().join("identity/signing-key.json")).unwrap(),
    )
    .unwrap();
    let part = |k: &str| B64.decode(jwk[k].as_str().unwrap()).unwrap();
    let (n, e, d, p, q, dp, dq, qi) = (
        part("n"),
        part("e"),
        part("d"),
        part("p"),
        part("q"),
        part("dp"),
        part("dq"),
        part("qi"),
    );
    let pair = ring::rsa::KeyPair::from_components(&ring::rsa::KeyPairComponents {
        public_key: ring::rsa::PublicKeyComponents { n: &n, e: &e },
        d: &d,
        p: &p,
        q: &q,
        dP: &dp,
        dQ: &dq,
        qInv: &qi,
    })
    .unwrap();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": jwk["kid"]});
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", B64.encode(sig))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn mobile_backend_walkthrough_token_key_claims_and_a_429() {
    let dir = example_dir();
    let dev = ExampleBackend::start("dev").await;
    let prod = ExampleBackend::start("prod").await;
    let (dev_addr, prod_addr) = (dev.host_port(), prod.host_port());
    let plan = std::fs::read_to_string(dir.join("usage-plan.yaml")).unwrap();
    assert!(
        plan.contains(&format!(
            "throttle: {{rateLimit: {RATE:.1}, burstLimit: {BURST}}}"
        )),
        "the example's plan changed: update BURST and RATE here\n{plan}"
    );
    let proxy = Proxy::builder()
        .manifests_from(&dir)
        .manifest("e2e-small-plan.yaml", &small_plan())
        .start_rewriting(&|text| {
            text.replace("127.0.0.1:9000", &dev_addr)
                .replace("127.0.0.1:9001", &prod_addr)
        })
        .await;
    let c = Client::new();

    // 1. Everything but login and signup needs a token.
    for path in ["/dev/profile", "/prod/comments", "/prod/content/1"] {
        let r = c.get(&proxy.url(path)).await;
        assert_eq!(r.status, 401, "GET {path}: {}", r.text());
        assert_eq!(r.json(), json!({"message": "Unauthorized"}));
        assert_eq!(r.header("x-amzn-errortype"), "UnauthorizedException");
    }
    let r = c
        .send(Method::POST, &proxy.url("/dev/auth/signup"), &[], "{}")
        .await;
    assert_eq!(r.status, 201, "{}", r.text());

    // 2. Log in: the identity provider (backend.py, reached through the gateway) mints an
    // RS256 token; the gateway verifies it with the keys at the Authorizer's jwksUri.
    let r = c
        .send(
            Method::POST,
            &proxy.url("/dev/auth/login"),
            &[("content-type", "application/json")],
            r#"{"username":"ana","password":"s3cret"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];

    // 3. The profile (a MOCK) renders the token's claims. (prod's canary, version 2 of the
    // API, is kept out with the force header here: step 7 is about it.)
    let base_only = [
        ("authorization", bearer.as_str()),
        ("x-portico-canary", "never"),
    ];
    for stage in ["dev", "prod"] {
        let r = c
            .send(
                Method::GET,
                &proxy.url(&format!("/{stage}/profile")),
                &base_only,
                "",
            )
            .await;
        assert_eq!(r.status, 200, "{stage}: {}", r.text());
        assert_eq!(
            r.json(),
            json!({"id": "u-ana", "username": "ana", "stage": stage})
        );
    }

    // 4. /content needs the API key as well; the backend learns the caller from x-user-id
    // (mapped from the `sub` claim), whatever the client sent in that header.
    let url = proxy.url("/prod/content/1");
    let r = c.send(Method::GET, &url, &auth, "").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json(), json!({"message": "Forbidden"}));
    let full = [
        ("authorization", bearer.as_str()),
        ("x-api-key", KEY),
        ("x-user-id", "someone-else"),
    ];
    let r = c.send(Method::GET, &url, &full, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(
        (&body["env"], &body["user"]),
        (&json!("prod"), &json!("u-ana"))
    );
    assert_eq!(r.header("ratelimit-limit"), "2000");

    // An independently minted token with the example key works; an expired one, one for
    // another audience, or one signed by backend.py and then altered do not.
    let claims = json!({"iss": "https://auth.mobile.example", "aud": "mobile-app",
                        "sub": "u-bo", "username": "bo", "iat": now(), "exp": now() + 300});
    let ok = format!("Bearer {}", mint(&claims));
    let r = c
        .send(
            Method::GET,
            &proxy.url("/dev/profile"),
            &[("authorization", &ok)],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["username"], "bo");
    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 3600);
    let mut other_aud = claims.clone();
    other_aud["aud"] = json!("another-app");
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_claims = B64.encode(
        json!({"iss": "https://auth.mobile.example", "aud": "mobile-app", "sub": "u-admin",
               "exp": now() + 300})
        .to_string(),
    );
    parts[1] = &forged_claims;
    for bad in [mint(&expired), mint(&other_aud), parts.join(".")] {
        let h = format!("Bearer {bad}");
        let r = c
            .send(
                Method::GET,
                &proxy.url("/dev/profile"),
                &[("authorization", &h)],
                "",
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.text());
    }

    // 5. A spent bucket answers 429 THROTTLED with Retry-After: the small plan's key gets
    // its burst of 2, then a 429 (no token comes back within 1,000 s).
    let small = [("authorization", bearer.as_str()), ("x-api-key", SMALL_KEY)];
    for left in ["1", "0"] {
        let r = c.send(Method::GET, &url, &small, "").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("ratelimit-limit"), "2");
        assert_eq!(r.header("ratelimit-remaining"), left);
    }
    let r = c.send(Method::GET, &url, &small, "").await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json(), json!({"message": "Too Many Requests"}));
    assert_eq!(r.header("x-amzn-errortype"), "TooManyRequestsException");
    assert!(!r.header("retry-after").is_empty(), "{:?}", r.headers);

    // The example's plan (burst 2,000, 1,000/s), as the README's burst.py drives it: 16
    // concurrent senders, 4,000 requests in all. However fast this machine is, the bucket
    // admits at least its burst (less the token step 4 took, which may not have come back
    // yet) and at most burst + rate x the time that elapsed (+1 for rounding); so whenever
    // the senders outran the rate, some requests were refused.
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, url, bearer) = (c.clone(), url.clone(), bearer.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut throttled, mut first) = (0u32, 0u32, None);
            for _ in 0..250 {
                let h = [("authorization", bearer.as_str()), ("x-api-key", KEY)];
                let r = c.send(Method::GET, &url, &h, "").await;
                match r.status.as_u16() {
                    200 => ok += 1,
                    429 => {
                        throttled += 1;
                        first.get_or_insert(r);
                    }
                    s => panic!("unexpected {s}: {}", r.text()),
                }
            }
            (ok, throttled, first)
        }));
    }
    let (mut ok, mut throttled, mut first) = (0, 0, None);
    for t in tasks {
        let (o, th, f) = t.await.unwrap();
        ok += o;
        throttled += th;
        first = first.or(f);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = ok + throttled;
    let most = f64::from(BURST) + RATE * elapsed + 1.0;
    eprintln!(
        "example plan: {sent} requests in {elapsed:.2} s ({:.0}/s): {ok} admitted, {throttled} throttled (at most {most:.0} admissible)",
        f64::from(sent) / elapsed
    );
    assert!(
        ok + 1 >= BURST,
        "the burst of {BURST} was not admitted: {ok} of {sent} in {elapsed:.2} s"
    );
    assert!(
        f64::from(ok) <= most,
        "admitted {ok} of {sent} in {elapsed:.2} s: more than burst {BURST} + {RATE}/s x elapsed + 1 = {most:.0}"
    );
    if let Some(r) = first {
        assert_eq!(r.json(), json!({"message": "Too Many Requests"}));
        assert_eq!(r.header("ratelimit-limit"), BURST.to_string());
        assert!(!r.header("retry-after").is_empty(), "{:?}", r.headers);
    }

    // The key's quota (10 million a month) counted every admitted request, and only those:
    // the one of step 4 and the `ok` ones here (GetUsage-like, on the admin port).
    let usage = c
        .get(&proxy.admin_url("/usage?plan=default/mobile-apps"))
        .await;
    assert_eq!(usage.status, 200, "{}", usage.text());
    let items = usage.json()["items"].as_object().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    let used = u64::from(ok) + 1;
    assert_eq!(
        items.values().next().unwrap(),
        &json!([[used, 10_000_000 - used]])
    );

    // 7. prod's canary: 10% of prod's requests, drawn per request, are served by version 2 of
    // the API (restapi-v2.yaml), whose profile says "api":"v2". Over 1,000 requests the share
    // has a standard deviation of 0.95 points: 5.5-14.5% is more than 4.7 of them either way.
    let metrics_before = proxy.metrics(&c).await;
    let v1 = json!({"id": "u-ana", "username": "ana", "stage": "prod"});
    let v2 = json!({"id": "u-ana", "username": "ana", "stage": "prod", "api": "v2"});
    const PROFILE_CALLS: usize = 1000;
    let profile = proxy.url("/prod/profile");
    let mut on_v2 = 0;
    for _ in 0..PROFILE_CALLS {
        let r = c.send(Method::GET, &profile, &auth, "").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        if body == v2 {
            on_v2 += 1;
        } else {
            assert_eq!(body, v1);
        }
    }
    assert!(
        (55..=145).contains(&on_v2),
        "{on_v2} of {PROFILE_CALLS} prod requests reached the canary (10% expected)"
    );
    // The force header picks the side for a signed-in caller; the backend learns which
    // version called it (x-api-version, echoed as "api"). Without a token it opens nothing.
    let mut forced = [0usize; 2];
    for (side, want_profile, want_api) in [("always", &v2, Some("v2")), ("never", &v1, None)] {
        let h = [
            ("authorization", bearer.as_str()),
            ("x-portico-canary", side),
        ];
        for _ in 0..5 {
            let r = c.send(Method::GET, &profile, &h, "").await;
            assert_eq!(
                (r.status.as_u16(), &r.json()),
                (200, want_profile),
                "{side}"
            );
            let r = c
                .send(Method::GET, &proxy.url("/prod/comments"), &h, "")
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let body = r.json();
            assert_eq!(
                (body["env"].as_str(), body["api"].as_str()),
                (Some("prod"), want_api)
            );
            forced[usize::from(side == "always")] += 2;
        }
    }
    let r = c
        .send(Method::GET, &profile, &[("x-portico-canary", "always")], "")
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    // The sides' metrics differ by the stage label (`prod/Canary`): every request of this step
    // is counted on its side (the 401 is drawn like any request: it may count on either).
    let metrics_after = proxy.metrics(&c).await;
    let count = |text: &str, stage: &str| {
        portico_e2e::metric_sum(text, "portico_count", &[("stage", stage)]).unwrap_or(0.0) as usize
    };
    let canary = count(&metrics_after, "prod/Canary") - count(&metrics_before, "prod/Canary");
    let base = count(&metrics_after, "prod") - count(&metrics_before, "prod");
    assert_eq!(canary + base, PROFILE_CALLS + forced[0] + forced[1] + 1);
    assert!(
        (on_v2 + forced[1]..=on_v2 + forced[1] + 1).contains(&canary),
        "canary count {canary}: {on_v2} drawn + {} forced",
        forced[1]
    );

    // 8. prod caches /content/{id} for 60 s per item and caller: the first call is a miss
    // (the backend answers), the next a hit; a flush on the admin port (AWS FlushStageCache)
    // makes the next a miss again. (The base side only: the canary does not use the cache.)
    let item = proxy.url("/prod/content/2");
    let h = [
        ("authorization", bearer.as_str()),
        ("x-api-key", KEY),
        ("x-portico-canary", "never"),
    ];
    let counts = |text: &str| {
        let m = |name: &str| {
            portico_e2e::metric_sum(
                text,
                name,
                &[("stage", "prod"), ("resource", "/content/{id}")],
            )
            .unwrap_or(0.0) as u64
        };
        (m("portico_cache_hit_count"), m("portico_cache_miss_count"))
    };
    let (hits, misses) = counts(&proxy.metrics(&c).await);
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let r = c.send(Method::GET, &item, &h, "").await;
        assert_eq!(r.status, 200, "{}", r.text());
        bodies.push(r.json());
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[0]["item"]["id"], "2");
    assert_eq!(counts(&proxy.metrics(&c).await), (hits + 1, misses + 1));
    let r = c
        .send(
            Method::POST,
            &proxy.admin_url("/cache/flush?stage=default/mobile-prod"),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let r = c.send(Method::GET, &item, &h, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(counts(&proxy.metrics(&c).await), (hits + 1, misses + 2));
}
