//! End-to-end verification against a real (tiny) JWKS server on 127.0.0.1:0.
//!
//! Keys come from `tests/fixtures/` (see its README). The server counts requests so
//! the cache's fetch behaviour (lazy, rate-limited, single-flight) can be asserted.

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{Value, json};
use todo_auth::{AuthConfig, AuthError, JwksError, JwksOptions, Verifier, mint_hs256};

const SECRET: &str = "integration-test-secret-0123456789abcdef";

/// Short enough that tests can wait it out, long enough to observe rate limiting.
const REFETCH_INTERVAL: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------
// JWKS test server
// ---------------------------------------------------------------------------

struct ServerState {
    jwks: Mutex<Value>,
    hits: AtomicUsize,
    status: AtomicU16,
    delay_ms: AtomicU64,
}

struct JwksServer {
    url: String,
    state: Arc<ServerState>,
}

impl JwksServer {
    async fn start(jwks: Value) -> Self {
        let state = Arc::new(ServerState {
            jwks: Mutex::new(jwks),
            hits: AtomicUsize::new(0),
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/jwks"),
            state,
        }
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.lock().unwrap() = jwks;
    }

    fn fail_with(&self, status: StatusCode) {
        self.state.status.store(status.as_u16(), Ordering::SeqCst);
    }

    fn delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

async fn serve_jwks(State(state): State<Arc<ServerState>>) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap();
    if status != StatusCode::OK {
        return (status, "boom").into_response();
    }
    let jwks = state.jwks.lock().unwrap().clone();
    axum::Json(jwks).into_response()
}

// ---------------------------------------------------------------------------
// Fixtures and token builders
// ---------------------------------------------------------------------------

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fixture JWK Set restricted to these kids, in this order.
fn jwks_with(kids: &[&str]) -> Value {
    let all: Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    let keys: Vec<Value> = kids
        .iter()
        .map(|kid| {
            all["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"] == *kid)
                .cloned()
                .unwrap_or_else(|| panic!("no fixture key {kid}"))
        })
        .collect();
    json!({ "keys": keys })
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": now() + 300 })
}

/// Signs `claims` with the private key of fixture `key` (e.g. "rsa-1"), naming `kid`.
fn sign(alg: Algorithm, key: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = fixture(&format!("{key}.pem"));
    let encoding_key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        other => panic!("no fixture for {other:?}"),
    }
    .unwrap();
    let header = Header {
        kid: kid.map(str::to_owned),
        ..Header::new(alg)
    };
    jsonwebtoken::encode(&header, claims, &encoding_key).unwrap()
}

fn sign_hs256(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn hs_config() -> AuthConfig {
    AuthConfig {
        hs256_secret: Some(SecretString::from(SECRET)),
        ..AuthConfig::default()
    }
}

fn fast_options() -> JwksOptions {
    JwksOptions {
        min_refetch_interval: REFETCH_INTERVAL,
        max_age: Duration::from_secs(600),
        http_timeout: Duration::from_secs(2),
    }
}

fn jwks_verifier(server: &JwksServer, options: JwksOptions) -> Verifier {
    let config = AuthConfig {
        jwks_url: Some(server.url.clone()),
        ..AuthConfig::default()
    };
    Verifier::with_jwks_options(config, options).unwrap()
}

fn kind<T: std::fmt::Debug>(result: Result<T, AuthError>) -> &'static str {
    result.expect_err("token should be rejected").kind()
}

async fn wait_out_the_rate_limit() {
    tokio::time::sleep(REFETCH_INTERVAL + Duration::from_millis(50)).await;
}

// ---------------------------------------------------------------------------
// HS256
// ---------------------------------------------------------------------------

#[tokio::test]
async fn hs256_token_signed_with_the_secret_is_accepted() {
    let verifier = Verifier::new(hs_config()).unwrap();
    let token = sign_hs256(SECRET.as_bytes(), &claims("user-1"));

    let claims = verifier.verify(&token).await.unwrap();

    assert_eq!(claims.sub, "user-1");
}

#[tokio::test]
async fn hs256_token_signed_with_another_secret_is_rejected() {
    let verifier = Verifier::new(hs_config()).unwrap();
    let token = sign_hs256(b"another-secret-that-is-long-enough-123", &claims("u"));

    assert_eq!(kind(verifier.verify(&token).await), "bad_signature");
}

