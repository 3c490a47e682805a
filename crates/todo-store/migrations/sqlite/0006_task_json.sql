-- Each task's JSON as the API serves it, written with the task, so a page of a list is
-- copied rather than decoded and rendered. NULL for tasks written before this column (and
-- after any later migration that sets it NULL because the JSON's shape changed): a page
-- holding one is rendered from the columns, and the task gets its JSON at its next write.
ALTER TABLE tasks ADD COLUMN doc TEXT;
