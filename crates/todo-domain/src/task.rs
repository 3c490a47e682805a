//! The task as clients, stores and events see it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::recurrence::Recurrence;
use crate::time::{Timestamp, rfc3339};

/// How urgent a task is. Ordered `Low < Medium < High`, so sorting never goes alphabetical.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Can wait.
    Low,
    /// The default.
    #[default]
    Medium,
    /// Do first.
    High,
}

impl Priority {
    /// Every value, lowest first.
    pub const ALL: [Priority; 3] = [Priority::Low, Priority::Medium, Priority::High];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    /// Parses the wire name (exact, lower-case).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Numeric rank used by stores to sort: low 0, medium 1, high 2.
    pub fn rank(self) -> i64 {
        self as i64
    }

    /// The inverse of [`Priority::rank`].
    pub fn from_rank(rank: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.rank() == rank)
    }
}

/// A task, exactly as the contract's JSON shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// UUIDv7: time-ordered, so ids also order by creation.
    pub id: Uuid,
    /// Owner (the JWT `sub`).
    pub user_id: String,
    /// 1–200 characters, trimmed.
    pub title: String,
    /// Up to 2000 characters.
    pub description: Option<String>,
    /// Whether the task is done.
    pub completed: bool,
    /// When it was last completed; `null` while pending.
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<Timestamp>,
    /// Urgency.
    pub priority: Priority,
    /// Lower-case, unique, at most 10.
    pub tags: Vec<String>,
    /// When the task is due.
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_at: Option<Timestamp>,
    /// Minutes before `due_at` to remind; `null` disables reminders.
    pub remind_before_minutes: Option<i64>,
    /// How the task repeats; `null` for a one-off.
    pub recurrence: Option<Recurrence>,
    /// The occurrence whose completion created this one.
    pub parent_task_id: Option<Uuid>,
    /// Starts at 1 and increments on every change.
    pub version: i64,
    /// Creation time.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Last change.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// The recurring series' original day of month, so month-end dates don't drift
    /// (see [`Recurrence::next_due`]). Kept by the store, never sent to clients.
    #[serde(skip)]
    #[schema(ignore)]
    pub recurrence_anchor_day: Option<u32>,
}

impl Task {
    /// Lower-cased title and description, the text that `q=` searches.
    pub fn search_text(&self) -> String {
        let mut text = self.title.to_lowercase();
        if let Some(description) = &self.description {
            text.push('\n');
            text.push_str(&description.to_lowercase());
        }
        text
    }

    /// Lower-cased title, the key that `sort=title` orders by.
    pub fn title_key(&self) -> String {
        self.title.to_lowercase()
    }

    /// The anchor day the next occurrence steps with: the stored one, else `due_at`'s day.
    pub fn anchor_day(&self) -> Option<u32> {
        use chrono::Datelike;
        self.recurrence_anchor_day
            .or_else(|| self.due_at.map(|due| due.day()))
    }

