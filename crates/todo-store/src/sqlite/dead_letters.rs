//! Dead letters: events a consumer could not handle, kept once per consumer and event.

use rusqlite::{Connection, params};

use super::rows;
use crate::{DeadLetter, Result, StoredDeadLetter};

/// Records `letters`; a consumer and event already kept get their row updated instead.
pub(super) fn record(conn: &Connection, letters: &[DeadLetter]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO dead_letters (consumer, event_id, event_type, position, payload, reason,
            error, attempts, first_failed_at, last_failed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
         ON CONFLICT (consumer, event_id) DO UPDATE SET
            event_type = excluded.event_type, position = excluded.position,
            payload = excluded.payload, reason = excluded.reason, error = excluded.error,
            attempts = attempts + 1, last_failed_at = excluded.last_failed_at",
    )?;
    for letter in letters {
        let at = letter.failed_at.timestamp_micros();
        stmt.execute(params![
            letter.consumer,
            letter.event_id.to_string(),
            letter.event_type,
            letter.position,
            letter.payload,
            letter.reason,
            letter.error,
            at,
            at,
        ])?;
    }
    Ok(())
}

pub(super) fn list(conn: &Connection, limit: i64) -> Result<Vec<StoredDeadLetter>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, consumer, event_id, event_type, position, payload, reason, error, attempts,
            first_failed_at, last_failed_at
         FROM dead_letters ORDER BY first_failed_at, id LIMIT ?",
    )?;
    rows::collect(stmt.query([limit])?, |row| {
        Ok(StoredDeadLetter {
            id: row.get(0)?,
            letter: DeadLetter {
                consumer: row.get(1)?,
                event_id: rows::uuid_at(row, 2)?,
                event_type: row.get(3)?,
                position: row.get(4)?,
                payload: row.get(5)?,
                reason: row.get(6)?,
                error: row.get(7)?,
                failed_at: rows::time_at(row, 10)?,
            },
            attempts: row.get(8)?,
            first_failed_at: rows::time_at(row, 9)?,
        })
    })
}
