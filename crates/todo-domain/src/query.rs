//! The task list query: filters, sort, order, page size and cursor, checked field by field.

use crate::cursor::{Cursor, CursorError, CursorKey};
use crate::error::ValidationErrors;
use crate::input::{MAX_TAGS, normalize_tag};
use crate::task::{Priority, Task};
use crate::text;
use crate::time::{Timestamp, parse_rfc3339, to_micros};

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 200;
/// Longest search text, in characters after trimming.
pub const MAX_QUERY: usize = 200;

/// Which tasks by completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusFilter {
    /// Every task.
    #[default]
    All,
    /// Not completed.
    Pending,
    /// Completed.
    Completed,
}

/// What a list is ordered by. Ties always break on `id`, so pages are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Creation time (the default).
    #[default]
    CreatedAt,
    /// Due date; tasks without one always come last.
    DueAt,
    /// Priority by rank: low < medium < high.
    Priority,
    /// Title, case-insensitively.
    Title,
}

impl SortKey {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::CreatedAt => "created_at",
            SortKey::DueAt => "due_at",
            SortKey::Priority => "priority",
            SortKey::Title => "title",
        }
    }

    /// The order used when `order=` is absent: newest first for `created_at`, most urgent
    /// first for `priority`, soonest/alphabetical first for `due_at` and `title`.
    pub fn default_order(self) -> Order {
        match self {
            SortKey::CreatedAt | SortKey::Priority => Order::Desc,
            SortKey::DueAt | SortKey::Title => Order::Asc,
        }
    }

    /// Refuses a cursor whose key or id could not have come from a page of this sort: a
    /// store binds them as they are, and a database that types its columns would fail on
    /// a forged one instead of answering 422.
    pub fn check_cursor(self, cursor: Cursor) -> Result<Cursor, CursorError> {
        let fits = match (self, &cursor.key) {
            (SortKey::Title, CursorKey::Text(title)) => {
                title.chars().count() <= crate::input::MAX_TITLE
            }
            (SortKey::Priority, CursorKey::Int(rank)) => Priority::from_rank(*rank).is_some(),
            (SortKey::CreatedAt | SortKey::DueAt, CursorKey::Int(_)) => true,
            _ => false,
        };
        cursor.uuid_id()?;
        if fits {
            Ok(cursor)
        } else {
            Err(CursorError::Malformed)
        }
    }

    /// The sort key value of `task` as a cursor stores it.
    pub fn key_of(self, task: &Task) -> CursorKey {
        match self {
            SortKey::CreatedAt => CursorKey::Int(to_micros(task.created_at)),
            SortKey::DueAt => CursorKey::Int(due_sort_value(task.due_at, false)),
            SortKey::Priority => CursorKey::Int(task.priority.rank()),
            SortKey::Title => CursorKey::Text(task.title_key()),
        }
    }
}

/// Sort value for `due_at`, with "no due date" mapped past the end so it sorts last
/// in either direction (`descending` flips where "last" is).
pub fn due_sort_value(due: Option<Timestamp>, descending: bool) -> i64 {
    match due {
        Some(due) => to_micros(due),
        None if descending => i64::MIN,
        None => i64::MAX,
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// A checked list query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskQuery {
    /// Completion filter.
    pub status: StatusFilter,
    /// Priority filter.
    pub priority: Option<Priority>,
    /// Tags that must all be present.
    pub tags: Vec<String>,
    /// Lower-cased search text for title and description.
    pub q: Option<String>,
    /// Only tasks due strictly before this.
    pub due_before: Option<Timestamp>,
    /// Only tasks due strictly after this.
    pub due_after: Option<Timestamp>,
    /// Sort key.
    pub sort: SortKey,
    /// `true` for descending.
    pub descending: bool,
    /// Page size, 1–200.
    pub limit: i64,
    /// Where the previous page ended.
    pub after: Option<Cursor>,
}

/// Parses a `limit` parameter (shared by every list): 1..=200, naming the field.
pub fn parse_limit(raw: Option<&str>, errors: &mut ValidationErrors) -> i64 {
    match raw {
        None => DEFAULT_LIMIT,
        // Digits only (an optional minus), as the document's `integer` says: no spaces, no `+`.
        Some(raw) => match raw
            .strip_prefix('-')
            .unwrap_or(raw)
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| raw.parse::<i64>())
        {
            Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push(
                    "limit",
                    format!("must be a whole number between 1 and {MAX_LIMIT}"),
                );
                DEFAULT_LIMIT
            }
        },
    }
}

