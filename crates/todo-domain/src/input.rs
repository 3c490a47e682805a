//! Turning request bodies into checked values: every field error is gathered into one answer.
//!
//! The bodies arrive as the types of [`crate::request`], whose fields tell absent, `null`,
//! a value and a value of the wrong type apart; the rules here are the ones their OpenAPI
//! schemas state.

use chrono::Datelike;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ValidationErrors;
use crate::recurrence::Recurrence;
use crate::request::{
    CompleteRequest, Integer, NewTaskRequest, RecurrenceRequest, Sent, TaskUpdateRequest,
};
use crate::task::{Priority, Task};
use crate::text;
use crate::time::{Timestamp, parse_rfc3339};

/// Longest title, in characters, after trimming.
pub const MAX_TITLE: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 2000;
/// Most tags on a task.
pub const MAX_TAGS: usize = 10;
/// Longest tag, in characters.
pub const MAX_TAG: usize = 32;
/// Reminder offset used when `due_at` is set and no offset was given.
pub const DEFAULT_REMIND_BEFORE: i64 = 15;
/// Largest reminder offset: one year, which keeps date arithmetic far from overflow.
pub const MAX_REMIND_BEFORE: i64 = 525_600;

/// A checked request to create a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTask {
    /// Trimmed title.
    pub title: String,
    /// Description, as given.
    pub description: Option<String>,
    /// Priority, `medium` when absent.
    pub priority: Priority,
    /// Lower-cased, de-duplicated tags in first-seen order.
    pub tags: Vec<String>,
    /// Due date.
    pub due_at: Option<Timestamp>,
    /// Offset, defaulted to 15 when `due_at` is set and the field was absent.
    pub remind_before_minutes: Option<i64>,
    /// Recurrence rule.
    pub recurrence: Option<Recurrence>,
}

/// A checked `PUT` body: `None` = absent (kept), `Some(None)` = `null` (cleared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskPatch {
    /// New title (cannot be cleared).
    pub title: Option<String>,
    /// New or cleared description.
    pub description: Option<Option<String>>,
    /// New priority; `null` resets to `medium`.
    pub priority: Option<Priority>,
    /// New tags; `null` clears.
    pub tags: Option<Vec<String>>,
    /// New or cleared due date.
    pub due_at: Option<Option<Timestamp>>,
    /// New or cleared reminder offset.
    pub remind_before_minutes: Option<Option<i64>>,
    /// New or cleared recurrence.
    pub recurrence: Option<Option<Recurrence>>,
    /// New completion state.
    pub completed: Option<bool>,
}

fn parse_title(sent: &Sent<String>, errors: &mut ValidationErrors) -> Option<String> {
    match sent {
        Sent::Value(s) => match text::trimmed_line(s, 1, MAX_TITLE) {
            Ok(title) => Some(title.to_owned()),
            Err(message) => {
                errors.push("title", message);
                None
            }
        },
        _ => {
            errors.push("title", "must be a string");
            None
        }
    }
}

fn parse_description(sent: &Sent<String>, errors: &mut ValidationErrors) -> Option<String> {
    let Sent::Value(s) = sent else {
        errors.push("description", "must be a string or null");
        return None;
    };
    let len = s.chars().count();
    if len > MAX_DESCRIPTION {
        errors.push(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters (got {len})"),
        );
        None
    } else if !s.chars().all(text::allowed_in_multiline) {
        errors.push(
            "description",
            "must not contain control characters other than tab, line feed and carriage return",
        );
        None
    } else {
        Some(s.clone())
    }
}

fn parse_priority(sent: &Sent<Priority>, errors: &mut ValidationErrors) -> Option<Priority> {
    if let Sent::Value(p) = sent {
        return Some(*p);
    }
    errors.push("priority", "must be one of high, medium, low");
    None
}

