//! Dead letters: events a consumer could not handle, kept once per consumer and event.

use deadpool_postgres::GenericClient;

use crate::{DeadLetter, Result, StoredDeadLetter};

/// Records `letters` (inside the caller's transaction); a consumer and event already kept
/// get their row updated instead.
pub(super) async fn record(client: &impl GenericClient, letters: &[DeadLetter]) -> Result<()> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO dead_letters (consumer, event_id, event_type, position, payload, reason,
                error, attempts, first_failed_at, last_failed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)
             ON CONFLICT (consumer, event_id) DO UPDATE SET
                event_type = excluded.event_type, position = excluded.position,
                payload = excluded.payload, reason = excluded.reason, error = excluded.error,
                attempts = dead_letters.attempts + 1, last_failed_at = excluded.last_failed_at",
        )
        .await?;
    for letter in letters {
        client
            .execute(
                &stmt,
                &[
                    &letter.consumer,
                    &letter.event_id,
                    &letter.event_type,
                    &letter.position,
                    &letter.payload,
                    &letter.reason,
                    &letter.error,
                    &letter.failed_at,
                ],
            )
            .await?;
    }
    Ok(())
}

pub(super) async fn list(client: &impl GenericClient, limit: i64) -> Result<Vec<StoredDeadLetter>> {
    let stmt = client
        .prepare_cached(
            "SELECT id, consumer, event_id, event_type, position, payload, reason, error, attempts,
                first_failed_at, last_failed_at
             FROM dead_letters ORDER BY first_failed_at, id LIMIT $1",
        )
        .await?;
    let rows = client.query(&stmt, &[&limit.max(0)]).await?;
    rows.iter()
        .map(|row| {
            Ok(StoredDeadLetter {
                id: row.try_get(0)?,
                letter: DeadLetter {
                    consumer: row.try_get(1)?,
                    event_id: row.try_get(2)?,
                    event_type: row.try_get(3)?,
                    position: row.try_get(4)?,
                    payload: row.try_get(5)?,
                    reason: row.try_get(6)?,
                    error: row.try_get(7)?,
                    failed_at: row.try_get(10)?,
                },
                attempts: row.try_get(8)?,
                first_failed_at: row.try_get(9)?,
            })
        })
        .collect()
}
