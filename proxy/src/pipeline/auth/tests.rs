//! Unit tests of the JWT verifier: tokens are signed here with `ring`'s signers (keys generated
//! per test, plus a committed test-only RSA key), independently of the verification code.

use super::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::json;

const RSA_DER: &[u8] = include_bytes!("testdata/rsa-test-key.der");
const RSA_N: &str = include_str!("testdata/rsa-test-key.n");
const ISS: &str = "https://issuer.example.com";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `claims` with `alg` and header `kid`.
enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Signer {
    fn rsa() -> Self {
        Signer::Rsa(RsaKeyPair::from_der(RSA_DER).unwrap())
    }
    fn ec() -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pk8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Signer::Ec(EcdsaKeyPair::from_pkcs8(alg, pk8.as_ref(), &rng).unwrap())
    }
    fn ed() -> Self {
        let pk8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Signer::Ed(Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap())
    }
    fn jwk(&self, kid: &str) -> Jwk {
        let mut k = Jwk {
            kid: Some(kid.into()),
            kty: String::new(),
            alg: None,
            crv: None,
            n: None,
            e: None,
            x: None,
            y: None,
            use_: Some("sig".into()),
        };
        match self {
            Signer::Rsa(_) => {
                k.kty = "RSA".into();
                k.n = Some(RSA_N.trim().into());
                k.e = Some("AQAB".into());
            }
            Signer::Ec(p) => {
                let pt = p.public_key().as_ref();
                k.kty = "EC".into();
                k.crv = Some("P-256".into());
                k.x = Some(b64(&pt[1..33]));
                k.y = Some(b64(&pt[33..65]));
            }
            Signer::Ed(p) => {
                k.kty = "OKP".into();
                k.crv = Some("Ed25519".into());
                k.x = Some(b64(p.public_key().as_ref()));
            }
        }
        k
    }
    fn sign(&self, alg: &str, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            Signer::Rsa(k) => {
                let pad: &dyn signature::RsaEncoding = match alg {
                    "PS256" => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(pad, &rng, input.as_bytes(), &mut sig).unwrap();
                sig
            }
            Signer::Ec(k) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "mobile", "sub": "user-1", "exp": now() + 300, "iat": now(),
           "scope": "read write"})
}

fn verifier(keys: Vec<Jwk>, algorithms: &[&str]) -> JwtVerifier {
    JwtVerifier::new(&JwtAuthorizer {
        source: portico_config::ObjectRef::new("Authorizer", "default", "jwt"),
        header: "authorization".into(),
        issuer: ISS.into(),
        audiences: vec!["mobile".into()],
        algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
        keys,
        jwks_uri: None,
    })
}

#[test]
fn rs256_ps256_es256_and_eddsa_tokens_verify() {
    let all = ["RS256", "PS256", "ES256", "EdDSA"];
    for (signer, alg) in [
        (Signer::rsa(), "RS256"),
        (Signer::rsa(), "PS256"),
        (Signer::ec(), "ES256"),
        (Signer::ed(), "EdDSA"),
    ] {
        let v = verifier(vec![signer.jwk("k1")], &all);
        let token = signer.sign(alg, "k1", &claims());
        let got = v.verify(&token, SystemTime::now()).unwrap();
        assert_eq!(got["sub"], "user-1", "{alg}");
    }
}

#[test]
fn verified_tokens_are_remembered_but_their_claims_are_checked_every_time() {
    let s = Signer::ec();
    let v = verifier(vec![s.jwk("k1")], &["ES256"]);
    let mut c = claims();
    c["exp"] = json!(now() + 100);
    let token = s.sign("ES256", "k1", &c);
    for _ in 0..3 {
        assert_eq!(
            v.verify(&token, SystemTime::now()).unwrap()["sub"],
            "user-1"
        );
    }
    assert_eq!(v.remembered(), 1);
    // Past exp + leeway: refused although remembered.
    let later = SystemTime::now() + Duration::from_secs(100 + 61 + 5);
    assert_eq!(v.verify(&token, later), Err(JwtError::Claim("exp")));
    // A token that ends like a remembered one but differs before is not taken for it.
    let mut other = claims();
    other["sub"] = json!("user-2");
    let other = s.sign("ES256", "k1", &other);
    let spliced = format!(
        "{}{}",
        &other[..other.len() - 43],
        &token[token.len() - 43..]
    );
    assert_eq!(memo_key(&spliced), memo_key(&token));
    assert_eq!(
        v.verify(&spliced, SystemTime::now()),
        Err(JwtError::Signature)
    );
    // A token with another signature is verified in full, refused and not remembered.
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = b64(&[7u8; 64]);
    parts[2] = &forged;
    assert_eq!(
        v.verify(&parts.join("."), SystemTime::now()),
        Err(JwtError::Signature)
    );
    assert_eq!(v.remembered(), 1);
    // Another verifier (a config reload) starts with nothing remembered; the map is bounded.
    let fresh = verifier(vec![s.jwk("k1")], &["ES256"]);
    assert_eq!(fresh.remembered(), 0);
    for i in 0..VERIFIED_CAP + 1 {
        let mut c = claims();
        c["sub"] = json!(format!("user-{i}"));
        fresh
            .verify(&s.sign("ES256", "k1", &c), SystemTime::now())
            .unwrap();
    }
    assert!(fresh.remembered() <= VERIFIED_CAP);
}

