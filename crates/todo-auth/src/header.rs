//! Reads a token's JOSE header before any key is chosen.
//!
//! We parse it ourselves (rather than with `jsonwebtoken::decode_header`) so that
//! `alg: none` and other unlisted algorithms are reported as `alg_not_allowed`
//! instead of a generic parse failure, and so that the allow-list is enforced
//! before a key is even looked up.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::error::AuthError;

/// Upper bound on a token's length: real tokens are a few hundred bytes, and
/// refusing huge ones early keeps a flood of junk cheap to reject.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The header fields that steer verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenHeader {
    /// One of the four allowed algorithms.
    pub(crate) alg: Algorithm,
    /// Key id; selects the JWKS key.
    pub(crate) kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Vec<String>>,
    // `jku`, `x5u` and `jwk` are deliberately ignored: keys come only from our config.
}

/// Parses the header and checks `alg` against the allow-list (HS256, RS256, ES256, EdDSA).
pub(crate) fn parse(token: &str) -> Result<TokenHeader, AuthError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Malformed("token too long"));
    }
    let mut segments = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(AuthError::Malformed(
            "expected three dot-separated segments",
        ));
    };
    let raw = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed("header is not base64url"))?;
    let raw: RawHeader = serde_json::from_slice(&raw)
        .map_err(|_| AuthError::Malformed("header is not a JSON object with alg"))?;

    // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
    if raw.crit.is_some_and(|crit| !crit.is_empty()) {
        return Err(AuthError::Malformed("unsupported critical header"));
    }
    let alg = match raw.alg.as_str() {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        other if other.eq_ignore_ascii_case("none") => {
            return Err(AuthError::AlgNotAllowed("unsigned token (alg none)"));
        }
        _ => return Err(AuthError::AlgNotAllowed("algorithm not in the allow-list")),
    };
    Ok(TokenHeader { alg, kid: raw.kid })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_with_header(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    #[test]
    fn reads_alg_and_kid() {
        let header = parse(&token_with_header(r#"{"alg":"RS256","kid":"k1"}"#)).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn alg_none_in_any_case_is_not_allowed() {
        for alg in ["none", "None", "NONE"] {
            let err = parse(&token_with_header(&format!(r#"{{"alg":"{alg}"}}"#))).unwrap_err();
            assert_eq!(err.kind(), "alg_not_allowed", "{alg}");
        }
    }

    #[test]
    fn algorithms_outside_the_allow_list_are_not_allowed() {
        for alg in ["HS384", "HS512", "RS512", "PS256", "ES384", "XYZ"] {
            let err = parse(&token_with_header(&format!(r#"{{"alg":"{alg}"}}"#))).unwrap_err();
            assert_eq!(err.kind(), "alg_not_allowed", "{alg}");
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for token in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!!.e30.c2ln",
            &token_with_header("[]"),
        ] {
            let err = parse(token).unwrap_err();
            assert_eq!(err.kind(), "malformed", "{token}");
        }
    }

    #[test]
    fn unknown_critical_headers_are_rejected() {
        let err = parse(&token_with_header(r#"{"alg":"HS256","crit":["b64"]}"#)).unwrap_err();
        assert_eq!(err.kind(), "malformed");
    }

    #[test]
    fn oversized_tokens_are_rejected_before_decoding() {
        let err = parse(&"a".repeat(MAX_TOKEN_LEN + 1)).unwrap_err();
        assert_eq!(err.kind(), "malformed");
    }
}
