//! Opaque page cursors.
//!
//! A cursor records where the last page ended (the sort key value and the id that breaks
//! ties) plus the sort it belongs to, so a cursor can't be replayed against another sort.
//! It is base64url(JSON): opaque to clients, and readable when debugging.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Position after the last item of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Sort the cursor was made for (`created_at`, `due_at`, ..., or a list's own name).
    #[serde(rename = "s")]
    pub sort: String,
    /// Whether that sort was descending.
    #[serde(rename = "d")]
    pub descending: bool,
    /// The last item's sort key.
    #[serde(rename = "k")]
    pub key: CursorKey,
    /// The last item's id (the tie-breaker).
    #[serde(rename = "i")]
    pub id: String,
}

/// A sort key value: numbers for times, ranks and sequence numbers; text for titles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CursorKey {
    /// An integer key.
    Int(i64),
    /// A text key.
    Text(String),
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not something this service produced.
    #[error("is not a valid cursor")]
    Malformed,
    /// Made for a different sort or order.
    #[error("was made for a different sort or order; start again without a cursor")]
    WrongSort,
}

impl Cursor {
    /// Encodes to the opaque string sent as `next_cursor`.
    pub fn encode(&self) -> String {
        // Serializing these plain fields cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a client's cursor, checking it matches the requested sort.
    pub fn decode(raw: &str, sort: &str, descending: bool) -> Result<Self, CursorError> {
        if raw.len() > 2048 {
            return Err(CursorError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| CursorError::Malformed)?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| CursorError::Malformed)?;
        if cursor.sort != sort || cursor.descending != descending {
            return Err(CursorError::WrongSort);
        }
        Ok(cursor)
    }

    /// The tie-breaking id as a UUID (tasks, reminders and notifications break ties on a
    /// task id), or `Malformed`.
    pub fn uuid_id(&self) -> Result<uuid::Uuid, CursorError> {
        self.id.parse().map_err(|_| CursorError::Malformed)
    }

    /// The integer key, or `Malformed` if the cursor holds text.
    pub fn int_key(&self) -> Result<i64, CursorError> {
        match self.key {
            CursorKey::Int(v) => Ok(v),
            CursorKey::Text(_) => Err(CursorError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = CursorKey> {
        prop_oneof![
            any::<i64>().prop_map(CursorKey::Int),
            ".{0,50}".prop_map(CursorKey::Text)
        ]
    }

    proptest! {
        #[test]
        fn a_cursor_decodes_to_what_was_encoded(sort in "[a-z_]{1,12}", descending: bool, key in key(), id in "[0-9a-f-]{36}") {
            let cursor = Cursor { sort: sort.clone(), descending, key, id };
            let encoded = cursor.encode();
            prop_assert!(encoded.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            prop_assert_eq!(Cursor::decode(&encoded, &sort, descending), Ok(cursor));
        }

        #[test]
        fn garbage_never_decodes_into_a_cursor_and_never_panics(raw in ".{0,100}") {
            let _ = Cursor::decode(&raw, "created_at", true);
        }
    }

    #[test]
    fn a_cursor_for_another_sort_is_refused() {
        let c = Cursor {
            sort: "title".into(),
            descending: false,
            key: CursorKey::Text("a".into()),
            id: "x".into(),
        };
        assert_eq!(
            Cursor::decode(&c.encode(), "due_at", false),
            Err(CursorError::WrongSort)
        );
        assert_eq!(
            Cursor::decode(&c.encode(), "title", true),
            Err(CursorError::WrongSort)
        );
        assert_eq!(
            Cursor::decode("not-base64!", "title", false),
            Err(CursorError::Malformed)
        );
    }
}
