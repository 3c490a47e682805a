//! The outbox/log, consumer positions and the audit log.

use std::sync::Arc;

use rusqlite::types::Value;
use rusqlite::{Connection, params, params_from_iter};
use todo_domain::time::Timestamp;
use todo_domain::{AuditEntry, CloudEvent, Topic};

use super::rows;
use super::writer::WriteCtx;
use crate::model::EncodedEvent;
use crate::{AuditQuery, LogRead, Result, StoredEvent};

/// An event ready for the outbox: serialized by the caller, so the writer thread (the one
/// serial stage of every write) only inserts it.
pub(super) struct OutboxRow {
    event: Arc<CloudEvent>,
    topic: Topic,
    id: String,
    key: String,
    payload: String,
}

impl OutboxRow {
    pub(super) fn new(event: &CloudEvent) -> Result<Self> {
        let EncodedEvent {
            topic,
            key,
            payload,
        } = EncodedEvent::new(event)?;
        Ok(OutboxRow {
            id: event.id.to_string(),
            key,
            payload,
            event: Arc::new(event.clone()),
            topic,
        })
    }
}

/// Appends `event` to the outbox inside the writer's transaction.
pub(super) fn append(ctx: &mut WriteCtx<'_>, event: &OutboxRow) -> Result<()> {
    ctx.conn
        .prepare_cached(
            "INSERT INTO events (id, topic, key, payload, created_at) VALUES (?, ?, ?, ?, ?)",
        )?
        .execute(params![
            event.id,
            event.topic.as_str(),
            event.key,
            event.payload,
            todo_domain::time::now().timestamp_micros(),
        ])?;
    let seq = ctx.conn.last_insert_rowid();
    ctx.appended(
        event.topic,
        StoredEvent {
            seq,
            event: Arc::clone(&event.event),
        },
    );
    Ok(())
}

/// `?, ?, ...` for `n` parameters.
fn placeholders(n: usize) -> String {
    let mut s = "?, ".repeat(n);
    s.truncate(s.len().saturating_sub(2));
    s
}

fn topic_args(first: i64, topics: &[Topic]) -> Vec<Value> {
    std::iter::once(Value::Integer(first))
        .chain(topics.iter().map(|t| Value::Text(t.as_str().to_owned())))
        .collect()
}

pub(super) fn read(conn: &Connection, after: i64, topics: &[Topic], limit: i64) -> Result<LogRead> {
    let sql = format!(
        "SELECT seq, topic, key, payload FROM events WHERE seq > ? AND topic IN ({}) ORDER BY seq LIMIT ?",
        placeholders(topics.len())
    );
    let mut args = topic_args(after, topics);
    args.push(Value::Integer(limit));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut read = LogRead::default();
    while let Some(row) = rows.next()? {
        read.push(
            row.get(0)?,
            row.get_ref(1)?.as_str()?,
            row.get_ref(2)?.as_str()?,
            row.get_ref(3)?.as_str()?,
        );
    }
    Ok(read)
}

pub(super) fn count_after(conn: &Connection, after: i64, topics: &[Topic]) -> Result<i64> {
    let sql = format!(
        "SELECT COUNT(*) FROM events WHERE seq > ? AND topic IN ({})",
        placeholders(topics.len())
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(topic_args(after, topics)), |r| r.get(0))?)
}