/// Checks, lower-cases and de-duplicates tags, naming each bad one as `tags[i]`.
pub fn parse_tags(
    sent: &Sent<Vec<Sent<String>>>,
    errors: &mut ValidationErrors,
) -> Option<Vec<String>> {
    let Sent::Value(items) = sent else {
        errors.push("tags", "must be an array of strings");
        return None;
    };
    let before = errors.0.len();
    if items.len() > MAX_TAGS {
        errors.push(
            "tags",
            format!("must hold at most {MAX_TAGS} entries (got {})", items.len()),
        );
    }
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Sent::Value(s) = item else {
            errors.push(format!("tags[{i}]"), "must be a string");
            continue;
        };
        match normalize_tag(s) {
            Ok(tag) => {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            Err(message) => errors.push(format!("tags[{i}]"), message),
        }
    }
    (errors.0.len() == before).then_some(tags)
}

/// Trims and lower-cases one tag, refusing empty, over-long or control-character ones. The
/// length is counted before lower-casing, as the client wrote it.
pub fn normalize_tag(raw: &str) -> Result<String, String> {
    text::trimmed_line(raw, 1, MAX_TAG).map(str::to_lowercase)
}

fn parse_due(sent: &Sent<String>, errors: &mut ValidationErrors) -> Option<Timestamp> {
    if let Some(ts) = match sent {
        Sent::Value(s) => parse_rfc3339(s),
        _ => None,
    } {
        return Some(ts);
    }
    errors.push("due_at", DUE_MESSAGE);
    None
}

/// The message for a timestamp that can't be read or is out of range.
pub const DUE_MESSAGE: &str = "must be an RFC 3339 timestamp between 1970-01-01T00:00:00Z and \
     9999-12-31T23:59:59Z, e.g. 2026-12-01T09:00:00Z";

fn parse_remind(sent: &Sent<Integer>, errors: &mut ValidationErrors) -> Option<i64> {
    match sent {
        Sent::Value(Integer(m)) if (0..=MAX_REMIND_BEFORE).contains(m) => Some(*m),
        Sent::Value(_) => {
            errors.push(
                "remind_before_minutes",
                format!("must be between 0 and {MAX_REMIND_BEFORE}"),
            );
            None
        }
        _ => {
            errors.push(
                "remind_before_minutes",
                "must be a whole number of minutes or null",
            );
            None
        }
    }
}

fn parse_recurrence(
    sent: &Sent<RecurrenceRequest>,
    errors: &mut ValidationErrors,
) -> Option<Recurrence> {
    let Sent::Value(rule) = sent else {
        errors.push(
            "recurrence",
            "must be an object like {\"frequency\": \"weekly\", \"interval\": 1} or null",
        );
        return None;
    };
    let frequency = match rule.frequency {
        Sent::Value(f) => Some(f),
        _ => {
            errors.push(
                "recurrence.frequency",
                "must be one of daily, weekly, monthly, yearly",
            );
            None
        }
    };
    let interval = match rule.interval {
        Sent::Absent | Sent::Null => Some(1),
        Sent::Value(Integer(i)) => match Recurrence::new(crate::Frequency::Daily, i) {
            Ok(_) => Some(i),
            Err(message) => {
                errors.push("recurrence.interval", message);
                None
            }
        },
        Sent::Invalid => {
            errors.push("recurrence.interval", "must be a whole number");
            None
        }
    };
    Recurrence::new(frequency?, interval?).ok()
}

fn parse_completed(sent: &Sent<bool>, errors: &mut ValidationErrors) -> Option<bool> {
    match sent {
        Sent::Absent => None,
        Sent::Value(b) => Some(*b),
        _ => {
            errors.push("completed", "must be true or false");
            None
        }
    }
}

impl CreateTask {
    /// Reads a JSON value as a `POST` body and checks it (for callers that build bodies as
    /// JSON); a value that is not an object is one error naming the field `""`.
    pub fn from_json(body: &serde_json::Value) -> Result<Self, ValidationErrors> {
        let not_object = || ValidationErrors::single("", "the body must be a JSON object");
        if !body.is_object() {
            return Err(not_object());
        }
        let request = NewTaskRequest::deserialize(body).map_err(|_| not_object())?;
        Self::parse(&request)
    }

