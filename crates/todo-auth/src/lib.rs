//! JWT verification for the Todo API: HS256 with a shared secret, or RS256, ES256 and
//! EdDSA (Ed25519) with keys from a JWKS URL, or both at once.
//!
//! - [`Verifier`] checks a bearer token and returns its [`Claims`]; build it once
//!   from an [`AuthConfig`] and clone it freely.
//! - [`mint_hs256`] makes HS256 tokens for `todo token` and for tests.
//! - [`AuthError::kind`] gives a bounded label for metrics; messages never hold the
//!   token or the secret.
//!
//! Modules: `header` (alg allow-list), `hs256` (secret, minting), `jwks` (key cache),
//! `recent` (verdicts reused for a minute at most), `claims`, `config`, `error`.

#![warn(missing_docs)]

mod claims;
mod config;
mod error;
mod header;
mod hs256;
mod jwks;
mod recent;

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

pub use claims::Claims;
pub use config::{AuthConfig, DEFAULT_LEEWAY_SECS, JwksOptions};
pub use error::{AuthError, ConfigError, JwksError};
pub use hs256::mint_hs256;

use jwks::{JwkKey, JwksCache};

/// Verifies bearer tokens. Cheap to clone: the keys and the JWKS cache sit behind an `Arc`.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// HMAC key for HS256 tokens; `None` means HS256 tokens are refused.
    hs256: Option<DecodingKey>,
    /// Key cache for asymmetric tokens; `None` means they are refused.
    jwks: Option<JwksCache>,
    /// Claim checks shared by every algorithm; `algorithms` is set per token.
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_secs: u64,
    /// HS256 tokens that verified in the last minute, with their claims.
    recent: recent::Recent,
}

impl Verifier {
    /// Fails (ConfigError) when neither a secret nor a JWKS URL is given, or secret shorter than 32 bytes.
    ///
    /// Also refuses an unparsable or non-http(s) JWKS URL, an empty issuer or audience,
    /// and a leeway above an hour. Nothing is fetched until the first token needs a key.
    pub fn new(config: AuthConfig) -> Result<Self, ConfigError> {
        Self::with_jwks_options(config, JwksOptions::default())
    }

    /// Like [`Verifier::new`], with JWKS cache tuning (tests shorten the intervals).
    pub fn with_jwks_options(
        config: AuthConfig,
        options: JwksOptions,
    ) -> Result<Self, ConfigError> {
        config.check()?;
        let jwks = config
            .jwks_url
            .as_deref()
            .map(|url| JwksCache::new(url, options))
            .transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                hs256: config.hs256_secret.as_ref().map(hs256::decoding_key),
                jwks,
                validation: base_validation(&config),
                issuer: config.issuer,
                audience: config.audience,
                leeway_secs: config.leeway_secs,
                recent: recent::Recent::default(),
            }),
        })
    }

    /// Verifies signature, alg, exp (required), nbf if present, iss/aud when configured; returns claims.
    ///
    /// HS256 tokens are checked only against the secret and asymmetric ones only
    /// against JWKS keys, so neither can be passed off as the other. Why a token
    /// failed is logged at debug level only.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(claims) = self.inner.recent.get(token, now) {
            return Ok(claims);
        }
        let result = self.verify_inner(token).await;
        match &result {
            Ok(claims) if header::parse(token).is_ok_and(|h| h.alg == Algorithm::HS256) => self
                .inner
                .recent
                .put(token, claims, now, self.inner.leeway_secs),
            Ok(_) => {}
            Err(err) => tracing::debug!(kind = err.kind(), error = %err, "token rejected"),
        }
        result
    }

    async fn verify_inner(&self, token: &str) -> Result<Claims, AuthError> {
        let header = header::parse(token)?;
        let mut validation = self.inner.validation.clone();
        validation.algorithms = vec![header.alg];

        let payload = if header.alg == Algorithm::HS256 {
            let key = self.inner.hs256.as_ref().ok_or(AuthError::AlgNotAllowed(
                "HS256 needs a shared secret, none is configured",
            ))?;
            jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)?.claims
        } else {
            let jwks = self.inner.jwks.as_ref().ok_or(AuthError::AlgNotAllowed(
                "asymmetric tokens need a JWKS URL, none is configured",
            ))?;
            let keys = jwks.keys_for(header.kid.as_deref(), header.alg).await?;
            decode_with_any(token, &keys, &validation)?
        };
        Claims::from_payload(payload)
    }
}