#[tokio::test]
async fn token_expired_beyond_the_leeway_is_rejected() {
    let verifier = Verifier::new(AuthConfig {
        leeway_secs: 30,
        ..hs_config()
    })
    .unwrap();
    let token = sign_hs256(SECRET.as_bytes(), &json!({"sub": "u", "exp": now() - 120}));

    assert_eq!(kind(verifier.verify(&token).await), "expired");
}

#[tokio::test]
async fn token_expired_within_the_leeway_is_accepted() {
    let verifier = Verifier::new(AuthConfig {
        leeway_secs: 30,
        ..hs_config()
    })
    .unwrap();
    let token = sign_hs256(SECRET.as_bytes(), &json!({"sub": "u", "exp": now() - 10}));

    assert_eq!(verifier.verify(&token).await.unwrap().sub, "u");
}

/// Verdicts are reused between requests, never past the token's own expiry.
#[tokio::test]
async fn a_token_accepted_a_moment_ago_is_rejected_once_it_expires() {
    let verifier = Verifier::new(AuthConfig {
        leeway_secs: 0,
        ..hs_config()
    })
    .unwrap();
    let token = sign_hs256(SECRET.as_bytes(), &json!({"sub": "u", "exp": now() + 1}));
    assert_eq!(verifier.verify(&token).await.unwrap().sub, "u");
    assert_eq!(verifier.verify(&token).await.unwrap().sub, "u");

    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(kind(verifier.verify(&token).await), "expired");
}

#[tokio::test]
async fn leeway_zero_rejects_a_token_that_just_expired() {
    let verifier = Verifier::new(AuthConfig {
        leeway_secs: 0,
        ..hs_config()
    })
    .unwrap();
    let token = sign_hs256(SECRET.as_bytes(), &json!({"sub": "u", "exp": now() - 10}));

    assert_eq!(kind(verifier.verify(&token).await), "expired");
}

#[tokio::test]
async fn token_without_exp_is_rejected() {
    let verifier = Verifier::new(hs_config()).unwrap();
    let token = sign_hs256(SECRET.as_bytes(), &json!({"sub": "u"}));

    let err = verifier.verify(&token).await.unwrap_err();

    assert_eq!(err.kind(), "claims");
    assert!(err.to_string().contains("exp"), "{err}");
}

#[tokio::test]
async fn mint_hs256_roundtrips_through_the_verifier() {
    let secret = SecretString::from(SECRET);
    let verifier = Verifier::new(AuthConfig {
        issuer: Some("todo".into()),
        audience: Some("todo-api".into()),
        ..hs_config()
    })
    .unwrap();

    let token = mint_hs256(
        &secret,
        "user-42",
        Duration::from_secs(120),
        Some("todo"),
        Some("todo-api"),
    )
    .unwrap();
    let claims = verifier.verify(&token).await.unwrap();

    assert_eq!(claims.sub, "user-42");
    assert_eq!(claims.iss.as_deref(), Some("todo"));
    assert_eq!(claims.aud, vec!["todo-api"]);
    assert!(claims.exp.abs_diff(now() + 120) <= 2, "exp {}", claims.exp);
}

// ---------------------------------------------------------------------------
// Algorithm allow-list and confusion
// ---------------------------------------------------------------------------

#[tokio::test]
async fn alg_none_token_is_rejected() {
    let server = JwksServer::start(jwks_with(&["rsa-1"])).await;
    let verifier = Verifier::new(AuthConfig {
        jwks_url: Some(server.url.clone()),
        ..hs_config()
    })
    .unwrap();
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims("admin"))
    );

    assert_eq!(kind(verifier.verify(&unsigned).await), "alg_not_allowed");
    assert_eq!(
        server.hits(),
        0,
        "an unsigned token must not reach the JWKS"
    );
}

