//! The JWKS key cache: fetched lazily, refreshed after a max age, refetched
//! (rate-limited) when a token names an unknown `kid`, one fetch at a time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::config::JwksOptions;
use crate::error::{AuthError, ConfigError, JwksError};

/// A JWK Set is a few kilobytes; a response far beyond that is not one.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// RSA keys below this size are too weak to trust (NIST SP 800-57).
const MIN_RSA_BITS: usize = 2048;

/// One usable verification key from the JWKS, pinned to the single algorithm it may verify.
pub(crate) struct JwkKey {
    /// The only algorithm this key verifies: pinning it blocks algorithm confusion.
    pub(crate) alg: Algorithm,
    /// The public key itself.
    pub(crate) key: DecodingKey,
}

impl JwkKey {
    /// Keeps only signature keys of an allowed type; says why a key is skipped.
    fn from_jwk(jwk: &Jwk) -> Result<Self, &'static str> {
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return Err("not a signature key (use)");
        }
        if matches!(&jwk.common.key_operations, Some(ops) if !ops.contains(&KeyOperations::Verify))
        {
            return Err("not a verification key (key_ops)");
        }
        let (alg, expected) = match &jwk.algorithm {
            AlgorithmParameters::RSA(params) => {
                if rsa_modulus_bits(&params.n) < MIN_RSA_BITS {
                    return Err("RSA modulus too small or unreadable");
                }
                (Algorithm::RS256, KeyAlgorithm::RS256)
            }
            AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
                (Algorithm::ES256, KeyAlgorithm::ES256)
            }
            AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
                (Algorithm::EdDSA, KeyAlgorithm::EdDSA)
            }
            // Symmetric keys never come from a JWKS: HS256 uses only the configured secret.
            AlgorithmParameters::OctetKey(_) => return Err("symmetric key"),
            _ => return Err("unsupported key type or curve"),
        };
        if jwk.common.key_algorithm.is_some_and(|a| a != expected) {
            return Err("alg not allowed for this key type");
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| "unreadable key material")?;
        Ok(Self { alg, key })
    }
}

/// Bit length of a base64url big-endian modulus; 0 when it does not decode.
fn rsa_modulus_bits(n: &str) -> usize {
    use base64::Engine;
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n) else {
        return 0;
    };
    let digits: Vec<u8> = bytes.into_iter().skip_while(|b| *b == 0).collect();
    match digits.first() {
        Some(first) => digits.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// Parses a JWK Set body, skipping (and logging) keys we cannot or will not use, so
/// one exotic key does not take the whole set down.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<Vec<(Option<String>, JwkKey)>, JwksError> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet = serde_json::from_slice(body).map_err(|e| JwksError::Parse(Arc::new(e)))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for value in set.keys {
        let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        let parsed = serde_json::from_value::<Jwk>(value)
            .map_err(|_| "not a JWK we understand")
            .and_then(|jwk| JwkKey::from_jwk(&jwk));
        match parsed {
            Ok(key) => keys.push((kid, key)),
            Err(reason) => tracing::warn!(kid = kid.as_deref(), reason, "skipping JWKS key"),
        }
    }
    Ok(keys)
}

/// What the cached set says about a token's key.
enum Lookup {
    /// Keys that may verify the token (several only when it has no `kid`).
    Found(Vec<Arc<JwkKey>>),
    /// The `kid` exists but is for another algorithm: never try it, never refetch.
    AlgMismatch,
    /// No key fits; a refetch might help.
    Missing,
}

/// The cached keys and fetch bookkeeping, behind a std `RwLock` (never held across `.await`).
#[derive(Default)]
struct KeySet {
    /// Keys by `kid`; a `Vec` because a set may reuse a `kid` across key types.
    by_kid: HashMap<String, Vec<Arc<JwkKey>>>,
    /// Every key, for tokens without `kid`.
    all: Vec<Arc<JwkKey>>,
    /// Last successful fetch; drives the max-age refresh.
    fetched_at: Option<Instant>,
    /// Last fetch attempt, successful or not; drives the rate limit.
    attempted_at: Option<Instant>,
    /// Why the last attempt failed; cleared by a success.
    last_error: Option<JwksError>,
}

impl KeySet {
    fn is_fresh(&self, now: Instant, options: &JwksOptions) -> bool {
        self.fetched_at
            .is_some_and(|at| now.saturating_duration_since(at) < options.max_age)
    }

