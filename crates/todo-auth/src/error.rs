//! Errors for token verification, configuration and JWKS fetching.
//!
//! Messages never contain the token or the secret: callers may log them, and the
//! HTTP layer turns every [`AuthError`] into a bare 401 anyway.

use std::sync::Arc;

use jsonwebtoken::errors::{Error as JwtError, ErrorKind as JwtErrorKind};

/// Why a token was rejected (or could not be minted).
///
/// Use [`AuthError::kind`] for metric labels; the `Display` text is for debug logs.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token is not a well-formed JWS compact token (segments, base64, JSON).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not accepted here (`none`, HS384, …), needs a key source
    /// that is not configured, or does not match the key named by `kid`.
    #[error("algorithm not allowed: {0}")]
    AlgNotAllowed(&'static str),
    /// The signature does not verify with any candidate key.
    #[error("bad signature")]
    BadSignature,
    /// No JWKS key matches the token's `kid` (or, without `kid`, its algorithm).
    #[error("no JWKS key matches the token")]
    UnknownKey,
    /// `exp` is in the past, beyond the configured leeway.
    #[error("token expired")]
    Expired,
    /// A claim is missing or wrong: `exp`/`sub` absent, empty `sub`, `nbf` in the
    /// future, `iss` or `aud` not the configured value.
    #[error("invalid claims: {0}")]
    Claims(&'static str),
    /// The JWKS endpoint could not be fetched or parsed, and no cached key answers.
    #[error("JWKS unavailable")]
    JwksUnavailable(#[source] JwksError),
    /// Minting was asked to use an unusable secret.
    #[error("invalid auth configuration")]
    Config(#[from] ConfigError),
    /// Minting failed while signing.
    #[error("could not sign token: {0}")]
    Signing(&'static str),
}

impl AuthError {
    /// A short, bounded label for metrics and logs (never the token or the secret).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::AlgNotAllowed(_) => "alg_not_allowed",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey => "unknown_key",
            Self::Expired => "expired",
            Self::Claims(_) => "claims",
            Self::JwksUnavailable(_) => "jwks_unavailable",
            Self::Config(_) => "config",
            Self::Signing(_) => "signing",
        }
    }
}

/// Maps `jsonwebtoken`'s errors onto ours. Its messages are dropped on purpose:
/// a few of them echo claim names we already know, none are needed by callers.
impl From<JwtError> for AuthError {
    fn from(err: JwtError) -> Self {
        match err.into_kind() {
            JwtErrorKind::InvalidSignature => Self::BadSignature,
            JwtErrorKind::ExpiredSignature => Self::Expired,
            JwtErrorKind::ImmatureSignature => Self::Claims("token not valid yet (nbf)"),
            JwtErrorKind::InvalidIssuer => Self::Claims("issuer mismatch"),
            JwtErrorKind::InvalidAudience => Self::Claims("audience mismatch"),
            JwtErrorKind::InvalidSubject => Self::Claims("subject mismatch"),
            JwtErrorKind::MissingRequiredClaim(claim) => Self::Claims(match claim.as_str() {
                "exp" => "missing exp",
                "sub" => "missing sub",
                "iss" => "missing iss",
                "aud" => "missing aud",
                "nbf" => "missing nbf",
                _ => "missing required claim",
            }),
            JwtErrorKind::InvalidClaimFormat(_) => Self::Claims("claim has the wrong type"),
            JwtErrorKind::InvalidAlgorithm
            | JwtErrorKind::MissingAlgorithm
            | JwtErrorKind::InvalidAlgorithmName => Self::AlgNotAllowed("algorithm mismatch"),
            // A key that cannot even build a verifier cannot vouch for the token.
            JwtErrorKind::InvalidEcdsaKey
            | JwtErrorKind::InvalidEddsaKey
            | JwtErrorKind::InvalidRsaKey(_)
            | JwtErrorKind::InvalidKeyFormat => Self::BadSignature,
            JwtErrorKind::InvalidToken
            | JwtErrorKind::Base64(_)
            | JwtErrorKind::Json(_)
            | JwtErrorKind::Utf8(_) => Self::Malformed("undecodable token"),
            JwtErrorKind::RsaFailedSigning | JwtErrorKind::Signing(_) => {
                Self::Signing("signing failed")
            }
            _ => Self::Malformed("unusable token"),
        }
    }
}

/// Why an [`AuthConfig`](crate::AuthConfig) was refused; raised once, at startup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither `hs256_secret` nor `jwks_url` is set, so no token could ever verify.
    #[error("no key source: set an HS256 secret, a JWKS URL, or both")]
    NoKeySource,
    /// The HS256 secret is shorter than 32 bytes (RFC 7518 §3.2 wants at least the hash size).
    #[error("HS256 secret must be at least {min} bytes")]
    SecretTooShort {
        /// The minimum length in bytes.
        min: usize,
    },
    /// The JWKS URL does not parse or is not http(s).
    #[error("invalid JWKS URL: {0}")]
    InvalidJwksUrl(String),
    /// `issuer` or `audience` is set but empty, which would match nothing useful.
    #[error("{0} must not be empty when set")]
    EmptyValue(&'static str),
    /// The leeway is larger than any plausible clock skew.
    #[error("leeway must be at most {max} seconds")]
    LeewayTooLarge {
        /// The maximum accepted leeway in seconds.
        max: u64,
    },
    /// The HTTP client for the JWKS endpoint could not be built.
    #[error("could not build the JWKS HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

/// Why fetching the JWKS failed; the source of [`AuthError::JwksUnavailable`].
///
/// `Clone` (hence the `Arc`s) because one failed fetch answers every caller that
/// arrives before the next attempt is allowed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JwksError {
    /// Connecting, sending or reading failed (including the timeout).
    #[error("JWKS request failed")]
    Request(#[source] Arc<reqwest::Error>),
    /// The endpoint answered with a non-success status.
    #[error("JWKS endpoint answered HTTP {0}")]
    Status(u16),
    /// The body is larger than we are willing to read.
    #[error("JWKS response exceeds {0} bytes")]
    TooLarge(usize),
    /// The body is not a JSON JWK Set.
    #[error("JWKS response is not a JWK Set")]
    Parse(#[source] Arc<serde_json::Error>),
}

impl From<reqwest::Error> for JwksError {
    fn from(err: reqwest::Error) -> Self {
        // The URL is configuration, not news, and may carry query credentials.
        Self::Request(Arc::new(err.without_url()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonwebtoken_errors_map_to_bounded_kinds() {
        let cases = [
            (JwtErrorKind::InvalidSignature, "bad_signature"),
            (JwtErrorKind::ExpiredSignature, "expired"),
            (JwtErrorKind::ImmatureSignature, "claims"),
            (JwtErrorKind::InvalidIssuer, "claims"),
            (JwtErrorKind::InvalidAudience, "claims"),
            (JwtErrorKind::MissingRequiredClaim("exp".into()), "claims"),
            (JwtErrorKind::InvalidAlgorithm, "alg_not_allowed"),
            (JwtErrorKind::InvalidToken, "malformed"),
            (JwtErrorKind::InvalidKeyFormat, "bad_signature"),
        ];
        for (jwt_kind, expected) in cases {
            let err = AuthError::from(JwtError::from(jwt_kind.clone()));
            assert_eq!(err.kind(), expected, "{jwt_kind:?}");
        }
    }

    #[test]
    fn missing_exp_says_which_claim() {
        let err = AuthError::from(JwtError::from(JwtErrorKind::MissingRequiredClaim(
            "exp".into(),
        )));
        assert_eq!(err.to_string(), "invalid claims: missing exp");
    }
}
