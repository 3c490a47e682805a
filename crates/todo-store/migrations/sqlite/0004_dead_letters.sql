-- Events a consumer could not handle (their data cannot be read, they name no user, ...),
-- kept instead of skipped, so the consumer can move on without losing them. One row per
-- consumer and event: a redelivery bumps `attempts` and the last failure, nothing more.
CREATE TABLE dead_letters (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer        TEXT NOT NULL,              -- consumer group: recurring, notification, sync, audit
    event_id        TEXT NOT NULL,              -- the CloudEvent id
    event_type      TEXT NOT NULL,              -- the CloudEvent type, as written
    position        INTEGER NOT NULL,           -- events.seq when last delivered
    payload         TEXT NOT NULL,              -- the CloudEvent JSON, as delivered
    reason          TEXT NOT NULL,              -- bounded label, as in the metric
    error           TEXT NOT NULL,              -- the last failure's text
    attempts        INTEGER NOT NULL,           -- deliveries that failed this way
    first_failed_at INTEGER NOT NULL,
    last_failed_at  INTEGER NOT NULL,
    UNIQUE (consumer, event_id)
) STRICT;
