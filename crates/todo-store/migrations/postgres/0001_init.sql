-- The PostgreSQL schema: the same tables as SQLite's, with PostgreSQL's own types.
-- Times are timestamptz (microseconds, UTC); ids are uuid; tags are text[].
-- Applied in the schema first on the connection's search_path, with pg_trgm's schema
-- added to the search path for this transaction (see migrate.rs).

CREATE TABLE tasks (
    id                    uuid PRIMARY KEY,
    user_id               text NOT NULL,
    title                 text NOT NULL,
    -- The lower-cased title, for sort=title: compared in code-point order ("C"), as the
    -- contract and the SQLite store order it, whatever the database's collation.
    title_key             text COLLATE "C" NOT NULL,
    description           text,
    -- The lower-cased title and description (Task::search_text), for q=. Computed by the
    -- application, so matching never depends on the database's locale.
    search_text           text NOT NULL,
    completed             boolean NOT NULL,
    completed_at          timestamptz,
    priority              smallint NOT NULL CHECK (priority BETWEEN 0 AND 2), -- low 0, medium 1, high 2
    tags                  text[] NOT NULL,  -- lower-case, unique
    due_at                timestamptz,
    remind_before_minutes bigint,
    recurrence_frequency  text,
    recurrence_interval   integer,
    recurrence_anchor_day smallint,
    parent_task_id        uuid,
    version               bigint NOT NULL,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);
-- One index per sort, each ending in the id that breaks ties, walked forwards for asc and
-- backwards for desc. sort=due_at orders by due_at with "no due date" mapped past the end in
-- the direction of travel (+infinity ascending, -infinity descending), so undated tasks come
-- last either way and the keyset comparison is a plain row comparison on the index.
CREATE INDEX tasks_by_user_created ON tasks (user_id, created_at, id);
CREATE INDEX tasks_by_user_due_asc ON tasks (user_id, (COALESCE(due_at, 'infinity'::timestamptz)), id);
CREATE INDEX tasks_by_user_due_desc ON tasks (user_id, (COALESCE(due_at, '-infinity'::timestamptz)), id);
CREATE INDEX tasks_by_user_priority ON tasks (user_id, priority, id);
CREATE INDEX tasks_by_user_title ON tasks (user_id, title_key, id);
-- tag= (all must match): tags @> ARRAY[...].
CREATE INDEX tasks_by_tags ON tasks USING gin (tags);
-- q= (substring): search_text LIKE '%...%' through trigrams.
CREATE INDEX tasks_by_search_text ON tasks USING gin (search_text gin_trgm_ops);

-- One row per recurring task whose next occurrence exists.
CREATE TABLE recurrence_spawns (
    parent_task_id uuid PRIMARY KEY,
    child_task_id  uuid NOT NULL,
    created_at     timestamptz NOT NULL
);

-- The outbox. `pos` is the reading position: the writing transaction's id (xid8) times
-- 2^20 plus the event's ordinal within that transaction. Readers take only rows whose
-- transaction is older than every transaction still running (pg_snapshot_xmin), so the
-- positions they see never get a smaller one committed behind them (see events.rs).
CREATE TABLE events (
    pos        bigint PRIMARY KEY,
    id         uuid NOT NULL UNIQUE,
    topic      text NOT NULL,
    key        text NOT NULL,
    payload    text NOT NULL,  -- the CloudEvent JSON, byte for byte as serialized
    created_at timestamptz NOT NULL
);
CREATE INDEX events_by_topic ON events (topic, pos);

CREATE TABLE consumer_positions (
    consumer   text PRIMARY KEY,
    position   bigint NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE audit_log (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    user_id     text NOT NULL,
    event_type  text NOT NULL,
    task_id     uuid,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    source      text NOT NULL,
    data        jsonb NOT NULL
);
-- Listed newest first by the time each event occurred (ties by sequence).
CREATE INDEX audit_by_user_time ON audit_log (user_id, occurred_at, seq);
CREATE INDEX audit_by_user_task_time ON audit_log (user_id, task_id, occurred_at, seq);

-- At most one reminder per task.
CREATE TABLE reminders (
    task_id      uuid PRIMARY KEY,
    user_id      text NOT NULL,
    title        text NOT NULL,
    remind_at    timestamptz NOT NULL,
    due_at       timestamptz NOT NULL,
    status       text NOT NULL CHECK (status IN ('scheduled', 'sent', 'cancelled')),
    task_version bigint NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX reminders_scheduled ON reminders (remind_at) WHERE status = 'scheduled';
CREATE INDEX reminders_by_user ON reminders (user_id, remind_at, task_id);

-- Delivered reminders; (task_id, remind_at) is unique so one moment is delivered once.
CREATE TABLE notifications (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id      uuid NOT NULL,
    user_id      text NOT NULL,
    title        text NOT NULL,
    due_at       timestamptz NOT NULL,
    remind_at    timestamptz NOT NULL,
    delivered_at timestamptz NOT NULL,
    UNIQUE (task_id, remind_at)
);
CREATE INDEX notifications_by_user ON notifications (user_id, seq);

-- Webhook deliveries waiting, retrying, done or given up.
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid NOT NULL UNIQUE,
    payload         text NOT NULL,  -- the JSON body to POST, as serialized
    status          text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        bigint NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX webhooks_pending ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

-- Events a consumer could not handle, one row per consumer and event.
CREATE TABLE dead_letters (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer        text NOT NULL,
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    position        bigint NOT NULL,
    payload         text NOT NULL,  -- the CloudEvent JSON, as delivered
    reason          text NOT NULL,
    error           text NOT NULL,
    attempts        bigint NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    UNIQUE (consumer, event_id)
);
CREATE INDEX dead_letters_by_first_failure ON dead_letters (first_failed_at, id);
