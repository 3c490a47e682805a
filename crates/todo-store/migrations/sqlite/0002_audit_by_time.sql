-- The audit log is listed newest first by the time each event occurred (ties by sequence).
CREATE INDEX audit_by_user_time ON audit_log (user_id, occurred_at, seq);
CREATE INDEX audit_by_user_task_time ON audit_log (user_id, task_id, occurred_at, seq);
DROP INDEX audit_by_user;
DROP INDEX audit_by_user_task;