#[test]
fn expired_early_wrong_issuer_and_wrong_audience_tokens_are_rejected() {
    let s = Signer::ec();
    let v = verifier(vec![s.jwk("k1")], &["ES256"]);
    let with = |patch: Value| {
        let mut c = claims();
        for (k, val) in patch.as_object().unwrap() {
            if val.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = val.clone();
            }
        }
        v.verify(&s.sign("ES256", "k1", &c), SystemTime::now())
    };
    assert_eq!(
        with(json!({"exp": now() - 61})),
        Err(JwtError::Claim("exp"))
    );
    // Within the leeway.
    assert!(with(json!({"exp": now() - 30})).is_ok());
    assert_eq!(with(json!({"exp": null})), Err(JwtError::Claim("exp")));
    assert_eq!(
        with(json!({"nbf": now() + 120})),
        Err(JwtError::Claim("nbf"))
    );
    assert_eq!(
        with(json!({"iat": now() + 120})),
        Err(JwtError::Claim("iat"))
    );
    assert_eq!(
        with(json!({"iss": "https://evil"})),
        Err(JwtError::Claim("iss"))
    );
    assert_eq!(with(json!({"aud": "web"})), Err(JwtError::Claim("aud")));
    assert!(with(json!({"aud": ["web", "mobile"]})).is_ok());
    // Cognito access tokens: client_id instead of aud.
    assert!(with(json!({"aud": null, "client_id": "mobile"})).is_ok());
}

#[test]
fn none_hs256_confusion_unknown_kid_and_tampered_tokens_are_rejected() {
    let s = Signer::rsa();
    let v = verifier(vec![s.jwk("k1")], &["RS256"]);
    let good = s.sign("RS256", "k1", &claims());
    let (input, _) = good.rsplit_once('.').unwrap();
    let payload = input.split('.').nth(1).unwrap();

    // alg: none, empty signature.
    let none = format!(
        "{}.{payload}.",
        b64(json!({"alg": "none", "kid": "k1"}).to_string().as_bytes())
    );
    assert_eq!(
        v.verify(&none, SystemTime::now()),
        Err(JwtError::Algorithm("none".into()))
    );
    // HS256 signed with the RSA public key's bytes as the HMAC secret.
    let hs_input = format!(
        "{}.{payload}",
        b64(json!({"alg": "HS256", "kid": "k1"}).to_string().as_bytes())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, RSA_N.trim().as_bytes());
    let tag = ring::hmac::sign(&key, hs_input.as_bytes());
    let hs = format!("{hs_input}.{}", b64(tag.as_ref()));
    assert_eq!(
        v.verify(&hs, SystemTime::now()),
        Err(JwtError::Algorithm("HS256".into()))
    );
    // Even when HS256 were listed, no RSA key fits it.
    let lax = verifier(vec![s.jwk("k1")], &["RS256", "HS256"]);
    assert_eq!(
        lax.verify(&hs, SystemTime::now()),
        Err(JwtError::NoKey(Some("k1".into())))
    );
    // An EC key cannot verify an RS256 token and vice versa.
    let ec = Signer::ec();
    let mixed = verifier(vec![ec.jwk("k1")], &["RS256", "ES256"]);
    assert_eq!(
        mixed.verify(&good, SystemTime::now()),
        Err(JwtError::NoKey(Some("k1".into())))
    );
    // Unknown kid.
    let other = s.sign("RS256", "k2", &claims());
    assert_eq!(
        v.verify(&other, SystemTime::now()),
        Err(JwtError::NoKey(Some("k2".into())))
    );
    // Tampered payload.
    let mut c = claims();
    c["sub"] = json!("admin");
    let forged = format!(
        "{}.{}.{}",
        input.split('.').next().unwrap(),
        b64(c.to_string().as_bytes()),
        good.rsplit_once('.').unwrap().1
    );
    assert_eq!(
        v.verify(&forged, SystemTime::now()),
        Err(JwtError::Signature)
    );
    assert!(matches!(
        v.verify("a.b", SystemTime::now()),
        Err(JwtError::Malformed(_))
    ));
    assert!(v.verify(&good, SystemTime::now()).is_ok());
}