    /// The task's JSON as [`Task::write_json`] writes it.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out);
        // Only UTF-8 is written: string fields are copied or escaped, the rest is ASCII.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the task's JSON to `out`: the same bytes as `serde_json::to_writer`, written
    /// directly. Lists render hundreds of tasks per page, and this skips the serializer's
    /// generic machinery and the escaping scan of values that cannot need escaping (ids,
    /// times, names of enums).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        fn text(out: &mut Vec<u8>, s: &str) {
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, s);
        }
        fn raw(out: &mut Vec<u8>, s: &str) {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
        fn id(out: &mut Vec<u8>, id: &Uuid) {
            raw(
                out,
                id.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
            );
        }
        fn time(out: &mut Vec<u8>, ts: &Option<crate::time::Timestamp>) {
            match ts {
                Some(ts) => raw(out, crate::time::Rfc3339::new(ts).as_str()),
                None => out.extend_from_slice(b"null"),
            }
        }
        fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
        out.extend_from_slice(b"{\"id\":");
        id(out, &self.id);
        out.extend_from_slice(b",\"user_id\":");
        text(out, &self.user_id);
        out.extend_from_slice(b",\"title\":");
        text(out, &self.title);
        out.extend_from_slice(b",\"description\":");
        match &self.description {
            Some(d) => text(out, d),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(if self.completed {
            b",\"completed\":true,\"completed_at\":"
        } else {
            b",\"completed\":false,\"completed_at\":"
        });
        time(out, &self.completed_at);
        out.extend_from_slice(b",\"priority\":");
        raw(out, self.priority.as_str());
        out.extend_from_slice(b",\"tags\":[");
        for (i, tag) in self.tags.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            text(out, tag);
        }
        out.extend_from_slice(b"],\"due_at\":");
        time(out, &self.due_at);
        out.extend_from_slice(b",\"remind_before_minutes\":");
        match self.remind_before_minutes {
            Some(m) => int(out, m),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"recurrence\":");
        match &self.recurrence {
            Some(r) => {
                out.extend_from_slice(b"{\"frequency\":");
                raw(out, r.frequency.as_str());
                out.extend_from_slice(b",\"interval\":");
                int(out, r.interval);
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"parent_task_id\":");
        match &self.parent_task_id {
            Some(p) => id(out, p),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"version\":");
        int(out, self.version);
        out.extend_from_slice(b",\"created_at\":");
        raw(out, crate::time::Rfc3339::new(&self.created_at).as_str());
        out.extend_from_slice(b",\"updated_at\":");
        raw(out, crate::time::Rfc3339::new(&self.updated_at).as_str());
        out.push(b'}');
    }

    /// When the reminder fires: `due_at - remind_before_minutes`, if both are set.
    pub fn remind_at(&self) -> Option<Timestamp> {
        let due = self.due_at?;
        let minutes = self.remind_before_minutes?;
        due.checked_sub_signed(chrono::Duration::minutes(minutes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recurrence::Frequency;
    use proptest::prelude::*;

    fn time() -> impl Strategy<Value = crate::time::Timestamp> {
        // Years 1970-9999, any microsecond (and whole seconds and milliseconds, which
        // format with fewer digits).
        (
            0i64..=253_402_300_799,
            prop_oneof![
                Just(0u32),
                (0u32..1000).prop_map(|m| m * 1000),
                0u32..1_000_000
            ],
        )
            .prop_map(|(s, us)| chrono::DateTime::from_timestamp(s, us * 1000).unwrap())
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z \"\\\\/\u{0}-\u{1f}\u{7f}\u{2028}é😀]{0,40}"
        ]
    }

    prop_compose! {
        fn task()(
            id in any::<u128>(), user_id in text(), title in text(),
            description in proptest::option::of(text()), completed in any::<bool>(),
            completed_at in proptest::option::of(time()), priority in 0i64..3,
            tags in proptest::collection::vec(text(), 0..4), due_at in proptest::option::of(time()),
            remind in proptest::option::of(any::<i64>()),
            recurrence in proptest::option::of((0usize..4, 1i64..=365)),
            parent in proptest::option::of(any::<u128>()), version in any::<i64>(),
            created_at in time(), updated_at in time(),
        ) -> Task {
            Task {
                id: Uuid::from_u128(id), user_id, title, description, completed, completed_at,
                priority: Priority::from_rank(priority).unwrap(), tags, due_at,
                remind_before_minutes: remind,
                recurrence: recurrence
                    .map(|(f, i)| Recurrence::new(Frequency::ALL[f], i).unwrap()),
                parent_task_id: parent.map(Uuid::from_u128), version, created_at, updated_at,
                recurrence_anchor_day: None,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_direct_json_is_byte_for_byte_what_serde_writes(task in task()) {
            let mut direct = Vec::new();
            task.write_json(&mut direct);
            prop_assert_eq!(String::from_utf8(direct).unwrap(), serde_json::to_string(&task).unwrap());
        }
    }
}
