//! Values the store takes and returns beside the domain types.

use std::sync::Arc;

use todo_domain::time::Timestamp;
use todo_domain::{CloudEvent, Task};
use uuid::Uuid;

/// An event as kept in the outbox, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position in the log: strictly increasing.
    pub seq: i64,
    /// The event itself, shared: every consumer of the in-process tail sees one copy.
    pub event: Arc<CloudEvent>,
}

/// A log row whose payload this build cannot read as a CloudEvent (edited by hand, or
/// written by something else): handed to readers as it is, so they keep it as a dead letter
/// and move past it instead of stopping at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableEvent {
    /// Position in the log.
    pub seq: i64,
    /// The row's topic.
    pub topic: String,
    /// The row's key (the user id, when the writer set one).
    pub key: String,
    /// The payload as stored.
    pub payload: String,
    /// Why it could not be read.
    pub error: String,
}

/// What [`crate::EventLog::read_log`] read: events, and rows that are not events, each in
/// log order; together they are the next `limit` rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRead {
    /// The readable events.
    pub events: Vec<StoredEvent>,
    /// The rows that could not be read.
    pub unreadable: Vec<UnreadableEvent>,
}

impl LogRead {
    /// Adds a row: an event when its payload reads as one, else an unreadable row.
    pub(crate) fn push(&mut self, seq: i64, topic: &str, key: &str, payload: &str) {
        match serde_json::from_str(payload) {
            Ok(event) => self.events.push(StoredEvent {
                seq,
                event: Arc::new(event),
            }),
            Err(e) => self.unreadable.push(UnreadableEvent {
                seq,
                topic: topic.to_owned(),
                key: key.to_owned(),
                payload: payload.to_owned(),
                error: format!("the stored payload is not a CloudEvent: {e}"),
            }),
        }
    }

    /// The last position read, if any.
    pub fn last_seq(&self) -> Option<i64> {
        let events = self.events.last().map(|e| e.seq);
        let unreadable = self.unreadable.last().map(|u| u.seq);
        events.max(unreadable)
    }

    /// The events only, refusing the read if a row could not be read (the strict form,
    /// [`crate::EventLog::read_events`]).
    pub fn into_events(self) -> crate::Result<Vec<StoredEvent>> {
        match self.unreadable.first() {
            Some(u) => Err(crate::StoreError::Corrupt(format!(
                "event log row {}: {}",
                u.seq, u.error
            ))),
            None => Ok(self.events),
        }
    }
}

/// What the in-process tail of the log answered (see [`crate::EventLog::recent_events`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TailRead {
    /// Matching events, oldest first.
    pub events: Vec<StoredEvent>,
    /// The position read through: every event up to it was looked at, so the next read
    /// may start here even when nothing matched.
    pub through: i64,
}

/// Where a page starts: after the item with this key and id (keyset pagination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seek {
    /// The previous page's last sort key.
    pub key: i64,
    /// Its id, breaking ties.
    pub id: String,
}

/// A plain page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    /// Page size (the store returns up to `limit + 1`).
    pub limit: i64,
    /// Start after this item.
    pub after: Option<Seek>,
}

/// `/audit` filters and page (newest `occurred_at` first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this task's events.
    pub task_id: Option<Uuid>,
    /// Only this CloudEvent type.
    pub event_type: Option<String>,
    /// Page size (the store returns up to `limit + 1`).
    pub limit: i64,
    /// Only entries listed after this one (older, or as old and recorded earlier).
    pub before: Option<AuditPosition>,
}

/// Where an audit page ends: the last entry's event time and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPosition {
    /// The entry's `occurred_at`.
    pub occurred_at: todo_domain::time::Timestamp,
    /// Its sequence number, breaking ties.
    pub seq: i64,
}

/// A webhook POST waiting to be (re)tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Row id.
    pub id: i64,
    /// The `reminder.due` event id (the receiver de-duplicates on it).
    pub event_id: Uuid,
    /// The JSON body to POST: the CloudEvent.
    pub payload: String,
    /// Attempts made so far.
    pub attempts: i64,
}

/// How one webhook attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Failed; try again at this time.
    Retry {
        /// When to try next.
        at: Timestamp,
        /// Why it failed (status or transport error).
        error: String,
    },
    /// Failed for the last time.
    GaveUp {
        /// Why the last attempt failed.
        error: String,
    },
}

impl WebhookOutcome {
    /// What the delivery row becomes: its status, when it is next due (or when it ended),
    /// and the last error.
    pub fn row(&self, now: Timestamp) -> (&'static str, Timestamp, Option<&str>) {
        match self {
            WebhookOutcome::Delivered => ("delivered", now, None),
            WebhookOutcome::Retry { at, error } => ("pending", *at, Some(error.as_str())),
            WebhookOutcome::GaveUp { error } => ("failed", now, Some(error.as_str())),
        }
    }
}

/// An event a consumer could not handle, to be kept rather than skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The consumer group that could not handle it.
    pub consumer: String,
    /// The CloudEvent id.
    pub event_id: Uuid,
    /// The CloudEvent `type`, as written (it may be one this build does not know).
    pub event_type: String,
    /// The event's position in the log when it was delivered.
    pub position: i64,
    /// The CloudEvent JSON, as delivered.
    pub payload: String,
    /// A short, bounded label for why (`unreadable_data`, `unknown_type`, ...).
    pub reason: String,
    /// What went wrong.
    pub error: String,
    /// When it failed.
    pub failed_at: Timestamp,
}

/// A kept dead letter: the last failure, plus when the first happened and how many there were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// Row id.
    pub id: i64,
    /// The last failure (`failed_at` is its time; `position`, `payload` and `error` are its).
    pub letter: DeadLetter,
    /// When the first failure was recorded.
    pub first_failed_at: Timestamp,
    /// Failures recorded for this consumer and event (1 on the first).
    pub attempts: i64,
}

