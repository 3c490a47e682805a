-- Times are integers: microseconds since the Unix epoch, UTC.

CREATE TABLE tasks (
    id                    TEXT PRIMARY KEY NOT NULL,
    user_id               TEXT NOT NULL,
    title                 TEXT NOT NULL,
    title_key             TEXT NOT NULL,          -- lower-cased title, for sort=title
    description           TEXT,
    search_text           TEXT NOT NULL,          -- lower-cased title + description, for q=
    completed             INTEGER NOT NULL,
    completed_at          INTEGER,
    priority              INTEGER NOT NULL,       -- rank: low 0, medium 1, high 2
    tags                  TEXT NOT NULL,          -- JSON array of lower-case strings
    due_at                INTEGER,
    remind_before_minutes INTEGER,
    recurrence_frequency  TEXT,
    recurrence_interval   INTEGER,
    recurrence_anchor_day INTEGER,
    parent_task_id        TEXT,
    version               INTEGER NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
) STRICT;
CREATE INDEX tasks_by_user_created ON tasks (user_id, created_at, id);
CREATE INDEX tasks_by_user_due ON tasks (user_id, due_at, id);
CREATE INDEX tasks_by_user_priority ON tasks (user_id, priority, id);
CREATE INDEX tasks_by_user_title ON tasks (user_id, title_key, id);

-- One row per recurring task whose next occurrence exists: completing it again, or
-- re-reading its event, never makes a second one.
CREATE TABLE recurrence_spawns (
    parent_task_id TEXT PRIMARY KEY NOT NULL,
    child_task_id  TEXT NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;

-- The outbox: written in the same transaction as the change it describes. In the embedded
-- deployment it is also the bus's durable log.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    topic      TEXT NOT NULL,
    key        TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX events_by_topic ON events (topic, seq);

-- Each consumer's durable position in the events log.
CREATE TABLE consumer_positions (
    consumer   TEXT PRIMARY KEY NOT NULL,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    task_id     TEXT,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    source      TEXT NOT NULL,
    data        TEXT NOT NULL
) STRICT;
CREATE INDEX audit_by_user ON audit_log (user_id, seq);
CREATE INDEX audit_by_user_task ON audit_log (user_id, task_id, seq);

-- At most one reminder per task.
CREATE TABLE reminders (
    task_id      TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    title        TEXT NOT NULL,
    remind_at    INTEGER NOT NULL,
    due_at       INTEGER NOT NULL,
    status       TEXT NOT NULL,
    task_version INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX reminders_by_status_time ON reminders (status, remind_at);
CREATE INDEX reminders_by_user ON reminders (user_id, remind_at, task_id);

-- Delivered reminders; (task_id, remind_at) is unique so one moment is delivered once.
CREATE TABLE notifications (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    title        TEXT NOT NULL,
    due_at       INTEGER NOT NULL,
    remind_at    INTEGER NOT NULL,
    delivered_at INTEGER NOT NULL,
    UNIQUE (task_id, remind_at)
) STRICT;
CREATE INDEX notifications_by_user ON notifications (user_id, seq);

-- Webhook deliveries waiting, retrying, done or given up.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL UNIQUE,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,               -- pending | delivered | failed
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX webhooks_pending ON webhook_deliveries (status, next_attempt_at);
