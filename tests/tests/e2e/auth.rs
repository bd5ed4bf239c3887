//! Authorizers through the real proxy: JWT with an inline key set and with a key set fetched
//! from a JWKS server that rotates its keys. Tokens are minted here with `ring`'s signers and
//! keys generated per test.

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
    let r = get(&c, &proxy, Some(&key.sign(&claims()))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "ok");
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = JwksServer {
            addr: listener.local_addr().unwrap(),
            body: Arc::default(),
            hits: Arc::default(),
        };
        server.rotate(keys);
        let (body, hits) = (server.body.clone(), server.hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (body, hits) = (body.clone(), hits.clone());
                tokio::spawn(async move {
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
                });
            }
        });
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
    // (30 s) are rejected without a fetch each: one refetch at most.
    jwks.rotate(&[&a, &b]);
    for i in 0..20 {
        let forged = Key::generate(&format!("made-up-{i}"));
        let r = get(&c, &proxy, Some(&forged.sign(&claims()))).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let r = get(&c, &proxy, Some(&b.sign(&claims()))).await;
    let hits = jwks.hits();
    assert!(hits <= 2, "the issuer was asked {hits} times");
    if r.status != 200 {
        // The refetch slot was used up by a made-up kid: after the interval, b is picked up.
        assert_eq!(r.status, 401, "{}", r.text());
        tokio::time::sleep(Duration::from_secs(31)).await;
        let r = get(&c, &proxy, Some(&b.sign(&claims()))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(jwks.hits() <= 3);
    }
    // Old key still valid while the issuer publishes it.
    let r = get(&c, &proxy, Some(&a.sign(&claims()))).await;
    assert_eq!(r.status, 200, "{}", r.text());
}