/// What every store writes for an outbox event besides its own columns: the topic it
/// belongs on, its partition key (the user id) and its JSON.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) struct EncodedEvent {
    pub(crate) topic: todo_domain::Topic,
    pub(crate) key: String,
    pub(crate) payload: String,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl EncodedEvent {
    /// Encodes `event`; an unknown type has no topic and is refused.
    pub(crate) fn new(event: &todo_domain::CloudEvent) -> crate::Result<Self> {
        let topic = event
            .topic()
            .map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
        Ok(EncodedEvent {
            topic,
            key: event.user_id().unwrap_or_default().to_owned(),
            payload: serde_json::to_string(event)?,
        })
    }
}

/// What [`crate::Store::plan_reminder`] changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The reminder as it is now.
    pub reminder: todo_domain::Reminder,
    /// Whether a `reminder.scheduled` event was appended (the reminder was scheduled, or
    /// moved to another time).
    pub announced: bool,
}

/// One connection pool of a store, as it is now (for `todo_store_pool_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// `read` and `write` (SQLite), `postgres`.
    pub pool: &'static str,
    /// Connections open.
    pub size: i64,
    /// Connections open and not in use.
    pub idle: i64,
    /// Callers waiting for a connection (SQLite's `write`: writes queued for the writer).
    pub waiting: i64,
}

/// One task as the JSON clients get ([`crate::Store::get_task_json`]): the bytes
/// [`todo_domain::Task::write_json`] writes, and the version its `ETag` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskJson {
    /// The task's version.
    pub version: i64,
    /// The task's JSON object.
    pub json: Vec<u8>,
}

impl TaskJson {
    /// `task`, rendered.
    pub fn from_task(task: &todo_domain::Task) -> Self {
        let mut json = Vec::with_capacity(512);
        task.write_json(&mut json);
        TaskJson {
            version: task.version,
            json,
        }
    }
}

/// A page of tasks as JSON ([`crate::Store::list_tasks_json`]), built in the buffer the
/// response is sent from: it starts with the page object's opening, `{"items":[`, then the
/// tasks' JSON objects, comma-separated; [`TaskPageJson::finish`] closes it with the next
/// cursor, so a page's bytes are written once and never copied into another buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPageJson {
    json: Vec<u8>,
    /// How many tasks the page holds.
    pub count: usize,
    /// When more tasks follow the page: the JSON of its last task (the next cursor's).
    pub last: Option<String>,
    /// Tasks the page takes.
    limit: usize,
    /// Where the last task pushed starts in `json`.
    last_start: usize,
}

/// How every page begins.
const PAGE_OPENING: &[u8] = b"{\"items\":[";

impl TaskPageJson {
    /// Builds the page from `rows`, up to `limit + 1` tasks as [`crate::Store::list_tasks`]
    /// returns them: the first `limit` are rendered, and an extra one means more remain.
    pub fn from_tasks(rows: &[Task], limit: i64) -> Self {
        let mut page = TaskPageJson::for_limit(limit);
        for task in rows {
            if !page.offer(|out| task.write_json(out)) {
                break;
            }
        }
        page
    }

    /// An empty page of at most `limit` tasks.
    pub fn for_limit(limit: i64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut json = Vec::with_capacity(limit.min(1000) * 512 + 256);
        json.extend_from_slice(PAGE_OPENING);
        TaskPageJson {
            json,
            count: 0,
            last: None,
            limit,
            last_start: 0,
        }
    }

    /// Offers the next task in list order, written by `write`: taken while the page has
    /// room; one offered to a full page is not written, and only tells that more remain
    /// (the page's last task becomes [`TaskPageJson::last`]). Returns whether to go on.
    pub fn offer(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        if self.count == self.limit {
            if self.count > 0 {
                self.last =
                    Some(String::from_utf8_lossy(&self.json[self.last_start..]).into_owned());
            }
            return false;
        }
        if self.count > 0 {
            self.json.push(b',');
        }
        self.last_start = self.json.len();
        write(&mut self.json);
        self.count += 1;
        true
    }

    /// The tasks' JSON objects, comma-separated.
    pub fn items(&self) -> &[u8] {
        &self.json[PAGE_OPENING.len()..]
    }

    /// The whole page: `{"items":[...],"next_cursor":...}`.
    pub fn finish(mut self, next_cursor: Option<&str>) -> Vec<u8> {
        self.json.extend_from_slice(b"],\"next_cursor\":");
        match next_cursor {
            // Writing into a Vec cannot fail.
            Some(cursor) => drop(serde_json::to_writer(&mut self.json, cursor)),
            None => self.json.extend_from_slice(b"null"),
        }
        self.json.push(b'}');
        self.json
    }
}

#[cfg(test)]
mod tests {
    use super::TaskPageJson;

    #[test]
    fn a_page_closes_with_its_cursor_or_null() {
        let empty = TaskPageJson::for_limit(2);
        assert_eq!(empty.finish(None), br#"{"items":[],"next_cursor":null}"#);
        let mut page = TaskPageJson::for_limit(2);
        assert!(page.offer(|out| out.extend_from_slice(br#"{"id":1}"#)));
        assert!(page.offer(|out| out.extend_from_slice(br#"{"id":2}"#)));
        assert!(!page.offer(|_| unreachable!("a full page writes no more")));
        assert_eq!(page.items(), br#"{"id":1},{"id":2}"#);
        assert_eq!(page.last.as_deref(), Some(r#"{"id":2}"#));
        assert_eq!(
            page.finish(Some("a\"b")),
            br#"{"items":[{"id":1},{"id":2}],"next_cursor":"a\"b"}"#
        );
    }
}