#[test]
fn a_key_restricted_to_another_alg_is_not_used() {
    let s = Signer::rsa();
    let mut k = s.jwk("k1");
    k.alg = Some("PS256".into());
    let v = verifier(vec![k], &["RS256", "PS256"]);
    assert!(matches!(
        v.verify(&s.sign("RS256", "k1", &claims()), SystemTime::now()),
        Err(JwtError::NoKey(_))
    ));
    assert!(
        v.verify(&s.sign("PS256", "k1", &claims()), SystemTime::now())
            .is_ok()
    );
}

#[test]
fn scopes_come_from_scope_or_scp_and_any_one_suffices() {
    let c = |v: Value| v.as_object().unwrap().clone();
    let req = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(has_any_scope(&c(json!({})), &[]));
    assert!(has_any_scope(
        &c(json!({"scope": "a b"})),
        &req(&["x", "b"])
    ));
    assert!(has_any_scope(&c(json!({"scp": ["a", "b"]})), &req(&["a"])));
    assert!(!has_any_scope(&c(json!({"scope": "a b"})), &req(&["c"])));
    assert!(!has_any_scope(&c(json!({})), &req(&["a"])));
}

#[test]
fn bearer_prefixes_are_stripped_case_insensitively() {
    assert_eq!(strip_bearer("Bearer abc"), "abc");
    assert_eq!(strip_bearer("bearer  abc "), "abc");
    assert_eq!(strip_bearer("abc"), "abc");
}

/// A JWKS server whose key set the test replaces; counts requests.
struct JwksServer {
    addr: std::net::SocketAddr,
    body: Arc<std::sync::Mutex<String>>,
    hits: Arc<std::sync::atomic::AtomicU64>,
}

impl JwksServer {
    async fn start(keys: &[Jwk]) -> Self {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(std::sync::Mutex::new(String::new()));
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let server = JwksServer { addr, body, hits };
        server.set(keys);
        let (body, hits) = (server.body.clone(), server.hits.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (body, hits) = (body.clone(), hits.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let b = body.lock().unwrap().clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("cache-control", "max-age=3600")
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
    fn set(&self, keys: &[Jwk]) {
        *self.body.lock().unwrap() = json!({ "keys": keys }).to_string();
    }
    fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn fetched_key_sets_are_cached_and_unknown_kids_refetch_at_most_once_per_interval() {
    let (a, b) = (Signer::ec(), Signer::ec());
    let server = JwksServer::start(&[a.jwk("a")]).await;
    let store = jwks::JwksStore::with_min_refetch(Duration::from_millis(300));
    let mut v = verifier(vec![], &["ES256"]);
    v.jwks = Some(store.entry(
        "authorizer/default/jwt",
        &format!("http://{}/jwks", server.addr),
    ));

    // First use fetches; later uses hit the cache (max-age 3600).
    for _ in 0..3 {
        assert!(v.verify_now(&a.sign("ES256", "a", &claims())).await.is_ok());
    }
    assert_eq!(server.hits(), 1);

    // The issuer rotates to key b. Within the interval, tokens with the new kid (or any
    // made-up kid) do not make the proxy refetch: they are rejected.
    server.set(&[b.jwk("b")]);
    for kid in ["b", "x1", "x2"] {
        assert!(matches!(
            v.verify_now(&b.sign("ES256", kid, &claims())).await,
            Err(JwtError::NoKey(_))
        ));
    }
    assert_eq!(server.hits(), 1);

    // After the interval, one unknown kid triggers one refetch, which picks up key b.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(v.verify_now(&b.sign("ES256", "b", &claims())).await.is_ok());
    assert_eq!(server.hits(), 2);
    // Key a is gone from the set.
    assert!(
        v.verify_now(&a.sign("ES256", "a", &claims()))
            .await
            .is_err()
    );
    assert_eq!(server.hits(), 2);

    // The server fails: the last good set keeps serving.
    server.set(&[]);
    *server.body.lock().unwrap() = "not json".into();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        v.verify_now(&a.sign("ES256", "zz", &claims()))
            .await
            .is_err()
    );
    assert_eq!(server.hits(), 3);
    assert!(v.verify_now(&b.sign("ES256", "b", &claims())).await.is_ok());
}
