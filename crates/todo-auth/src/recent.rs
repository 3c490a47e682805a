//! HS256 tokens verified a moment ago.
//!
//! A client sends the same bearer token on every request, and checking it (decoding,
//! parsing the header and claims, the signature) costs more than many requests' own
//! work. So an HS256 token that verified is remembered, by its full text, with its claims,
//! until the earlier of its expiry (plus the leeway, as verification allows) and
//! [`TTL_SECS`] after it was checked. Only HS256: its secret cannot change while the
//! process runs, so the verdict cannot either, while a JWKS token is checked every time so
//! that a key withdrawn from the set stops being accepted at the next refresh.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::Claims;

/// Longest time a verdict is reused.
pub(crate) const TTL_SECS: u64 = 60;

/// Tokens remembered at most; past this the memory starts afresh.
const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct Recent {
    entries: Mutex<HashMap<Box<str>, Entry>>,
}

#[derive(Debug)]
struct Entry {
    claims: Claims,
    /// Last second (Unix time) this verdict holds.
    until: u64,
}

impl Recent {
    /// The claims of `token` if it verified recently and is still within its time.
    pub(crate) fn get(&self, token: &str, now: u64) -> Option<Claims> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(token)?;
        (now <= entry.until).then(|| entry.claims.clone())
    }

    /// Remembers that `token` verified at `now` with `claims`.
    pub(crate) fn put(&self, token: &str, claims: &Claims, now: u64, leeway: u64) {
        let until = claims.exp.saturating_add(leeway).min(now + TTL_SECS);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(
            token.into(),
            Entry {
                claims: claims.clone(),
                until,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            exp,
            iss: None,
            aud: Vec::new(),
            iat: None,
            nbf: None,
        }
    }

    #[test]
    fn a_verdict_holds_until_expiry_plus_leeway_and_at_most_the_ttl() {
        let recent = Recent::default();
        recent.put("short", &claims(1_000), 990, 30);
        assert!(recent.get("short", 1_030).is_some(), "within exp + leeway");
        assert!(recent.get("short", 1_031).is_none(), "expired");

        recent.put("long", &claims(100_000), 900, 30);
        assert!(recent.get("long", 900 + TTL_SECS).is_some());
        assert!(
            recent.get("long", 901 + TTL_SECS).is_none(),
            "checked again after the TTL"
        );
        assert!(recent.get("other", 900).is_none(), "only the exact token");
    }

    #[test]
    fn memory_is_bounded() {
        let recent = Recent::default();
        for i in 0..CAPACITY + 5 {
            recent.put(&format!("t{i}"), &claims(10_000), 0, 0);
        }
        assert!(recent.entries.lock().unwrap().len() <= CAPACITY);
    }
}
