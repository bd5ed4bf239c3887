//! Authorizers through the real proxy: JWT with an inline key set and with a key set fetched
//! from a JWKS server that rotates its keys. Tokens are minted here with `ring`'s signers and
//! keys generated per test.

use crate::tls_front::TlsFront;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use portico_e2e::yaml::{mock, rest_api, stage};
use portico_e2e::{Client, Proxy};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ISS: &str = "https://issuer.example.com";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

struct Key {
    kid: String,
    pair: EcdsaKeyPair,
}

impl Key {
    fn generate(kid: &str) -> Key {
        let rng = SystemRandom::new();
        let pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Key {
            kid: kid.into(),
            pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk8.as_ref(), &rng)
                .unwrap(),
        }
    }
    fn jwk(&self) -> Value {
        let pt = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "use": "sig", "kid": self.kid,
               "x": b64(&pt[1..33]), "y": b64(&pt[33..65])})
    }
    fn sign_with_header(&self, header: Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
    fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            json!({"alg": "ES256", "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "mobile", "sub": "user-7", "exp": now() + 600, "iat": now(),
           "scope": "profile/read"})
}

fn with(patch: Value) -> Value {
    let mut c = claims();
    for (k, v) in patch.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn manifests(jwt: &str) -> Vec<(&'static str, String)> {
    let authorizer = format!(
        "apiVersion: portico.dev/v1alpha1\nkind: Authorizer\nmetadata: {{name: jwt, namespace: default}}\nspec:\n  type: JWT\n  jwt:\n    issuer: {ISS}\n    audiences: [mobile]\n    algorithms: [ES256]\n{jwt}"
    );
    let api = rest_api(
        "mobile",
        &format!(
            r#"  resources:
    - path: /auth/login
      methods:
        POST: {{integration: {open}}}
    - path: /profile
      methods:
        GET:
          authorizationType: COGNITO_USER_POOLS
          authorizerRef: {{name: jwt}}
          authorizationScopes: [profile/read]
          integration: {ok}
        DELETE:
          authorizationType: JWT
          authorizerRef: {{name: jwt}}
          authorizationScopes: [admin]
          integration: {ok}
"#,
            open = mock("open"),
            ok = mock("ok"),
        ),
    );
    let st = stage(
        "mobile-dev",
        "mobile",
        "  stageName: dev\n  accessLogSettings:\n    format: '{\"requestId\":\"$context.requestId\",\"sub\":\"$context.authorizer.claims.sub\",\"principal\":\"$context.authorizer.principalId\",\"errorType\":\"$context.error.responseType\"}'\n",
    );
    vec![
        ("authorizer.yaml", authorizer),
        ("api.yaml", api),
        ("stage.yaml", st),
    ]
}

async fn start(jwt: &str) -> Proxy {
    let m = manifests(jwt);
    let refs: Vec<(&str, &str)> = m.iter().map(|(n, c)| (*n, c.as_str())).collect();
    Proxy::start(&refs).await
}

async fn get(c: &Client, proxy: &Proxy, token: Option<&str>) -> portico_e2e::Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    c.send(Method::GET, &proxy.url("/dev/profile"), &headers, "")
        .await
}