    fn may_fetch(&self, now: Instant, options: &JwksOptions) -> bool {
        self.attempted_at
            .is_none_or(|at| now.saturating_duration_since(at) >= options.min_refetch_interval)
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let matching = |keys: &mut dyn Iterator<Item = &Arc<JwkKey>>| -> Vec<Arc<JwkKey>> {
            keys.filter(|k| k.alg == alg).cloned().collect()
        };
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                None => Lookup::Missing,
                Some(keys) => match matching(&mut keys.iter()) {
                    found if found.is_empty() => Lookup::AlgMismatch,
                    found => Lookup::Found(found),
                },
            },
            None => match matching(&mut self.all.iter()) {
                found if found.is_empty() => Lookup::Missing,
                found => Lookup::Found(found),
            },
        }
    }

    /// Turns a lookup into the answer for the caller.
    fn answer(&self, lookup: Lookup) -> Result<Vec<Arc<JwkKey>>, AuthError> {
        match lookup {
            Lookup::Found(keys) => Ok(keys),
            Lookup::AlgMismatch => Err(AuthError::AlgNotAllowed(
                "token alg does not match the key's type",
            )),
            // We could not check with the provider, so do not claim the key is unknown.
            Lookup::Missing => match &self.last_error {
                Some(err) => Err(AuthError::JwksUnavailable(err.clone())),
                None => Err(AuthError::UnknownKey),
            },
        }
    }

    fn replace(&mut self, keys: Vec<(Option<String>, JwkKey)>, now: Instant) {
        self.by_kid.clear();
        self.all.clear();
        for (kid, key) in keys {
            let key = Arc::new(key);
            if let Some(kid) = kid {
                self.by_kid.entry(kid).or_default().push(Arc::clone(&key));
            }
            self.all.push(key);
        }
        self.fetched_at = Some(now);
        self.last_error = None;
    }
}

/// Fetches and caches the keys of one JWKS URL.
pub(crate) struct JwksCache {
    url: reqwest::Url,
    client: reqwest::Client,
    options: JwksOptions,
    keys: RwLock<KeySet>,
    /// Held for the whole of a fetch, so concurrent misses wait for one request
    /// instead of each sending their own (no stampede on the identity provider).
    fetch_lock: tokio::sync::Mutex<()>,
}

