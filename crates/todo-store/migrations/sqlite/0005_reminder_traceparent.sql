-- The W3C traceparent of the span that last planned a reminder: the reminder.due event of
-- its delivery continues that trace. NULL for reminders planned before this column.
ALTER TABLE reminders ADD COLUMN traceparent TEXT;