impl TaskQuery {
    /// Parses query pairs (repeated `tag=` accumulate; for other names the last wins;
    /// unknown names are ignored).
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let last = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let status = match last("status") {
            None | Some("all") => StatusFilter::All,
            Some("pending") => StatusFilter::Pending,
            Some("completed") => StatusFilter::Completed,
            Some(_) => {
                errors.push("status", "must be one of all, pending, completed");
                StatusFilter::All
            }
        };
        let priority = last("priority").and_then(|raw| {
            let parsed = Priority::parse(raw);
            if parsed.is_none() {
                errors.push("priority", "must be one of high, medium, low");
            }
            parsed
        });
        let mut tags = Vec::new();
        let mut count = 0;
        for (i, (_, raw)) in pairs.iter().filter(|(k, _)| k == "tag").enumerate() {
            count += 1;
            match normalize_tag(raw) {
                Ok(tag) if !tags.contains(&tag) => tags.push(tag),
                Ok(_) => {}
                Err(message) => errors.push(format!("tag[{i}]"), message),
            }
        }
        // No task holds more tags than this, and each one is a clause of the SQL: refuse
        // more rather than build a query the database rejects.
        if count > MAX_TAGS {
            errors.push("tag", format!("at most {MAX_TAGS} tags can be required"));
        }
        let q = last("q").and_then(|raw| match text::trimmed_line(raw, 0, MAX_QUERY) {
            Ok("") => None,
            Ok(q) => Some(q.to_lowercase()),
            Err(message) => {
                errors.push("q", message);
                None
            }
        });
        let mut time = |name: &str| {
            last(name).and_then(|raw| {
                let parsed = parse_rfc3339(raw);
                if parsed.is_none() {
                    errors.push(name, crate::input::DUE_MESSAGE);
                }
                parsed
            })
        };
        let due_before = time("due_before");
        let due_after = time("due_after");
        let sort = match last("sort") {
            None | Some("created_at") => SortKey::CreatedAt,
            Some("due_at") => SortKey::DueAt,
            Some("priority") => SortKey::Priority,
            Some("title") => SortKey::Title,
            Some(_) => {
                errors.push("sort", "must be one of created_at, due_at, priority, title");
                SortKey::CreatedAt
            }
        };
        let descending = match last("order") {
            None => sort.default_order() == Order::Desc,
            Some("asc") => false,
            Some("desc") => true,
            Some(_) => {
                errors.push("order", "must be asc or desc");
                false
            }
        };
        let limit = parse_limit(last("limit"), &mut errors);
        let after = last("cursor")
            .filter(|raw| !raw.is_empty())
            .and_then(|raw| {
                match Cursor::decode(raw, sort.as_str(), descending)
                    .and_then(|cursor| sort.check_cursor(cursor))
                {
                    Ok(cursor) => Some(cursor),
                    Err(e) => {
                        errors.push("cursor", e.to_string());
                        None
                    }
                }
            });
        errors.into_result(TaskQuery {
            status,
            priority,
            tags,
            q,
            due_before,
            due_after,
            sort,
            descending,
            limit,
            after,
        })
    }

    /// The cursor pointing after `last`, for this query's sort.
    pub fn cursor_after(&self, last: &Task) -> Cursor {
        let key = match self.sort {
            SortKey::DueAt => CursorKey::Int(due_sort_value(last.due_at, self.descending)),
            other => other.key_of(last),
        };
        Cursor {
            sort: self.sort.as_str().to_owned(),
            descending: self.descending,
            key,
            id: last.id.to_string(),
        }
    }

    /// Whether `task` passes the filters (not the cursor). Stores filter in SQL; this is
    /// the reference the store tests compare against.
    pub fn matches(&self, task: &Task) -> bool {
        let status = match self.status {
            StatusFilter::All => true,
            StatusFilter::Pending => !task.completed,
            StatusFilter::Completed => task.completed,
        };
        status
            && self.priority.is_none_or(|p| task.priority == p)
            && self.tags.iter().all(|t| task.tags.contains(t))
            && self
                .q
                .as_ref()
                .is_none_or(|q| task.search_text().contains(q.as_str()))
            && self
                .due_before
                .is_none_or(|b| task.due_at.is_some_and(|d| d < b))
            && self
                .due_after
                .is_none_or(|a| task.due_at.is_some_and(|d| d > a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_all_tasks_newest_first_fifty_per_page() {
        let q = TaskQuery::parse(&[]).unwrap();
        assert_eq!(q.status, StatusFilter::All);
        assert_eq!(q.sort, SortKey::CreatedAt);
        assert!(q.descending);
        assert_eq!(q.limit, 50);
    }

    #[test]
    fn limit_outside_1_to_200_names_the_limit_field() {
        for bad in ["0", "201", "-1", "ten", ""] {
            let err = TaskQuery::parse(&pairs(&[("limit", bad)])).unwrap_err();
            assert_eq!(err.0[0].field, "limit", "for {bad:?}");
        }
        assert_eq!(
            TaskQuery::parse(&pairs(&[("limit", "200")])).unwrap().limit,
            200
        );
    }

    #[test]
    fn repeated_tags_accumulate_and_bad_values_are_named() {
        let q = TaskQuery::parse(&pairs(&[("tag", "Home"), ("tag", "money")])).unwrap();
        assert_eq!(q.tags, vec!["home", "money"]);
        let err = TaskQuery::parse(&pairs(&[
            ("status", "done"),
            ("priority", "urgent"),
            ("sort", "size"),
            ("order", "up"),
            ("due_before", "soon"),
        ]))
        .unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["status", "priority", "due_before", "sort", "order"]
        );
    }

    #[test]
    fn a_cursor_from_another_sort_is_a_field_error() {
        let c = Cursor {
            sort: "title".into(),
            descending: false,
            key: CursorKey::Text("a".into()),
            id: "x".into(),
        };
        let err = TaskQuery::parse(&pairs(&[("cursor", &c.encode())])).unwrap_err();
        assert_eq!(err.0[0].field, "cursor");
    }
}