impl JwksCache {
    /// Validates the URL and builds the HTTP client; fetches nothing yet.
    pub(crate) fn new(url: &str, options: JwksOptions) -> Result<Self, ConfigError> {
        let url =
            reqwest::Url::parse(url).map_err(|e| ConfigError::InvalidJwksUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::InvalidJwksUrl(
                "scheme must be http or https".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(options.http_timeout)
            .build()
            .map_err(ConfigError::HttpClient)?;
        Ok(Self {
            url,
            client,
            options,
            keys: RwLock::new(KeySet::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The URL, for `Debug` output.
    pub(crate) fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The keys that may verify a token with this `kid` and `alg`, fetching when the
    /// cache is empty, too old, or lacks the `kid` (and the rate limit allows).
    pub(crate) async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<Arc<JwkKey>>, AuthError> {
        // Fast path, no fetch lock: fresh keys that settle the question.
        {
            let set = self.read();
            if set.is_fresh(Instant::now(), &self.options) {
                match set.lookup(kid, alg) {
                    Lookup::Missing => {}
                    settled => return set.answer(settled),
                }
            }
        }

        let _one_fetch_at_a_time = self.fetch_lock.lock().await;
        {
            // Re-check under the lock: whoever held it may have just fetched what we need.
            let now = Instant::now();
            let set = self.read();
            let lookup = set.lookup(kid, alg);
            let fresh = set.is_fresh(now, &self.options);
            if (fresh && !matches!(lookup, Lookup::Missing)) || !set.may_fetch(now, &self.options) {
                // Either settled, or rate-limited: answer from what we have, stale or not.
                return set.answer(lookup);
            }
        }

        let fetched = self.fetch().await;
        let now = Instant::now();
        let mut set = self.write();
        set.attempted_at = Some(now);
        match fetched {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "JWKS fetched");
                set.replace(keys, now);
            }
            Err(err) => {
                // Stale keys, if any, stay in use: a provider blip should not log everyone out.
                tracing::warn!(error = %err, "JWKS fetch failed");
                set.last_error = Some(err);
            }
        }
        let lookup = set.lookup(kid, alg);
        set.answer(lookup)
    }

    async fn fetch(&self) -> Result<Vec<(Option<String>, JwkKey)>, JwksError> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err(JwksError::TooLarge(MAX_JWKS_BYTES));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksError::TooLarge(MAX_JWKS_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }

    fn read(&self) -> RwLockReadGuard<'_, KeySet> {
        // A panic while holding the lock cannot leave the set half-written in a way
        // that matters (replace is the only multi-step write), so recover the guard.
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, KeySet> {
        self.keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const JWKS: &str = include_str!("../tests/fixtures/jwks.json");

    fn fixture_keys() -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(JWKS).unwrap()["keys"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn key(kid: &str) -> serde_json::Value {
        fixture_keys()
            .into_iter()
            .find(|k| k["kid"] == kid)
            .unwrap()
    }

    fn parse(keys: Vec<serde_json::Value>) -> Vec<(Option<String>, JwkKey)> {
        parse_jwks(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn fixture_keys_pin_their_algorithms() {
        let parsed = parse(fixture_keys());
        let algs: Vec<_> = parsed
            .iter()
            .map(|(kid, key)| (kid.clone().unwrap(), key.alg))
            .collect();
        assert_eq!(
            algs,
            vec![
                ("rsa-1".to_string(), Algorithm::RS256),
                ("rsa-2".to_string(), Algorithm::RS256),
                ("ec-1".to_string(), Algorithm::ES256),
                ("ed-1".to_string(), Algorithm::EdDSA),
            ]
        );
    }

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let mut encryption = key("rsa-1");
        encryption["use"] = json!("enc");
        let mut wrong_alg = key("rsa-2");
        wrong_alg["alg"] = json!("PS256");
        let symmetric = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let p384 = json!({"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AA", "y": "AA"});
        let unknown = json!({"kty": "XYZ", "kid": "odd"});
        let weak_rsa = json!({"kty": "RSA", "kid": "weak", "n": "AQAB", "e": "AQAB"});

        let parsed = parse(vec![
            encryption,
            wrong_alg,
            symmetric,
            p384,
            unknown,
            weak_rsa,
            key("ec-1"),
        ]);

        let kids: Vec<_> = parsed.iter().map(|(kid, _)| kid.as_deref()).collect();
        assert_eq!(kids, vec![Some("ec-1")]);
    }

    #[test]
    fn keys_without_alg_get_it_from_their_type() {
        let mut ed = key("ed-1");
        ed.as_object_mut().unwrap().remove("alg");
        let parsed = parse(vec![ed]);
        assert_eq!(parsed[0].1.alg, Algorithm::EdDSA);
    }

    #[test]
    fn a_body_that_is_not_a_jwk_set_is_an_error() {
        assert!(matches!(parse_jwks(b"<html>"), Err(JwksError::Parse(_))));
        assert!(matches!(
            parse_jwks(br#"{"nokeys": []}"#),
            Err(JwksError::Parse(_))
        ));
    }

    #[test]
    fn lookup_by_kid_refuses_a_key_of_another_type() {
        let mut set = KeySet::default();
        set.replace(parse(fixture_keys()), Instant::now());

        assert!(matches!(
            set.lookup(Some("ec-1"), Algorithm::ES256),
            Lookup::Found(keys) if keys.len() == 1
        ));
        assert!(matches!(
            set.lookup(Some("ec-1"), Algorithm::RS256),
            Lookup::AlgMismatch
        ));
        assert!(matches!(
            set.lookup(Some("nope"), Algorithm::RS256),
            Lookup::Missing
        ));
    }

    #[test]
    fn lookup_without_kid_offers_every_key_of_the_algorithm() {
        let mut set = KeySet::default();
        set.replace(parse(fixture_keys()), Instant::now());

        assert!(matches!(
            set.lookup(None, Algorithm::RS256),
            Lookup::Found(keys) if keys.len() == 2
        ));
        assert!(matches!(
            set.lookup(None, Algorithm::EdDSA),
            Lookup::Found(keys) if keys.len() == 1
        ));
    }

    #[test]
    fn modulus_bits_ignore_leading_zero_bytes() {
        use base64::Engine;
        let encode = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        assert_eq!(rsa_modulus_bits(&encode(&[0, 0x01, 0xff])), 9);
        assert_eq!(rsa_modulus_bits(&encode(&[0x80; 256])), 2048);
        assert_eq!(rsa_modulus_bits("!!"), 0);
    }

    #[test]
    fn only_http_urls_are_accepted() {
        let options = JwksOptions::default();
        assert!(JwksCache::new("https://idp.example/jwks", options.clone()).is_ok());
        assert!(matches!(
            JwksCache::new("file:///etc/passwd", options.clone()),
            Err(ConfigError::InvalidJwksUrl(_))
        ));
        assert!(matches!(
            JwksCache::new("not a url", options),
            Err(ConfigError::InvalidJwksUrl(_))
        ));
    }
}
