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

    /// When the reminder fires: `due_at - remind_before_minutes`, if both are set.
    pub fn remind_at(&self) -> Option<Timestamp> {
        let due = self.due_at?;
        let minutes = self.remind_before_minutes?;
        due.checked_sub_signed(chrono::Duration::minutes(minutes))
    }
}