    /// Checks a `POST` body.
    pub fn parse(body: &NewTaskRequest) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let title = match &body.title {
            Sent::Absent | Sent::Null => {
                errors.push("title", "is required");
                None
            }
            given => parse_title(given, &mut errors),
        };
        let description = match &body.description {
            Sent::Absent | Sent::Null => None,
            given => parse_description(given, &mut errors),
        };
        let priority = match &body.priority {
            Sent::Absent | Sent::Null => Priority::default(),
            given => parse_priority(given, &mut errors).unwrap_or_default(),
        };
        let tags = match &body.tags {
            Sent::Absent | Sent::Null => Vec::new(),
            given => parse_tags(given, &mut errors).unwrap_or_default(),
        };
        let due_at = match &body.due_at {
            Sent::Absent | Sent::Null => None,
            given => parse_due(given, &mut errors),
        };
        let remind_before_minutes = match &body.remind_before_minutes {
            Sent::Absent => due_at.map(|_| DEFAULT_REMIND_BEFORE),
            Sent::Null => None,
            given => parse_remind(given, &mut errors),
        };
        let recurrence = match &body.recurrence {
            Sent::Absent | Sent::Null => None,
            given => parse_recurrence(given, &mut errors),
        };
        // An unparsable due date is already reported; don't report it twice.
        if recurrence.is_some() && due_at.is_none() && !body.due_at.is_given() {
            errors.push("due_at", "is required when recurrence is set");
        }
        let title = title.unwrap_or_default();
        errors.into_result(CreateTask {
            title,
            description,
            priority,
            tags,
            due_at,
            remind_before_minutes,
            recurrence,
        })
    }

    /// The new task this request creates, at version 1.
    pub fn into_task(self, id: Uuid, user_id: &str, now: Timestamp) -> Task {
        let recurrence_anchor_day = match (self.recurrence, self.due_at) {
            (Some(_), Some(due)) => Some(due.day()),
            _ => None,
        };
        Task {
            id,
            user_id: user_id.to_owned(),
            title: self.title,
            description: self.description,
            completed: false,
            completed_at: None,
            priority: self.priority,
            tags: self.tags,
            due_at: self.due_at,
            remind_before_minutes: self.remind_before_minutes,
            recurrence: self.recurrence,
            parent_task_id: None,
            version: 1,
            created_at: now,
            updated_at: now,
            recurrence_anchor_day,
        }
    }
}

impl TaskPatch {
    /// Checks a `PUT` body.
    pub fn parse(body: &TaskUpdateRequest) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let mut patch = TaskPatch::default();
        match &body.title {
            Sent::Absent => {}
            Sent::Null => errors.push("title", "cannot be null: a task needs a title"),
            given => patch.title = parse_title(given, &mut errors),
        }
        patch.description = match &body.description {
            Sent::Absent => None,
            Sent::Null => Some(None),
            given => parse_description(given, &mut errors).map(Some),
        };
        patch.priority = match &body.priority {
            Sent::Absent => None,
            Sent::Null => Some(Priority::default()),
            given => parse_priority(given, &mut errors),
        };
        patch.tags = match &body.tags {
            Sent::Absent => None,
            Sent::Null => Some(Vec::new()),
            given => parse_tags(given, &mut errors),
        };
        patch.due_at = match &body.due_at {
            Sent::Absent => None,
            Sent::Null => Some(None),
            given => parse_due(given, &mut errors).map(Some),
        };
        patch.remind_before_minutes = match &body.remind_before_minutes {
            Sent::Absent => None,
            Sent::Null => Some(None),
            given => parse_remind(given, &mut errors).map(Some),
        };
        patch.recurrence = match &body.recurrence {
            Sent::Absent => None,
            Sent::Null => Some(None),
            given => parse_recurrence(given, &mut errors).map(Some),
        };
        patch.completed = parse_completed(&body.completed, &mut errors);
        errors.into_result(patch)
    }

    /// The task after this patch, or `None` when nothing would change (no new version, no
    /// event). Fails when the result breaks a cross-field rule.
    pub fn apply(&self, current: &Task, now: Timestamp) -> Result<Option<Task>, ValidationErrors> {
        let mut next = current.clone();
        if let Some(title) = &self.title {
            next.title.clone_from(title);
        }
        if let Some(description) = &self.description {
            next.description.clone_from(description);
        }
        if let Some(priority) = self.priority {
            next.priority = priority;
        }
        if let Some(tags) = &self.tags {
            next.tags.clone_from(tags);
        }
        if let Some(due_at) = self.due_at {
            next.due_at = due_at;
        }
        match self.remind_before_minutes {
            Some(remind) => next.remind_before_minutes = remind,
            // A due date given to a task that had none gets the usual default offset.
            None if current.due_at.is_none()
                && next.due_at.is_some()
                && current.remind_before_minutes.is_none() =>
            {
                next.remind_before_minutes = Some(DEFAULT_REMIND_BEFORE);
            }
            None => {}
        }
        if let Some(recurrence) = self.recurrence {
            next.recurrence = recurrence;
        }
        if next.recurrence.is_some() && next.due_at.is_none() {
            return Err(ValidationErrors::single(
                "due_at",
                "is required when recurrence is set",
            ));
        }
        if next.due_at != current.due_at || next.recurrence != current.recurrence {
            next.recurrence_anchor_day = match (next.recurrence, next.due_at) {
                (Some(_), Some(due)) => Some(due.day()),
                _ => None,
            };
        }
        if let Some(completed) = self.completed {
            set_completed(&mut next, completed, now);
        }
        if next == *current {
            return Ok(None);
        }
        next.version = current.version + 1;
        next.updated_at = now;
        Ok(Some(next))
    }
}

