-- The default and due-date orders carry the status and priority filters in their index,
-- so a filtered page is found by reading index entries and fetches only the rows it
-- returns, instead of fetching every row the index passes to test its filters.
DROP INDEX tasks_by_user_created;
DROP INDEX tasks_by_user_due;
CREATE INDEX tasks_by_user_created ON tasks (user_id, created_at, id, completed, priority);
CREATE INDEX tasks_by_user_due ON tasks (user_id, due_at, id, completed, priority);