#[tokio::test]
async fn jwt_authorizer_with_inline_keys_admits_valid_tokens_only() {
    let key = Key::generate("k1");
    let jwks = json!({"keys": [key.jwk()]}).to_string();
    let proxy = start(&format!("    jwks: '{jwks}'\n")).await;
    let c = Client::new();

    // Open route.
    let r = c
        .send(Method::POST, &proxy.url("/dev/auth/login"), &[], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // No token.
    let r = get(&c, &proxy, None).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json(), json!({"message": "Unauthorized"}));

    // A valid token; claims reach $context.authorizer.*.
    let token = key.sign(&claims());
    let r = get(&c, &proxy, Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "ok");

    // The valid token beside an unsigned one in a second Authorization header: 401, so that
    // no backend can read the other one as verified (issue 9.5).
    let bearer = format!("Bearer {token}");
    let two = [
        ("authorization", bearer.as_str()),
        ("authorization", "Bearer forged"),
    ];
    let dup = c
        .send(Method::GET, &proxy.url("/dev/profile"), &two, "")
        .await;
    assert_eq!(dup.status, 401, "{}", dup.text());
    let line = proxy
        .access_log_line(&r.request_id(), Duration::from_secs(10))
        .await;
    assert_eq!(line["sub"], "user-7", "{line}");
    assert_eq!(line["principal"], "user-7", "{line}");

    // Rejected with 401: expired, not yet valid, wrong audience, wrong issuer, other key,
    // alg none, HS256 signed with the public key, garbage.
    let other = Key::generate("k1");
    let pub_x = key.jwk()["x"].as_str().unwrap().to_string();
    let hs_input = format!(
        "{}.{}",
        b64(json!({"alg": "HS256", "kid": "k1"}).to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pub_x.as_bytes()),
        hs_input.as_bytes(),
    );
    let bad = [
        ("expired", key.sign(&with(json!({"exp": now() - 120})))),
        (
            "not yet valid",
            key.sign(&with(json!({"nbf": now() + 600}))),
        ),
        ("wrong audience", key.sign(&with(json!({"aud": "web"})))),
        (
            "wrong issuer",
            key.sign(&with(json!({"iss": "https://evil"}))),
        ),
        ("other key", other.sign(&claims())),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none", "kid": "k1"}).to_string().as_bytes()),
                b64(claims().to_string().as_bytes())
            ),
        ),
        (
            "HS256 confusion",
            format!("{hs_input}.{}", b64(tag.as_ref())),
        ),
        ("garbage", "not-a-token".to_string()),
    ];
    for (what, token) in bad {
        let r = get(&c, &proxy, Some(&token)).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        let line = proxy
            .access_log_line(&r.request_id(), Duration::from_secs(10))
            .await;
        assert_eq!(line["errorType"], "UNAUTHORIZED", "{what}: {line}");
    }

    // Valid token without the method's scope: 403.
    let r = c
        .send(
            Method::DELETE,
            &proxy.url("/dev/profile"),
            &[("authorization", &format!("Bearer {}", key.sign(&claims())))],
            "",
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let admin = key.sign(&with(json!({"scope": "profile/read admin"})));
    let r = c
        .send(
            Method::DELETE,
            &proxy.url("/dev/profile"),
            &[("authorization", &format!("Bearer {admin}"))],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A JWKS endpoint whose key set the test replaces; counts its requests.
struct JwksServer {
    addr: std::net::SocketAddr,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicU64>,
}

impl JwksServer {
    async fn start(keys: &[&Key]) -> JwksServer {
        use hyper::service::service_fn;
        let (body, hits) = (Arc::<Mutex<String>>::default(), Arc::<AtomicU64>::default());
        let (b, h) = (body.clone(), hits.clone());
        let (addr, _) = portico_e2e::serve_connections(move |stream| {
            let (body, hits) = (b.clone(), h.clone());
            async move {
                let svc = service_fn(move |_req| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let b = body.lock().unwrap().clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(bytes::Bytes::from(b)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            }
        })
        .await;
        let server = JwksServer { addr, body, hits };
        server.rotate(keys);
        server
    }
    fn rotate(&self, keys: &[&Key]) {
        let keys: Vec<Value> = keys.iter().map(|k| k.jwk()).collect();
        *self.body.lock().unwrap() = json!({ "keys": keys }).to_string();
    }
    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn jwks_uri_keys_are_cached_rotated_and_unknown_kids_cannot_hammer_the_issuer() {
    let (a, b) = (Key::generate("a"), Key::generate("b"));
    let jwks = JwksServer::start(&[&a]).await;
    let proxy = start(&format!("    jwksUri: http://{}/jwks\n", jwks.addr)).await;
    let c = Client::new();
    // The proxy fetches a key set at most once per 30 s after the first fetch (MIN_REFETCH;
    // the set itself stays fresh for 600 s): over `t` seconds from before the first request,
    // the issuer is asked at most 1 + t / 30 times, however slowly this test runs.
    let started = std::time::Instant::now();
    let most_hits = || 1 + started.elapsed().as_secs() / 30;

    // First token fetches the set; later ones use the cache.
    for _ in 0..5 {
        let r = get(&c, &proxy, Some(&a.sign(&claims()))).await;
        assert_eq!(
            r.status,
            200,
            "{}\n{} hits={}",
            r.text(),
            proxy.logs(),
            jwks.hits()
        );
    }
    assert_eq!(jwks.hits(), 1);

    // The issuer rotates to b. Tokens with b's (or made-up) kids within the refetch interval
    // (30 s) are rejected without a fetch each.
    jwks.rotate(&[&a, &b]);
    for i in 0..20 {
        let forged = Key::generate(&format!("made-up-{i}"));
        let r = get(&c, &proxy, Some(&forged.sign(&claims()))).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let r = get(&c, &proxy, Some(&b.sign(&claims()))).await;
    let (hits, most) = (jwks.hits(), most_hits());
    assert!(
        hits <= most,
        "the issuer was asked {hits} times in {:?} (at most {most})",
        started.elapsed()
    );
    if r.status != 200 {
        // No refetch was allowed yet (or a made-up kid used it): once the interval has passed
        // since the last fetch, b is picked up.
        assert_eq!(r.status, 401, "{}", r.text());
        tokio::time::sleep(Duration::from_secs(31)).await;
        let r = get(&c, &proxy, Some(&b.sign(&claims()))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let (hits, most) = (jwks.hits(), most_hits());
        assert!(
            hits <= most,
            "the issuer was asked {hits} times in {:?} (at most {most})",
            started.elapsed()
        );
    }
    // Old key still valid while the issuer publishes it.
    let r = get(&c, &proxy, Some(&a.sign(&claims()))).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A Lambda-style authorizer function: answers by the token it receives; counts calls.
struct FunctionServer {
    addr: std::net::SocketAddr,
    calls: Arc<AtomicU64>,
    events: Arc<Mutex<Vec<Value>>>,
}

impl FunctionServer {
    async fn start() -> FunctionServer {
        use http_body_util::BodyExt;
        use hyper::service::service_fn;
        let (calls, events) = (
            Arc::<AtomicU64>::default(),
            Arc::<Mutex<Vec<Value>>>::default(),
        );
        let (c, e) = (calls.clone(), events.clone());
        let (addr, _) = portico_e2e::serve_connections(move |stream| {
            let (calls, events) = (c.clone(), e.clone());
            async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (calls, events) = (calls.clone(), events.clone());
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let event: Value = serde_json::from_slice(&body).unwrap();
                        events.lock().unwrap().push(event.clone());
                        let token = event["authorizationToken"]
                            .as_str()
                            // REST events spell names as clients do (Title-Case here),
                            // HTTP API ones in lower case.
                            .or_else(|| event["headers"]["Authorization"].as_str())
                            .or_else(|| event["headers"]["authorization"].as_str())
                            .unwrap_or_default()
                            .to_string();
                        let arn = event["methodArn"].as_str().unwrap_or_default();
                        let base = arn.split('/').next().unwrap_or_default().to_string();
                        let policy = |stmts: Value| {
                            json!({"principalId": "user-9", "policyDocument": {"Version": "2012-10-17", "Statement": stmts},
                                   "context": {"tier": "gold"}, "usageIdentifierKey": "key-9"})
                        };
                        let (status, answer) = match token.as_str() {
                            "allow-get" => (
                                200,
                                policy(json!([
                                    {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": format!("{base}/*")},
                                    {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": format!("{base}/*/DELETE/*")}
                                ])),
                            ),
                            "deny" => (
                                200,
                                policy(
                                    json!([{"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": "*"}]),
                                ),
                            ),
                            "other-api" => (
                                200,
                                policy(
                                    json!([{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:aws:execute-api:*:*:other/*"}]),
                                ),
                            ),
                            "malformed" => (200, json!({"principalId": "x"})),
                            "simple-yes" => (
                                200,
                                json!({"isAuthorized": true, "context": {"tier": "silver"}}),
                            ),
                            "simple-no" => (200, json!({"isAuthorized": false})),
                            "unauthorized" => (200, json!({"errorMessage": "Unauthorized"})),
                            "slow" => {
                                tokio::time::sleep(Duration::from_secs(12)).await;
                                (
                                    200,
                                    policy(
                                        json!([{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"}]),
                                    ),
                                )
                            }
                            _ => (500, json!({"errorMessage": "boom"})),
                        };
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(bytes::Bytes::from(
                                    answer.to_string(),
                                )))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            }
        })
        .await;
        FunctionServer {
            addr,
            calls,
            events,
        }
    }
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn token_authorizer_policies_are_cached_and_evaluated_per_method_arn() {
    let f = FunctionServer::start().await;
    let authorizer = format!(
        "apiVersion: portico.dev/v1alpha1\nkind: Authorizer\nmetadata: {{name: fn, namespace: default}}\nspec:\n  type: TOKEN\n  functionUri: http://{}/2015-03-31/functions/function/invocations\n  identityValidationExpression: '^[a-z-]+$'\n  resultTtlInSeconds: 300\n",
        f.addr
    );
    let api = rest_api(
        "mobile",
        &format!(
            r#"  resources:
    - path: /items/{{id}}
      methods:
        GET: {{authorizationType: CUSTOM, authorizerRef: {{name: fn}}, integration: {ok}}}
        DELETE: {{authorizationType: CUSTOM, authorizerRef: {{name: fn}}, integration: {ok}}}
"#,
            ok = mock("ok"),
        ),
    );
    let st = stage(
        "mobile-dev",
        "mobile",
        "  stageName: dev\n  accessLogSettings:\n    format: '{\"requestId\":\"$context.requestId\",\"principal\":\"$context.authorizer.principalId\",\"tier\":\"$context.authorizer.tier\",\"errorType\":\"$context.error.responseType\"}'\n",
    );
    let proxy = Proxy::start(&[("a.yaml", &authorizer), ("api.yaml", &api), ("s.yaml", &st)]).await;
    let c = Client::new();
    let call = |m: Method, token: &'static str| {
        let (c, url) = (&c, proxy.url("/dev/items/7"));
        async move {
            let h: Vec<(&str, &str)> = if token.is_empty() {
                vec![]
            } else {
                vec![("authorization", token)]
            };
            c.send(m, &url, &h, "").await
        }
    };

    // Missing token, or one failing the validation expression: 401 without a call.
    assert_eq!(call(Method::GET, "").await.status, 401);
    assert_eq!(call(Method::GET, "Not Valid!").await.status, 401);
    assert_eq!(f.calls(), 0);

    // Allowed GET; the context reaches $context.authorizer.*.
    let r = call(Method::GET, "allow-get").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let line = proxy
        .access_log_line(&r.request_id(), Duration::from_secs(10))
        .await;
    assert_eq!(line["principal"], "user-9", "{line}");
    assert_eq!(line["tier"], "gold", "{line}");
    let event = f.events.lock().unwrap()[0].clone();
    assert_eq!(event["type"], "TOKEN");
    assert_eq!(
        event["methodArn"],
        "arn:aws:execute-api:portico:000000000000:mobile/dev/GET/items/7"
    );

    // The cached policy is evaluated per method ARN: DELETE is denied, without a new call.
    let r = call(Method::DELETE, "allow-get").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("explicit deny"), "{}", r.text());
    for _ in 0..3 {
        assert_eq!(call(Method::GET, "allow-get").await.status, 200);
    }
    assert_eq!(f.calls(), 1);

    // Deny, no matching Allow: 403. Unauthorized answer: 401. Malformed: 500
    // AUTHORIZER_CONFIGURATION_ERROR. Function error: 500 AUTHORIZER_FAILURE.
    // AWS's messages tell an explicit Deny from a missing Allow.
    let r = call(Method::GET, "deny").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        json!({"message": "User is not authorized to access this resource with an explicit deny"})
    );
    assert_eq!(r.header("x-amzn-errortype"), "AccessDeniedException");
    let r = call(Method::GET, "other-api").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        json!({"message": "User is not authorized to access this resource"})
    );
    assert_eq!(call(Method::GET, "unauthorized").await.status, 401);
    let r = call(Method::GET, "malformed").await;
    assert_error(&proxy, &r, 500, "AUTHORIZER_CONFIGURATION_ERROR").await;
    let r = call(Method::GET, "boom").await;
    assert_error(&proxy, &r, 500, "AUTHORIZER_FAILURE").await;
}

#[tokio::test]
async fn api_key_source_authorizer_meters_the_usage_identifier_key() {
    let f = FunctionServer::start().await;
    // The function answers `allow-get` with usageIdentifierKey "key-9" (a key of the plan),
    // `simple-yes` with none.
    let manifests = format!(
        r#"apiVersion: portico.dev/v1alpha1
kind: Authorizer
metadata: {{name: fn, namespace: default}}
spec:
  type: TOKEN
  functionUri: http://{addr}/2015-03-31/functions/function/invocations
  resultTtlInSeconds: 300
---
apiVersion: portico.dev/v1alpha1
kind: Authorizer
metadata: {{name: simple, namespace: default}}
spec:
  type: REQUEST
  identitySource: [$request.header.Authorization]
  enableSimpleResponses: true
  functionUri: http://{addr}/
---
apiVersion: portico.dev/v1alpha1
kind: UsagePlan
metadata: {{name: partner, namespace: default}}
spec:
  throttle: {{rateLimit: 0.001, burstLimit: 2}}
  apiStages: [{{stageRef: {{name: partner-dev}}}}]
---
apiVersion: portico.dev/v1alpha1
kind: ApiKey
metadata: {{name: partner-key, namespace: default}}
spec:
  valueFrom: {{secretKeyRef: {{name: partner-keys, key: value}}}}
  usagePlanRefs: [{{name: partner}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: partner-keys, namespace: default}}
stringData: {{value: key-9}}
"#,
        addr = f.addr
    );
    let api = rest_api(
        "partner",
        &format!(
            r#"  apiKeySource: AUTHORIZER
  resources:
    - path: /items
      methods:
        GET: {{authorizationType: CUSTOM, authorizerRef: {{name: fn}}, apiKeyRequired: true, integration: {ok}}}
    - path: /simple
      methods:
        GET: {{authorizationType: CUSTOM, authorizerRef: {{name: simple}}, apiKeyRequired: true, integration: {ok}}}
"#,
            ok = mock("ok"),
        ),
    );
    let st = stage("partner-dev", "partner", "  stageName: dev\n");
    let proxy = Proxy::start(&[("m.yaml", &manifests), ("api.yaml", &api), ("s.yaml", &st)]).await;
    let c = Client::new();
    let get = |path: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let (c, url) = (&c, proxy.url(path));
        async move { c.send(Method::GET, &url, &headers, "").await }
    };

    // The authorizer's key opens the method without an x-api-key header; the plan meters it
    // (burst 2, then 429 THROTTLED: a token per 1,000 s cannot come back during the test).
    for _ in 0..2 {
        let r = get("/dev/items", vec![("authorization", "allow-get")]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("ratelimit-limit"), "2");
    }
    let r = get("/dev/items", vec![("authorization", "allow-get")]).await;
    assert_error(&proxy, &r, 429, "THROTTLED").await;

    // With source AUTHORIZER, x-api-key is not read: an authorizer answer without
    // usageIdentifierKey gets 403 INVALID_API_KEY even with the right header.
    let r = get(
        "/dev/simple",
        vec![("authorization", "simple-yes"), ("x-api-key", "key-9")],
    )
    .await;
    assert_error(&proxy, &r, 403, "INVALID_API_KEY").await;
    assert_eq!(r.json(), json!({"message": "Forbidden"}));
}

#[tokio::test]
async fn slow_request_authorizers_fail_and_simple_responses_work() {
    let f = FunctionServer::start().await;
    let authorizer = format!(
        "apiVersion: portico.dev/v1alpha1\nkind: Authorizer\nmetadata: {{name: fn, namespace: default}}\nspec:\n  type: REQUEST\n  identitySource: [$request.header.Authorization]\n  functionUri: http://{}/\n  resultTtlInSeconds: 0\n  enableSimpleResponses: true\n",
        f.addr
    );
    let api = rest_api(
        "http",
        &format!(
            "  protocol: HTTP\n  routes:\n    - routeKey: GET /things\n      authorizationType: CUSTOM\n      authorizerRef: {{name: fn}}\n      integration: {}\n",
            mock("ok")
        ),
    );
    let st = stage("http-dev", "http", "  stageName: dev\n");
    let proxy = Proxy::start(&[("a.yaml", &authorizer), ("api.yaml", &api), ("s.yaml", &st)]).await;
    let c = Client::new();
    let r = c
        .send(
            Method::GET,
            &proxy.url("/dev/things?x=1"),
            &[("authorization", "slow")],
            "",
        )
        .await;
    assert_error(&proxy, &r, 500, "AUTHORIZER_FAILURE").await;
    let event = f.events.lock().unwrap()[0].clone();
    assert_eq!(event["type"], "REQUEST");
    assert_eq!(event["queryStringParameters"]["x"], "1");
    assert_eq!(event["headers"]["authorization"], "slow");
    // Simple answers; TTL 0: every request calls the function.
    let before = f.calls();
    for (token, want) in [("simple-yes", 200), ("simple-yes", 200), ("simple-no", 403)] {
        let r = c
            .send(
                Method::GET,
                &proxy.url("/dev/things"),
                &[("authorization", token)],
                "",
            )
            .await;
        assert_eq!(r.status, want, "{token}: {}", r.text());
    }
    assert_eq!(f.calls(), before + 3);
    // A policy answer where a simple one is expected: 500 AUTHORIZER_CONFIGURATION_ERROR.
    let r = c
        .send(
            Method::GET,
            &proxy.url("/dev/things"),
            &[("authorization", "allow-get")],
            "",
        )
        .await;
    assert_error(&proxy, &r, 500, "AUTHORIZER_CONFIGURATION_ERROR").await;
}

async fn assert_error(proxy: &Proxy, r: &portico_e2e::Response, status: u16, ty: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let line = proxy
        .access_log_line(&r.request_id(), Duration::from_secs(10))
        .await;
    assert_eq!(line["errorType"], ty, "{line}");
}

#[tokio::test]
async fn https_key_sets_and_functions_trust_the_ca_file_and_nothing_else() {
    let key = Key::generate("tls");
    let jwks = JwksServer::start(&[&key]).await;
    let jwks_tls = TlsFront::start(jwks.addr).await;
    let f = FunctionServer::start().await;
    let f_tls = TlsFront::start(f.addr).await;
    // The two fronts have different CAs: --ca-file gets both in one bundle.
    let mut bundle = std::fs::read_to_string(jwks_tls.ca_path()).unwrap();
    bundle.push_str(&std::fs::read_to_string(f_tls.ca_path()).unwrap());
    let bundle_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bundle_file.path(), bundle).unwrap();

    let mut m = manifests(&format!("    jwksUri: https://{}/jwks\n", jwks_tls.addr));
    m.push((
        "fn.yaml",
        format!(
            "apiVersion: portico.dev/v1alpha1\nkind: Authorizer\nmetadata: {{name: fn, namespace: default}}\nspec:\n  type: TOKEN\n  functionUri: https://{}/\n",
            f_tls.addr
        ),
    ));
    m.push((
        "fn-api.yaml",
        rest_api(
            "fn-api",
            &format!(
                "  resources:\n    - path: /items\n      methods:\n        GET: {{authorizationType: CUSTOM, authorizerRef: {{name: fn}}, integration: {}}}\n",
                mock("ok")
            ),
        ),
    ));
    m.push((
        "fn-stage.yaml",
        stage("fn-dev", "fn-api", "  stageName: fn\n"),
    ));
    let refs: Vec<(&str, &str)> = m.iter().map(|(n, c)| (*n, c.as_str())).collect();
    let c = Client::new();
    let token = key.sign(&claims());
    let call_fn = |proxy: &Proxy| {
        let (c, url) = (c.clone(), proxy.url("/fn/items"));
        async move {
            c.send(Method::GET, &url, &[("authorization", "allow-get")], "")
                .await
        }
    };

    // Without the CA: the issuer's certificate is not trusted, so no key set and no policy:
    // 401 for the JWT (fail closed), 500 AUTHORIZER_FAILURE for the function.
    let untrusting = Proxy::start(&refs).await;
    let r = get(&c, &untrusting, Some(&token)).await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = call_fn(&untrusting).await;
    assert_error(&untrusting, &r, 500, "AUTHORIZER_FAILURE").await;
    assert_eq!(
        (jwks.hits(), f.calls()),
        (0, 0),
        "no request past a failed handshake"
    );

    // With --ca-file: fetched and called over TLS.
    let mut builder = Proxy::builder()
        .arg("--ca-file")
        .arg(bundle_file.path().to_str().unwrap());
    for (name, content) in &refs {
        builder = builder.manifest(name, content);
    }
    let trusting = builder.start().await;
    let r = get(&c, &trusting, Some(&token)).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), trusting.logs());
    assert_eq!(jwks.hits(), 1);
    let r = call_fn(&trusting).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(f.calls(), 1);

    // A --ca-file that is not PEM stops the proxy at startup with a clear error.
    let garbage = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(garbage.path(), "not a certificate").unwrap();
    let out = std::process::Command::new(portico_e2e::proxy_bin())
        .args(["--config", "/nonexistent", "--ca-file"])
        .arg(garbage.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--ca-file"), "{stderr}");
}