/// `created_at` of the first event after `after` on `topics`. One arm per topic, each a
/// single seek on `events_by_topic (topic, seq)`: an `IN` list over that index does not come
/// out in `seq` order, and scanning by `seq` alone would pass every event of other topics.
pub(super) fn oldest_after(
    conn: &Connection,
    after: i64,
    topics: &[Topic],
) -> Result<Option<Timestamp>> {
    if topics.is_empty() {
        return Ok(None);
    }
    let arms: Vec<String> = (0..topics.len())
        .map(|i| {
            format!(
                "SELECT * FROM (SELECT seq, created_at FROM events
                 WHERE topic = ?{} AND seq > ?1 ORDER BY seq LIMIT 1)",
                i + 2
            )
        })
        .collect();
    let sql = format!(
        "SELECT created_at FROM ({}) ORDER BY seq LIMIT 1",
        arms.join(" UNION ALL ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(topic_args(after, topics)))?;
    rows.next()?.map(|row| rows::time_at(row, 0)).transpose()
}

/// Most events one trimming transaction deletes. Every write queued behind the trim waits
/// for it: one statement over the whole log held them all up for 160 ms in the benchmark,
/// deleting nothing (it read every consumed event to test its age).
pub(super) const PRUNE_CHUNK: i64 = 1000;

/// Deletes, in the caller's transaction, the oldest events every one of `consumers` has
/// passed and that are older than `before`: at most [`PRUNE_CHUNK`], and none after the
/// first that is not older. Events are appended in `seq` order, so what follows that one is
/// newer too (but for a clock stepped back, whose events wait for a later trim), and
/// reading on would only scan the rest of the log. Answers how many went and whether
/// another chunk may be due.
pub(super) fn prune_chunk(
    conn: &Connection,
    before: Timestamp,
    consumers: &[&str],
) -> Result<(u64, bool)> {
    if consumers.is_empty() {
        return Ok((0, false));
    }
    let sql = format!(
        "SELECT COUNT(*), MIN(position) FROM consumer_positions WHERE consumer IN ({})",
        placeholders(consumers.len())
    );
    let (known, floor): (i64, Option<i64>) = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(consumers.iter()), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let Some(floor) = floor.filter(|_| known == consumers.len() as i64) else {
        return Ok((0, false)); // a consumer that never committed still needs everything
    };
    let before = before.timestamp_micros();
    let mut last = None;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, created_at FROM events WHERE seq <= ? ORDER BY seq LIMIT ?",
        )?;
        let mut rows = stmt.query(params![floor, PRUNE_CHUNK])?;
        while let Some(row) = rows.next()? {
            if row.get::<_, i64>(1)? >= before {
                break;
            }
            last = Some(row.get::<_, i64>(0)?);
        }
    }
    let Some(last) = last else {
        return Ok((0, false));
    };
    // Every event up to `last` is older than `before`, so this deletes all of them; a full
    // chunk means the next events were not read yet.
    let deleted = conn
        .prepare_cached("DELETE FROM events WHERE seq <= ? AND created_at < ?")?
        .execute(params![last, before])?;
    Ok((deleted as u64, deleted as i64 == PRUNE_CHUNK))
}

pub(super) fn position(conn: &Connection, consumer: &str) -> Result<i64> {
    let position: Option<i64> = conn
        .prepare_cached("SELECT position FROM consumer_positions WHERE consumer = ?")?
        .query([consumer])?
        .next()?
        .map(|r| r.get(0))
        .transpose()?;
    Ok(position.unwrap_or(0))
}

pub(super) fn commit_position(conn: &Connection, consumer: &str, position: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO consumer_positions (consumer, position, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (consumer) DO UPDATE SET position = MAX(position, excluded.position),
            updated_at = excluded.updated_at",
    )?
    .execute(params![
        consumer,
        position,
        todo_domain::time::now().timestamp_micros()
    ])?;
    Ok(())
}

/// An audit entry as its row: rendered by the caller, so the writer thread only inserts it.
pub(super) struct AuditRow {
    id: uuid::Uuid,
    event_id: String,
    user_id: String,
    event_type: String,
    task_id: Option<String>,
    occurred_at: i64,
    recorded_at: i64,
    source: String,
    data: String,
}

impl AuditRow {
    pub(super) fn new(entry: &AuditEntry) -> Result<Self> {
        Ok(AuditRow {
            id: entry.event_id,
            event_id: entry.event_id.to_string(),
            user_id: entry.user_id.clone(),
            event_type: entry.event_type.clone(),
            task_id: entry.task_id.map(|id| id.to_string()),
            occurred_at: entry.occurred_at.timestamp_micros(),
            recorded_at: entry.recorded_at.timestamp_micros(),
            source: entry.source.clone(),
            data: serde_json::to_string(&entry.data)?,
        })
    }
}

/// Records audit rows, skipping event ids already recorded; returns how many were new.
pub(super) fn record_audit(conn: &Connection, rows: &[AuditRow]) -> Result<Vec<uuid::Uuid>> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO audit_log (event_id, user_id, event_type, task_id, occurred_at, recorded_at, source, data)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
    )?;
    let mut inserted = Vec::new();
    for row in rows {
        let new = stmt.execute(params![
            row.event_id,
            row.user_id,
            row.event_type,
            row.task_id,
            row.occurred_at,
            row.recorded_at,
            row.source,
            row.data,
        ])? > 0;
        if new {
            inserted.push(row.id);
        }
    }
    Ok(inserted)
}