/// Tries each candidate key (several only for a token without `kid`). A signature
/// that fails moves on to the next key; any other error is final, because
/// `jsonwebtoken` checks claims only after the signature has verified.
fn decode_with_any(
    token: &str,
    keys: &[Arc<JwkKey>],
    validation: &Validation,
) -> Result<serde_json::Value, AuthError> {
    for candidate in keys {
        // Belt and braces: the cache only offers keys pinned to the token's alg.
        if !validation.algorithms.contains(&candidate.alg) {
            continue;
        }
        match jsonwebtoken::decode::<serde_json::Value>(token, &candidate.key, validation) {
            Ok(data) => return Ok(data.claims),
            Err(err) if is_key_mismatch(err.kind()) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(AuthError::BadSignature)
}

fn is_key_mismatch(kind: &JwtErrorKind) -> bool {
    matches!(
        kind,
        JwtErrorKind::InvalidSignature
            | JwtErrorKind::InvalidEcdsaKey
            | JwtErrorKind::InvalidEddsaKey
            | JwtErrorKind::InvalidRsaKey(_)
            | JwtErrorKind::InvalidKeyFormat
    )
}

/// The claim checks: `exp` and `sub` always required, `nbf` checked when present,
/// `iss`/`aud` required and compared only when configured.
fn base_validation(config: &AuthConfig) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = config.leeway_secs;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &config.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        // Otherwise jsonwebtoken rejects any token that carries an `aud`.
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

impl fmt::Debug for Verifier {
    /// Shows which key sources are configured, never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.inner.hs256.is_some())
            .field("jwks_url", &self.inner.jwks.as_ref().map(JwksCache::url))
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("leeway_secs", &self.inner.validation.leeway)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{EncodingKey, Header};
    use secrecy::SecretString;
    use serde_json::json;

    use super::*;

    const SECRET: &str = "unit-test-secret-0123456789abcdef";

    fn secret() -> SecretString {
        SecretString::from(SECRET)
    }

    fn hs_verifier(leeway_secs: u64) -> Verifier {
        Verifier::new(AuthConfig {
            hs256_secret: Some(secret()),
            leeway_secs,
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn hs_token(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[tokio::test]
    async fn nbf_in_the_future_beyond_leeway_is_rejected() {
        let verifier = hs_verifier(5);
        let token = hs_token(json!({"sub": "u", "exp": now() + 600, "nbf": now() + 60}));

        let err = verifier.verify(&token).await.unwrap_err();

        assert_eq!(err.kind(), "claims");
    }

    #[tokio::test]
    async fn nbf_within_leeway_is_accepted() {
        let verifier = hs_verifier(30);
        let nbf = now() + 10;
        let token = hs_token(json!({"sub": "u", "exp": now() + 600, "nbf": nbf}));

        let claims = verifier.verify(&token).await.unwrap();

        assert_eq!(claims.nbf, Some(nbf));
        assert_eq!(claims.sub, "u");
    }

    #[tokio::test]
    async fn missing_or_empty_sub_is_rejected() {
        let verifier = hs_verifier(0);
        for claims in [
            json!({"exp": now() + 60}),
            json!({"sub": "", "exp": now() + 60}),
        ] {
            let err = verifier.verify(&hs_token(claims)).await.unwrap_err();
            assert_eq!(err.kind(), "claims");
        }
    }

    #[tokio::test]
    async fn aud_in_token_is_ignored_when_no_audience_is_configured() {
        let verifier = hs_verifier(0);
        let token = hs_token(json!({"sub": "u", "exp": now() + 60, "aud": "someone"}));

        let claims = verifier.verify(&token).await.unwrap();

        assert_eq!(claims.aud, vec!["someone"]);
    }

    #[tokio::test]
    async fn asymmetric_tokens_are_refused_without_a_jwks_url() {
        let verifier = hs_verifier(0);
        let header = Header {
            kid: Some("k".into()),
            ..Header::new(Algorithm::RS256)
        };
        // The signature is never looked at: the alg alone rules the token out.
        let token = format!(
            "{}.{}.c2ln",
            token_part(&serde_json::to_value(&header).unwrap()),
            token_part(&json!({"sub": "u", "exp": now() + 60}))
        );

        let err = verifier.verify(&token).await.unwrap_err();

        assert_eq!(err.kind(), "alg_not_allowed");
    }

    #[tokio::test]
    async fn errors_and_debug_never_show_the_token_or_secret() {
        let verifier = hs_verifier(0);
        let token = hs_token(json!({"sub": "u", "exp": now() - 100}));

        let err = verifier.verify(&token).await.unwrap_err();

        let shown = format!("{err} {err:?} {verifier:?}");
        assert!(!shown.contains(&token), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains(token.split('.').nth(1).unwrap()), "{shown}");
    }

    #[test]
    fn verifier_is_cheap_to_clone() {
        let verifier = hs_verifier(0);
        let clone = verifier.clone();
        assert!(Arc::ptr_eq(&verifier.inner, &clone.inner));
    }

    #[test]
    fn mint_ttl_is_whole_seconds() {
        let token = mint_hs256(&secret(), "u", Duration::from_millis(1500), None, None).unwrap();
        let payload = token_payload(&token);
        assert_eq!(
            payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(),
            1
        );
    }

    fn token_part(value: &serde_json::Value) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn token_payload(token: &str) -> serde_json::Value {
        use base64::Engine;
        let part = token.split('.').nth(1).unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    }
}
