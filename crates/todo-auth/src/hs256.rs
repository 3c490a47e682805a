//! The HS256 shared secret: its strength check, its verification key, and minting.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::error::{AuthError, ConfigError};

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
pub(crate) const MIN_SECRET_LEN: usize = 32;

/// Refuses secrets too short to resist offline guessing.
pub(crate) fn check_secret(secret: &SecretString) -> Result<(), ConfigError> {
    if secret.expose_secret().len() < MIN_SECRET_LEN {
        return Err(ConfigError::SecretTooShort {
            min: MIN_SECRET_LEN,
        });
    }
    Ok(())
}

/// The HMAC verification key; `DecodingKey` redacts itself in `Debug` and zeroizes on drop.
pub(crate) fn decoding_key(secret: &SecretString) -> DecodingKey {
    DecodingKey::from_secret(secret.expose_secret().as_bytes())
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Mints an HS256 token for `sub` that expires after `ttl` (used by
/// `todo token --user <id>` and by tests). The secret must be at least 32 bytes.
pub fn mint_hs256(
    secret: &SecretString,
    sub: &str,
    ttl: Duration,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, AuthError> {
    check_secret(secret)?;
    if sub.trim().is_empty() {
        return Err(AuthError::Claims("empty sub"));
    }
    let now = jsonwebtoken::get_current_timestamp();
    let claims = MintedClaims {
        sub,
        iat: now,
        exp: now.saturating_add(ttl.as_secs()),
        iss: issuer,
        aud: audience,
    };
    let key = EncodingKey::from_secret(secret.expose_secret().as_bytes());
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &key,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretString {
        SecretString::from("0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn minted_token_carries_the_requested_claims() {
        let token = mint_hs256(
            &secret(),
            "user-1",
            Duration::from_secs(60),
            Some("issuer"),
            Some("aud"),
        )
        .unwrap();

        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.set_issuer(&["issuer"]);
        validation.set_audience(&["aud"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &decoding_key(&secret()),
            &validation,
        )
        .unwrap();
        let claims = data.claims;
        assert_eq!(claims["sub"], "user-1");
        assert_eq!(claims["iss"], "issuer");
        assert_eq!(claims["aud"], "aud");
        let exp = claims["exp"].as_u64().unwrap();
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(exp - iat, 60);
    }

    #[test]
    fn minting_refuses_a_short_secret_or_empty_sub() {
        let short = SecretString::from("short");
        let err = mint_hs256(&short, "u", Duration::from_secs(1), None, None).unwrap_err();
        assert_eq!(err.kind(), "config");

        let err = mint_hs256(&secret(), "", Duration::from_secs(1), None, None).unwrap_err();
        assert_eq!(err.kind(), "claims");
    }
}