pub(super) fn list_audit(
    conn: &Connection,
    user_id: &str,
    query: &AuditQuery,
) -> Result<Vec<(i64, AuditEntry)>> {
    let mut sql = String::from(
        "SELECT seq, event_id, user_id, event_type, task_id, occurred_at, recorded_at, source, data
         FROM audit_log WHERE user_id = ?",
    );
    let mut args = vec![Value::Text(user_id.to_owned())];
    if let Some(task_id) = query.task_id {
        sql.push_str(" AND task_id = ?");
        args.push(Value::Text(task_id.to_string()));
    }
    if let Some(event_type) = &query.event_type {
        sql.push_str(" AND event_type = ?");
        args.push(Value::Text(event_type.clone()));
    }
    if let Some(before) = query.before {
        let at = before.occurred_at.timestamp_micros();
        sql.push_str(" AND (occurred_at < ? OR (occurred_at = ? AND seq < ?))");
        args.extend([
            Value::Integer(at),
            Value::Integer(at),
            Value::Integer(before.seq),
        ]);
    }
    sql.push_str(" ORDER BY occurred_at DESC, seq DESC LIMIT ?");
    args.push(Value::Integer(query.limit + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    rows::collect(stmt.query(params_from_iter(args))?, |row| {
        let entry = AuditEntry {
            event_id: rows::uuid_at(row, 1)?,
            user_id: row.get(2)?,
            event_type: row.get(3)?,
            task_id: rows::opt_uuid_at(row, 4)?,
            occurred_at: rows::time_at(row, 5)?,
            recorded_at: rows::time_at(row, 6)?,
            source: row.get(7)?,
            data: serde_json::from_str(row.get_ref(8)?.as_str()?)?,
        };
        Ok((row.get(0)?, entry))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated database whose log holds events stamped `stamps` (µs), in `seq` order,
    /// with `audit` past all of them.
    fn log_of(stamps: &[i64]) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate::to_latest(&mut conn).unwrap();
        for (i, at) in stamps.iter().enumerate() {
            conn.execute(
                "INSERT INTO events (id, topic, key, payload, created_at) VALUES (?, 'task-events', 'k', '{}', ?)",
                params![format!("e{i}"), at],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO consumer_positions (consumer, position, updated_at) VALUES ('audit', ?, 0)",
            [stamps.len() as i64],
        )
        .unwrap();
        conn
    }

    fn left(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT seq FROM events ORDER BY seq").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn at(micros: i64) -> Timestamp {
        Timestamp::from_timestamp_micros(micros).unwrap()
    }

    #[test]
    fn a_chunk_deletes_at_most_its_size_and_says_when_more_may_be_due() {
        let total = PRUNE_CHUNK * 2 + 7;
        let conn = log_of(&vec![100; total as usize]);
        let cut = at(200);
        assert_eq!(
            prune_chunk(&conn, cut, &["audit"]).unwrap(),
            (PRUNE_CHUNK as u64, true)
        );
        assert_eq!(
            left(&conn).first(),
            Some(&(PRUNE_CHUNK + 1)),
            "the oldest go first"
        );
        assert_eq!(
            prune_chunk(&conn, cut, &["audit"]).unwrap(),
            (PRUNE_CHUNK as u64, true)
        );
        assert_eq!(prune_chunk(&conn, cut, &["audit"]).unwrap(), (7, false));
        assert!(left(&conn).is_empty());
        assert_eq!(prune_chunk(&conn, cut, &["audit"]).unwrap(), (0, false));
    }

    #[test]
    fn a_chunk_stops_at_the_first_event_not_older_than_the_cut() {
        // Three old, one new, then two stamped older again (a clock stepped back).
        let conn = log_of(&[100, 100, 100, 300, 100, 100]);
        assert_eq!(prune_chunk(&conn, at(200), &["audit"]).unwrap(), (3, false));
        assert_eq!(
            left(&conn),
            vec![4, 5, 6],
            "nothing newer goes, nor what follows it"
        );
        assert_eq!(prune_chunk(&conn, at(400), &["audit"]).unwrap(), (3, false));
        assert!(left(&conn).is_empty());
    }

    #[test]
    fn a_chunk_goes_no_further_than_every_consumer_has_passed() {
        let conn = log_of(&[100; 5]);
        conn.execute(
            "INSERT INTO consumer_positions (consumer, position, updated_at) VALUES ('sync', 2, 0)",
            [],
        )
        .unwrap();
        assert_eq!(
            prune_chunk(&conn, at(200), &["audit", "sync"]).unwrap(),
            (2, false)
        );
        assert_eq!(
            prune_chunk(&conn, at(200), &["audit", "sync", "recurring"]).unwrap(),
            (0, false),
            "a consumer that never committed needs everything"
        );
        assert_eq!(left(&conn), vec![3, 4, 5]);
    }
}