/// Sets completion, stamping or clearing `completed_at`; no change if already so.
pub fn set_completed(task: &mut Task, completed: bool, now: Timestamp) {
    if task.completed != completed {
        task.completed = completed;
        task.completed_at = completed.then_some(now);
    }
}

/// The task after `PATCH .../complete`: `Some(b)` sets, `None` toggles. `None` is returned
/// when nothing changes.
pub fn complete(current: &Task, completed: Option<bool>, now: Timestamp) -> Option<Task> {
    let target = completed.unwrap_or(!current.completed);
    if target == current.completed {
        return None;
    }
    let mut next = current.clone();
    set_completed(&mut next, target, now);
    next.version = current.version + 1;
    next.updated_at = now;
    Some(next)
}

/// Reads the optional `{"completed": bool}` body of `PATCH .../complete`.
pub fn parse_complete_body(
    body: Option<&CompleteRequest>,
) -> Result<Option<bool>, ValidationErrors> {
    let Some(body) = body else { return Ok(None) };
    let mut errors = ValidationErrors::default();
    let completed = parse_completed(&body.completed, &mut errors);
    errors.into_result(completed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn fields(err: ValidationErrors) -> Vec<String> {
        err.0.into_iter().map(|e| e.field).collect()
    }

    fn create(body: &Value) -> Result<CreateTask, ValidationErrors> {
        CreateTask::from_json(body)
    }

    fn patch(body: &Value) -> Result<TaskPatch, ValidationErrors> {
        TaskPatch::parse(&serde_json::from_value(body.clone()).unwrap())
    }

    fn complete_body(body: &Value) -> Result<Option<bool>, ValidationErrors> {
        parse_complete_body(Some(&serde_json::from_value(body.clone()).unwrap()))
    }

    fn now() -> Timestamp {
        parse_rfc3339("2026-11-22T10:00:00Z").unwrap()
    }

    fn task(body: Value) -> Task {
        create(&body)
            .unwrap()
            .into_task(Uuid::now_v7(), "alice", now())
    }

    #[test]
    fn a_minimal_task_gets_the_documented_defaults() {
        let t = task(json!({"title": "  Pay rent  "}));
        assert_eq!(t.title, "Pay rent");
        assert_eq!(t.priority, Priority::Medium);
        assert!(t.tags.is_empty());
        assert_eq!(t.remind_before_minutes, None);
        assert_eq!(t.version, 1);
        assert!(!t.completed);
    }

    #[test]
    fn a_due_date_brings_a_fifteen_minute_reminder_unless_null_is_sent() {
        let t = task(json!({"title": "x", "due_at": "2026-12-01T09:00:00+01:00"}));
        assert_eq!(t.remind_before_minutes, Some(15));
        assert_eq!(t.due_at, parse_rfc3339("2026-12-01T08:00:00Z"));
        let t = task(
            json!({"title": "x", "due_at": "2026-12-01T09:00:00Z", "remind_before_minutes": null}),
        );
        assert_eq!(t.remind_before_minutes, None);
    }

    #[test]
    fn tags_are_lower_cased_and_deduplicated() {
        let t = task(json!({"title": "x", "tags": ["Home", "home", " MONEY "]}));
        assert_eq!(t.tags, vec!["home", "money"]);
    }

    #[test]
    fn every_bad_field_is_reported_at_once_with_dotted_and_indexed_names() {
        let err = create(&json!({
            "title": "",
            "description": 5,
            "priority": "urgent",
            "tags": ["ok", "", "x".repeat(33)],
            "due_at": "tomorrow",
            "remind_before_minutes": -1,
            "recurrence": {"frequency": "hourly", "interval": 0}
        }))
        .unwrap_err();
        assert_eq!(
            fields(err),
            vec![
                "title",
                "description",
                "priority",
                "tags[1]",
                "tags[2]",
                "due_at",
                "remind_before_minutes",
                "recurrence.frequency",
                "recurrence.interval"
            ]
        );
    }

    #[test]
    fn interval_out_of_range_names_the_nested_field() {
        let err = create(&json!({
            "title": "x", "due_at": "2026-12-01T09:00:00Z",
            "recurrence": {"frequency": "daily", "interval": 366}
        }))
        .unwrap_err();
        assert_eq!(fields(err), vec!["recurrence.interval"]);
    }

    #[test]
    fn recurrence_needs_a_due_date() {
        let err =
            create(&json!({"title": "x", "recurrence": {"frequency": "daily", "interval": 1}}))
                .unwrap_err();
        assert_eq!(fields(err), vec!["due_at"]);
    }

    #[test]
    fn too_many_tags_and_too_long_title_are_refused() {
        let tags: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        let err = create(&json!({"title": "é".repeat(201), "tags": tags})).unwrap_err();
        assert_eq!(fields(err), vec!["title", "tags"]);
        assert!(create(&json!({"title": "é".repeat(200)})).is_ok());
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        assert_eq!(fields(create(&json!([1, 2])).unwrap_err()), vec![""]);
        assert_eq!(fields(create(&json!(["x"])).unwrap_err()), vec![""]);
        assert!(serde_json::from_value::<TaskUpdateRequest>(json!("x")).is_err());
    }

    #[test]
    fn control_characters_are_refused_in_every_stored_string_but_description_whitespace() {
        let err = create(&json!({
            "title": "a\u{0}b", "tags": ["ok", "t\u{7}"], "description": "x\u{1b}"
        }))
        .unwrap_err();
        assert_eq!(fields(err), vec!["title", "description", "tags[1]"]);
        let t = task(json!({"title": "\tTitle\n", "description": "line\r\n\tnext"}));
        assert_eq!(t.title, "Title");
        assert_eq!(t.description.as_deref(), Some("line\r\n\tnext"));
    }

    #[test]
    fn due_dates_outside_1970_to_9999_are_refused() {
        for due in [
            "1969-12-31T23:59:59Z",
            "+10000-01-01T00:00:00Z",
            "2026-12-01 09:00:00Z",
        ] {
            let err = create(&json!({"title": "x", "due_at": due})).unwrap_err();
            assert_eq!(fields(err), vec!["due_at"], "{due}");
        }
        assert!(create(&json!({"title": "x", "due_at": "9999-12-31T23:59:59Z"})).is_ok());
    }

    #[test]
    fn more_than_ten_tag_entries_are_refused_even_when_they_repeat() {
        let err = create(&json!({"title": "x", "tags": vec!["a"; 11]})).unwrap_err();
        assert_eq!(fields(err), vec!["tags"]);
    }

    #[test]
    fn put_keeps_absent_fields_and_clears_null_ones() {
        let t = task(json!({"title": "x", "description": "d", "tags": ["a"], "priority": "high"}));
        let patch = patch(&json!({"description": null, "title": "y"})).unwrap();
        let next = patch.apply(&t, now()).unwrap().unwrap();
        assert_eq!(next.title, "y");
        assert_eq!(next.description, None);
        assert_eq!(next.tags, vec!["a"]);
        assert_eq!(next.priority, Priority::High);
        assert_eq!(next.version, 2);
    }

    #[test]
    fn put_that_changes_nothing_yields_no_new_version() {
        let t = task(json!({"title": "x"}));
        let patch = patch(&json!({"title": "x", "id": "ignored", "version": 9})).unwrap();
        assert_eq!(patch.apply(&t, now()).unwrap(), None);
    }

    #[test]
    fn put_cannot_null_the_title_or_drop_the_due_date_of_a_recurring_task() {
        assert_eq!(
            fields(patch(&json!({"title": null})).unwrap_err()),
            vec!["title"]
        );
        let t = task(
            json!({"title": "x", "due_at": "2026-12-01T09:00:00Z", "recurrence": {"frequency": "daily", "interval": 1}}),
        );
        let patch = patch(&json!({"due_at": null})).unwrap();
        assert_eq!(fields(patch.apply(&t, now()).unwrap_err()), vec!["due_at"]);
    }

    #[test]
    fn complete_toggles_and_sets() {
        let t = task(json!({"title": "x"}));
        let done = complete(&t, None, now()).unwrap();
        assert!(done.completed);
        assert_eq!(done.completed_at, Some(now()));
        assert_eq!(complete(&done, Some(true), now()), None);
        let undone = complete(&done, None, now()).unwrap();
        assert!(!undone.completed);
        assert_eq!(undone.completed_at, None);
        assert_eq!(undone.version, 3);
    }

    #[test]
    fn complete_body_must_hold_a_boolean() {
        assert_eq!(parse_complete_body(None).unwrap(), None);
        assert_eq!(complete_body(&json!({})).unwrap(), None);
        assert_eq!(
            complete_body(&json!({"completed": true})).unwrap(),
            Some(true)
        );
        assert!(complete_body(&json!({"completed": "yes"})).is_err());
        assert!(complete_body(&json!({"completed": null})).is_err());
    }

    proptest! {
        #[test]
        fn any_json_body_is_either_accepted_or_refused_with_field_errors(body in arb_json()) {
            let Ok(request) = serde_json::from_value::<NewTaskRequest>(body.clone()) else {
                return Ok(());
            };
            match CreateTask::parse(&request) {
                Ok(c) => {
                    prop_assert!(!c.title.is_empty() && c.title.chars().count() <= MAX_TITLE);
                    prop_assert!(c.tags.len() <= MAX_TAGS);
                }
                Err(e) => prop_assert!(!e.is_empty()),
            }
            if let Ok(request) = serde_json::from_value::<TaskUpdateRequest>(body) {
                let _ = TaskPatch::parse(&request);
            }
        }

        #[test]
        fn accepted_tags_are_lower_case_unique_and_bounded(tags in proptest::collection::vec("[ a-zA-Z]{0,40}", 0..10)) {
            let mut errors = ValidationErrors::default();
            let sent = Sent::Value(tags.iter().cloned().map(Sent::Value).collect());
            if let Some(parsed) = parse_tags(&sent, &mut errors) {
                prop_assert!(parsed.len() <= MAX_TAGS);
                for t in &parsed {
                    prop_assert_eq!(t, &t.to_lowercase());
                    prop_assert!((1..=MAX_TAG).contains(&t.chars().count()));
                }
                let mut unique = parsed.clone();
                unique.sort();
                unique.dedup();
                prop_assert_eq!(unique.len(), parsed.len());
            } else {
                prop_assert!(!errors.is_empty());
            }
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z ]{0,8}".prop_map(Value::String),
            Just(json!("2026-12-01T09:00:00Z")),
            Just(json!("daily")),
        ];
        let value = leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("frequency".to_string()),
                        Just("interval".to_string()),
                        "[a-z]{1,3}"
                    ],
                    inner,
                    0..3
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        let keys = prop_oneof![
            Just("title"),
            Just("description"),
            Just("priority"),
            Just("tags"),
            Just("due_at"),
            Just("remind_before_minutes"),
            Just("recurrence"),
            Just("completed")
        ];
        proptest::collection::btree_map(keys.prop_map(String::from), value, 0..8)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }
}
