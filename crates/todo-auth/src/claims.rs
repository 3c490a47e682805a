//! The claims a verified token hands to the application.

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::AuthError;

/// The verified claims of a token. Unknown claims are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id; guaranteed non-empty after verification.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch; always present after verification.
    pub exp: u64,
    /// Issuer, when the token carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audiences; `aud` may be a string or an array in a JWT, so both land here.
    /// Empty when the token has no `aud`.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub aud: Vec<String>,
    /// Issued-at, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not-before, when present (already checked against the clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

impl Claims {
    /// Turns the signature-checked payload into `Claims`, enforcing what
    /// `jsonwebtoken` does not: a `sub` that is a non-empty string.
    pub(crate) fn from_payload(payload: serde_json::Value) -> Result<Self, AuthError> {
        let claims: Claims = serde_json::from_value(payload)
            .map_err(|_| AuthError::Claims("claims have the wrong shape"))?;
        if claims.sub.trim().is_empty() {
            return Err(AuthError::Claims("empty sub"));
        }
        Ok(claims)
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(aud)) => vec![aud],
        Some(OneOrMany::Many(auds)) => auds,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn aud_accepts_a_string_or_an_array() {
        let one = Claims::from_payload(json!({"sub": "u1", "exp": 10, "aud": "todo"})).unwrap();
        let many =
            Claims::from_payload(json!({"sub": "u1", "exp": 10, "aud": ["a", "b"]})).unwrap();
        let none = Claims::from_payload(json!({"sub": "u1", "exp": 10})).unwrap();

        assert_eq!(one.aud, vec!["todo"]);
        assert_eq!(many.aud, vec!["a", "b"]);
        assert!(none.aud.is_empty());
    }

    #[test]
    fn empty_or_blank_sub_is_rejected() {
        for sub in ["", "   "] {
            let err = Claims::from_payload(json!({"sub": sub, "exp": 10})).unwrap_err();
            assert_eq!(err.kind(), "claims");
        }
    }

    #[test]
    fn non_string_sub_is_rejected() {
        let err = Claims::from_payload(json!({"sub": 42, "exp": 10})).unwrap_err();
        assert_eq!(err.kind(), "claims");
    }
}
