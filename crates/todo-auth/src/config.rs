//! What the verifier is told at startup: key sources, expected claims, cache tuning.

use std::time::Duration;

use secrecy::SecretString;

use crate::error::ConfigError;

/// Default clock-skew allowance for `exp`/`nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Largest accepted leeway: anything beyond an hour is a misconfiguration, not skew.
pub(crate) const MAX_LEEWAY_SECS: u64 = 3600;

/// How tokens are verified. At least one of `hs256_secret` and `jwks_url` must be set;
/// with both, HS256 tokens use the secret and asymmetric tokens the JWKS.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Shared secret for HS256 tokens (at least 32 bytes); `SecretString` keeps it out of `Debug`.
    pub hs256_secret: Option<SecretString>,
    /// URL of a JSON JWK Set with the RS256, ES256 and EdDSA (Ed25519) public keys.
    pub jwks_url: Option<String>,
    /// When set, tokens must carry exactly this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must list this value in `aud`.
    pub audience: Option<String>,
    /// clock-skew allowance for exp/nbf, seconds (default 30)
    pub leeway_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }
}

impl AuthConfig {
    /// Rejects settings that could never verify a token or would verify the wrong ones.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.hs256_secret.is_none() && self.jwks_url.is_none() {
            return Err(ConfigError::NoKeySource);
        }
        if let Some(secret) = &self.hs256_secret {
            crate::hs256::check_secret(secret)?;
        }
        if self.issuer.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::EmptyValue("issuer"));
        }
        if self.audience.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::EmptyValue("audience"));
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            return Err(ConfigError::LeewayTooLarge {
                max: MAX_LEEWAY_SECS,
            });
        }
        Ok(())
    }
}

/// Tuning for the JWKS key cache; the defaults suit production, tests shorten them.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// Least time between two fetches when a token names an unknown `kid` (or after a
    /// failed fetch), so junk tokens cannot hammer the identity provider. Default 10 s.
    pub min_refetch_interval: Duration,
    /// Keys older than this are refetched on next use, so revoked keys fall out. Default 10 min.
    pub max_age: Duration,
    /// Timeout for one JWKS request; a hung endpoint must not hang every request. Default 5 s.
    pub http_timeout: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            min_refetch_interval: Duration::from_secs(10),
            max_age: Duration::from_secs(600),
            http_timeout: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(len: usize) -> Option<SecretString> {
        Some(SecretString::from("s".repeat(len)))
    }

    #[test]
    fn needs_a_key_source() {
        let err = AuthConfig::default().check().unwrap_err();
        assert!(matches!(err, ConfigError::NoKeySource));
    }

    #[test]
    fn secret_must_be_at_least_32_bytes() {
        let short = AuthConfig {
            hs256_secret: secret(31),
            ..AuthConfig::default()
        };
        let long_enough = AuthConfig {
            hs256_secret: secret(32),
            ..AuthConfig::default()
        };

        assert!(matches!(
            short.check(),
            Err(ConfigError::SecretTooShort { min: 32 })
        ));
        assert!(long_enough.check().is_ok());
    }

    #[test]
    fn empty_issuer_or_audience_is_refused() {
        let base = AuthConfig {
            hs256_secret: secret(32),
            ..AuthConfig::default()
        };
        let issuer = AuthConfig {
            issuer: Some(String::new()),
            ..base.clone()
        };
        let audience = AuthConfig {
            audience: Some(String::new()),
            ..base
        };

        assert!(matches!(
            issuer.check(),
            Err(ConfigError::EmptyValue("issuer"))
        ));
        assert!(matches!(
            audience.check(),
            Err(ConfigError::EmptyValue("audience"))
        ));
    }

    #[test]
    fn huge_leeway_is_refused() {
        let config = AuthConfig {
            hs256_secret: secret(32),
            leeway_secs: MAX_LEEWAY_SECS + 1,
            ..AuthConfig::default()
        };
        assert!(matches!(
            config.check(),
            Err(ConfigError::LeewayTooLarge { .. })
        ));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let config = AuthConfig {
            hs256_secret: Some(SecretString::from("top-secret-value-0123456789abcdef")),
            ..AuthConfig::default()
        };
        assert!(!format!("{config:?}").contains("top-secret"));
    }
}
