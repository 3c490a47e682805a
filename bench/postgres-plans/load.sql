\set ON_ERROR_STOP on
DROP SCHEMA IF EXISTS todo_explain CASCADE;
CREATE SCHEMA todo_explain;
SET search_path = todo_explain, public;
\i crates/todo-store/migrations/postgres/0001_init.sql
\i crates/todo-store/migrations/postgres/0002_reminder_traceparent.sql
\i crates/todo-store/migrations/postgres/0003_task_json.sql
\timing on
-- 1,000,000 tasks for 20 users (50,000 each), generated like the API would store them, each
-- with its JSON document (the fields the API serves, about 400 bytes).
INSERT INTO tasks (doc, id, user_id, title, title_key, description, search_text, completed, completed_at,
    priority, tags, due_at, remind_before_minutes, recurrence_frequency, recurrence_interval,
    recurrence_anchor_day, parent_task_id, version, created_at, updated_at)
SELECT json_build_object('id', i.id, 'user_id', i.user_id, 'title', t.title, 'description', d.description,
           'completed', g % 3 = 0, 'completed_at', CASE WHEN g % 3 = 0 THEN c.created END,
           'priority', (ARRAY['low','medium','high'])[1 + (g % 7) % 3], 'tags', '[]'::json,
           'due_at', CASE WHEN g % 4 <> 0 THEN c.created + ((g % 1000) || ' hours')::interval END,
           'remind_before_minutes', CASE WHEN g % 4 <> 0 THEN 15 END, 'recurrence', NULL,
           'parent_task_id', NULL, 'version', 1, 'created_at', c.created, 'updated_at', c.created)::text,
       i.id, i.user_id, t.title, lower(t.title), d.description,
       lower(t.title) || coalesce(E'\n' || lower(d.description), ''),
       g % 3 = 0, CASE WHEN g % 3 = 0 THEN c.created END,
       (g % 7) % 3, CASE g % 5 WHEN 0 THEN ARRAY['home'] WHEN 1 THEN ARRAY['work'] WHEN 2 THEN ARRAY['home','money'] WHEN 3 THEN ARRAY[]::text[] ELSE ARRAY['work','x'] END,
       CASE WHEN g % 4 <> 0 THEN c.created + ((g % 1000) || ' hours')::interval END,
       CASE WHEN g % 4 <> 0 THEN 15 END, NULL, NULL, NULL, NULL, 1, c.created, c.created
FROM generate_series(1, 1000000) g,
LATERAL (SELECT gen_random_uuid() AS id, 'user' || (abs(hashint4(g)) % 20) AS user_id) i,
LATERAL (SELECT (ARRAY['Pay rent','Buy milk','Call the bank','Write report','Water plants','Fix bike',
                       'Book dentist','Renew passport','Plan trip','Read book','Clean garage','Send invoice'])[1 + abs(hashint4(g + 7)) % 12]
                 || ' #' || g AS title) t,
LATERAL (SELECT CASE WHEN g % 2 = 0 THEN 'notes for item ' || md5(g::text) END AS description) d,
LATERAL (SELECT timestamptz '2026-01-01' + (g || ' seconds')::interval * 30 AS created) c;
ANALYZE tasks;
SELECT pg_size_pretty(pg_total_relation_size('tasks'));