#[tokio::test]
async fn hs256_token_keyed_with_the_rsa_public_key_is_rejected() {
    let server = JwksServer::start(jwks_with(&["rsa-1"])).await;
    let public_pem = fixture("rsa-1.pub.pem");
    let forged = jsonwebtoken::encode(
        &Header {
            kid: Some("rsa-1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims("admin"),
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();

    // Secret and JWKS both configured: HS256 is checked against the secret only.
    let both = Verifier::new(AuthConfig {
        jwks_url: Some(server.url.clone()),
        ..hs_config()
    })
    .unwrap();
    assert_eq!(kind(both.verify(&forged).await), "bad_signature");
    assert_eq!(server.hits(), 0, "HS256 tokens never consult JWKS keys");

    // JWKS only: HS256 is not accepted at all.
    let jwks_only = jwks_verifier(&server, fast_options());
    assert_eq!(kind(jwks_only.verify(&forged).await), "alg_not_allowed");
}

#[tokio::test]
async fn token_alg_that_does_not_match_the_jwk_type_is_rejected() {
    let server = JwksServer::start(jwks_with(&["rsa-1", "ec-1"])).await;
    let verifier = jwks_verifier(&server, fast_options());
    // Validly signed, but each names the other key type's kid.
    let es_under_rsa_kid = sign(Algorithm::ES256, "ec-1", Some("rsa-1"), &claims("u"));
    let rs_under_ec_kid = sign(Algorithm::RS256, "rsa-1", Some("ec-1"), &claims("u"));

    assert_eq!(
        kind(verifier.verify(&es_under_rsa_kid).await),
        "alg_not_allowed"
    );
    assert_eq!(
        kind(verifier.verify(&rs_under_ec_kid).await),
        "alg_not_allowed"
    );
}

#[tokio::test]
async fn algorithms_outside_the_allow_list_are_rejected() {
    let verifier = Verifier::new(hs_config()).unwrap();
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &claims("u"),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();

    assert_eq!(kind(verifier.verify(&hs384).await), "alg_not_allowed");
}

#[tokio::test]
async fn garbage_tokens_are_malformed() {
    let verifier = Verifier::new(hs_config()).unwrap();

    for token in ["", "not-a-jwt", "a.b.c", "a.b"] {
        assert_eq!(kind(verifier.verify(token).await), "malformed", "{token:?}");
    }
}

// ---------------------------------------------------------------------------
// JWKS
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_against_the_jwks() {
    let server = JwksServer::start(jwks_with(&["rsa-1", "ec-1", "ed-1"])).await;
    let verifier = jwks_verifier(&server, fast_options());
    let tokens = [
        (
            "rsa",
            sign(Algorithm::RS256, "rsa-1", Some("rsa-1"), &claims("rsa")),
        ),
        (
            "ec",
            sign(Algorithm::ES256, "ec-1", Some("ec-1"), &claims("ec")),
        ),
        (
            "ed",
            sign(Algorithm::EdDSA, "ed-1", Some("ed-1"), &claims("ed")),
        ),
    ];

    for (sub, token) in &tokens {
        assert_eq!(verifier.verify(token).await.unwrap().sub, *sub);
    }
    assert_eq!(server.hits(), 1, "keys are fetched once and cached");
}

#[tokio::test]
async fn jwks_token_signed_by_another_key_is_rejected() {
    let server = JwksServer::start(jwks_with(&["rsa-1"])).await;
    let verifier = jwks_verifier(&server, fast_options());
    let token = sign(Algorithm::RS256, "rsa-2", Some("rsa-1"), &claims("u"));

    assert_eq!(kind(verifier.verify(&token).await), "bad_signature");
}

#[tokio::test]
async fn token_without_kid_is_tried_against_keys_of_its_type() {
    let server = JwksServer::start(jwks_with(&["ec-1", "rsa-1", "rsa-2"])).await;
    let verifier = jwks_verifier(&server, fast_options());
    // rsa-2 is the second RSA key: the first candidate fails, the second verifies.
    let token = sign(Algorithm::RS256, "rsa-2", None, &claims("no-kid"));
    let ed_token = sign(Algorithm::EdDSA, "ed-1", None, &claims("no-kid"));

    assert_eq!(verifier.verify(&token).await.unwrap().sub, "no-kid");
    assert_eq!(kind(verifier.verify(&ed_token).await), "unknown_key");
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_is_rate_limited() {
    let server = JwksServer::start(jwks_with(&["rsa-1"])).await;
    let verifier = jwks_verifier(&server, fast_options());
    let known = sign(Algorithm::RS256, "rsa-1", Some("rsa-1"), &claims("u"));
    let unknown = sign(Algorithm::RS256, "rsa-2", Some("rsa-2"), &claims("u"));

    // The lazy first fetch already answers "unknown": no second request right away.
    assert_eq!(kind(verifier.verify(&unknown).await), "unknown_key");
    assert_eq!(server.hits(), 1);
    verifier.verify(&known).await.unwrap();
    assert_eq!(server.hits(), 1);

    wait_out_the_rate_limit().await;
    assert_eq!(kind(verifier.verify(&unknown).await), "unknown_key");
    assert_eq!(server.hits(), 2, "an unknown kid triggers one refetch");

    for _ in 0..5 {
        assert_eq!(kind(verifier.verify(&unknown).await), "unknown_key");
    }
    assert_eq!(server.hits(), 2, "further refetches are rate-limited");
    verifier.verify(&known).await.unwrap();

    wait_out_the_rate_limit().await;
    assert_eq!(kind(verifier.verify(&unknown).await), "unknown_key");
    assert_eq!(
        server.hits(),
        3,
        "allowed again once the interval has passed"
    );
}

#[tokio::test]
async fn rotated_in_key_is_accepted_after_a_refetch() {
    let server = JwksServer::start(jwks_with(&["rsa-1"])).await;
    let verifier = jwks_verifier(&server, fast_options());
    let old = sign(Algorithm::RS256, "rsa-1", Some("rsa-1"), &claims("old"));
    let new = sign(Algorithm::RS256, "rsa-2", Some("rsa-2"), &claims("new"));
    assert_eq!(verifier.verify(&old).await.unwrap().sub, "old");

    server.set_jwks(jwks_with(&["rsa-2"]));
    wait_out_the_rate_limit().await;

    assert_eq!(verifier.verify(&new).await.unwrap().sub, "new");
    assert_eq!(server.hits(), 2);
    // The retired key is gone with the old set.
    assert_eq!(kind(verifier.verify(&old).await), "unknown_key");
}

#[tokio::test]
async fn keys_older_than_max_age_are_refreshed() {
    let server = JwksServer::start(jwks_with(&["ec-1"])).await;
    let verifier = jwks_verifier(
        &server,
        JwksOptions {
            max_age: Duration::from_millis(200),
            min_refetch_interval: Duration::from_millis(100),
            ..fast_options()
        },
    );
    let token = sign(Algorithm::ES256, "ec-1", Some("ec-1"), &claims("u"));

    verifier.verify(&token).await.unwrap();
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.hits(), 1);

    tokio::time::sleep(Duration::from_millis(250)).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn stale_keys_stay_in_use_when_a_refresh_fails() {
    let server = JwksServer::start(jwks_with(&["ed-1"])).await;
    let verifier = jwks_verifier(
        &server,
        JwksOptions {
            max_age: Duration::from_millis(200),
            min_refetch_interval: Duration::from_millis(100),
            ..fast_options()
        },
    );
    let token = sign(Algorithm::EdDSA, "ed-1", Some("ed-1"), &claims("u"));
    verifier.verify(&token).await.unwrap();

    server.fail_with(StatusCode::INTERNAL_SERVER_ERROR);
    tokio::time::sleep(Duration::from_millis(250)).await;

    assert_eq!(verifier.verify(&token).await.unwrap().sub, "u");
    assert_eq!(server.hits(), 2, "the refresh was attempted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_verifications_share_one_fetch() {
    let server = JwksServer::start(jwks_with(&["rsa-1", "ec-1"])).await;
    server.delay(Duration::from_millis(200));
    let verifier = jwks_verifier(&server, fast_options());
    let tokens = [
        sign(Algorithm::RS256, "rsa-1", Some("rsa-1"), &claims("u")),
        sign(Algorithm::ES256, "ec-1", Some("ec-1"), &claims("u")),
    ];

    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let verifier = verifier.clone();
            let token = tokens[i % 2].clone();
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn unreachable_jwks_is_jwks_unavailable() {
    // Bind and drop a listener to get a port nobody answers on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let verifier = Verifier::with_jwks_options(
        AuthConfig {
            jwks_url: Some(format!("http://127.0.0.1:{port}/jwks")),
            ..AuthConfig::default()
        },
        fast_options(),
    )
    .unwrap();
    let token = sign(Algorithm::RS256, "rsa-1", Some("rsa-1"), &claims("u"));

    let err = verifier.verify(&token).await.unwrap_err();

    assert_eq!(err.kind(), "jwks_unavailable");
    let source = std::error::Error::source(&err).expect("the fetch error is the source");
    assert!(source.downcast_ref::<JwksError>().is_some());
}

#[tokio::test]
async fn failing_jwks_is_jwks_unavailable_and_not_hammered() {
    let server = JwksServer::start(jwks_with(&["rsa-1"])).await;
    server.fail_with(StatusCode::INTERNAL_SERVER_ERROR);
    let verifier = jwks_verifier(&server, fast_options());
    let token = sign(Algorithm::RS256, "rsa-1", Some("rsa-1"), &claims("u"));

    let err = verifier.verify(&token).await.unwrap_err();
    assert_eq!(err.kind(), "jwks_unavailable");
    assert!(matches!(
        std::error::Error::source(&err).and_then(|s| s.downcast_ref::<JwksError>()),
        Some(JwksError::Status(500))
    ));
    assert_eq!(kind(verifier.verify(&token).await), "jwks_unavailable");
    assert_eq!(server.hits(), 1, "retries wait for the refetch interval");

    server.fail_with(StatusCode::OK);
    wait_out_the_rate_limit().await;
    assert_eq!(verifier.verify(&token).await.unwrap().sub, "u");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn slow_jwks_times_out_as_jwks_unavailable() {
    let server = JwksServer::start(jwks_with(&["rsa-1"])).await;
    server.delay(Duration::from_secs(1));
    let verifier = jwks_verifier(
        &server,
        JwksOptions {
            http_timeout: Duration::from_millis(200),
            ..fast_options()
        },
    );
    let token = sign(Algorithm::RS256, "rsa-1", Some("rsa-1"), &claims("u"));

    let started = std::time::Instant::now();
    assert_eq!(kind(verifier.verify(&token).await), "jwks_unavailable");
    assert!(started.elapsed() < Duration::from_millis(900));
}

#[tokio::test]
async fn jwks_that_is_not_a_key_set_is_jwks_unavailable() {
    let server = JwksServer::start(json!({"not": "a key set"})).await;
    let verifier = jwks_verifier(&server, fast_options());
    let token = sign(Algorithm::RS256, "rsa-1", Some("rsa-1"), &claims("u"));

    assert_eq!(kind(verifier.verify(&token).await), "jwks_unavailable");
}

// ---------------------------------------------------------------------------
// iss / aud
// ---------------------------------------------------------------------------

#[tokio::test]
async fn issuer_mismatch_is_rejected_when_configured() {
    let verifier = Verifier::new(AuthConfig {
        issuer: Some("https://idp.example".into()),
        ..hs_config()
    })
    .unwrap();
    let good = json!({"sub": "u", "exp": now() + 60, "iss": "https://idp.example"});
    let wrong = json!({"sub": "u", "exp": now() + 60, "iss": "https://evil.example"});
    let missing = json!({"sub": "u", "exp": now() + 60});

    assert!(
        verifier
            .verify(&sign_hs256(SECRET.as_bytes(), &good))
            .await
            .is_ok()
    );
    assert_eq!(
        kind(
            verifier
                .verify(&sign_hs256(SECRET.as_bytes(), &wrong))
                .await
        ),
        "claims"
    );
    assert_eq!(
        kind(
            verifier
                .verify(&sign_hs256(SECRET.as_bytes(), &missing))
                .await
        ),
        "claims"
    );
}

#[tokio::test]
async fn audience_mismatch_is_rejected_when_configured() {
    let server = JwksServer::start(jwks_with(&["ec-1"])).await;
    let verifier = Verifier::with_jwks_options(
        AuthConfig {
            jwks_url: Some(server.url.clone()),
            audience: Some("todo-api".into()),
            ..AuthConfig::default()
        },
        fast_options(),
    )
    .unwrap();
    let token = |aud: Value| {
        let claims = json!({"sub": "u", "exp": now() + 60, "aud": aud});
        sign(Algorithm::ES256, "ec-1", Some("ec-1"), &claims)
    };

    assert!(verifier.verify(&token(json!("todo-api"))).await.is_ok());
    assert!(
        verifier
            .verify(&token(json!(["other", "todo-api"])))
            .await
            .is_ok()
    );
    assert_eq!(
        kind(verifier.verify(&token(json!("other"))).await),
        "claims"
    );
    assert_eq!(kind(verifier.verify(&token(json!(null))).await), "claims");
}

#[tokio::test]
async fn iss_and_aud_are_not_checked_when_not_configured() {
    let verifier = Verifier::new(hs_config()).unwrap();
    let claims = json!({"sub": "u", "exp": now() + 60, "iss": "anyone", "aud": "anything"});

    let verified = verifier
        .verify(&sign_hs256(SECRET.as_bytes(), &claims))
        .await
        .unwrap();

    assert_eq!(verified.iss.as_deref(), Some("anyone"));
}
