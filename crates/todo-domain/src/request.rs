//! The request bodies exactly as the server reads them, and their OpenAPI schemas.
//!
//! Each field is a [`Sent`], which tells an absent field from an explicit `null` (which `PUT`
//! needs: "absent kept, null clears") and keeps a value of the wrong type as
//! [`Sent::Invalid`] instead of failing the whole body, so that [`crate::input`] can report
//! every bad field in one answer. The schemas published in `/openapi.json` are generated
//! from these types; the patterns come from [`crate::text`] and [`crate::time`], whose
//! tests prove that the patterns accept exactly what the checks accept.

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{KnownFormat, RefOr, Schema};

use crate::input::{MAX_DESCRIPTION, MAX_REMIND_BEFORE, MAX_TAGS, MAX_TITLE};
use crate::recurrence::{Frequency, MAX_INTERVAL};
use crate::task::Priority;
use crate::text;
use crate::time;

/// One body field as the client sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sent<T> {
    /// Not in the body.
    #[default]
    Absent,
    /// `null`.
    Null,
    /// A value of the expected JSON type.
    Value(T),
    /// A value of another JSON type (a number for a string, ...).
    Invalid,
}

impl<T> Sent<T> {
    /// Whether the field was in the body with a non-null value (right type or not).
    pub fn is_given(&self) -> bool {
        matches!(self, Sent::Value(_) | Sent::Invalid)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Sent<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => Sent::Null,
            other => T::deserialize(other).map_or(Sent::Invalid, Sent::Value),
        })
    }
}

/// A JSON integer: what JSON Schema's `integer` means, so `15` and `15.0` alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integer(pub i64);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Number::deserialize(d)? {
            n if n.as_i64().is_some() => Ok(Integer(n.as_i64().unwrap_or_default())),
            n => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                // Exact: an integral float below 2^53 converts without loss.
                .map(|f| Integer(f as i64))
                .ok_or_else(|| D::Error::custom("expected a whole number")),
        }
    }
}

/// Body of `POST /api/{user_id}/tasks`. Only `title` is required; unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub struct NewTaskRequest {
    /// 1–200 characters once leading and trailing whitespace is trimmed (the pattern says
    /// exactly this), without control characters.
    #[schema(schema_with = title_schema, required = true)]
    #[serde(default)]
    pub title: Sent<String>,
    /// Up to 2000 characters; control characters other than tab, line feed and carriage
    /// return are refused. `null` or absent: no description.
    #[schema(schema_with = description_schema)]
    #[serde(default)]
    pub description: Sent<String>,
    /// `high`, `medium` or `low`; absent or `null` means `medium`.
    #[schema(value_type = Option<Priority>)]
    #[serde(default)]
    pub priority: Sent<Priority>,
    /// At most 10 entries of 1–32 characters after trimming, without control characters;
    /// stored lower-case with duplicates removed.
    #[schema(schema_with = tags_schema)]
    #[serde(default)]
    pub tags: Sent<Vec<Sent<String>>>,
    /// When the task is due (see the pattern's description for the range); required when
    /// `recurrence` is set.
    #[schema(schema_with = nullable_timestamp_schema)]
    #[serde(default)]
    pub due_at: Sent<String>,
    /// Minutes before `due_at` to remind (0–525600). Absent with a `due_at`: 15; `null`: no
    /// reminder.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 525_600)]
    #[serde(default)]
    pub remind_before_minutes: Sent<Integer>,
    /// How the task repeats; needs `due_at`. `null` or absent: a one-off.
    #[schema(value_type = Option<RecurrenceRequest>)]
    #[serde(default)]
    pub recurrence: Sent<RecurrenceRequest>,
}

/// Body of `PUT .../tasks/{id}`: fields present are set, absent kept, `null` clears (a
/// `null` priority resets it to `medium`). Unknown fields, and the task's read-only fields
/// (`id`, `version`, ...), are ignored, so a fetched task can be sent back whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub struct TaskUpdateRequest {
    /// New title, as on creation; it cannot be `null`.
    #[schema(schema_with = title_schema)]
    #[serde(default)]
    pub title: Sent<String>,
    /// New description, or `null` to clear it.
    #[schema(schema_with = description_schema)]
    #[serde(default)]
    pub description: Sent<String>,
    /// New priority; `null` resets it to `medium`.
    #[schema(value_type = Option<Priority>)]
    #[serde(default)]
    pub priority: Sent<Priority>,
    /// New tags; `null` clears them.
    #[schema(schema_with = tags_schema)]
    #[serde(default)]
    pub tags: Sent<Vec<Sent<String>>>,
    /// New due date, or `null` (refused while the task keeps a recurrence).
    #[schema(schema_with = nullable_timestamp_schema)]
    #[serde(default)]
    pub due_at: Sent<String>,
    /// New reminder offset, or `null` to disable reminders.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 525_600)]
    #[serde(default)]
    pub remind_before_minutes: Sent<Integer>,
    /// New recurrence, or `null` for a one-off.
    #[schema(value_type = Option<RecurrenceRequest>)]
    #[serde(default)]
    pub recurrence: Sent<RecurrenceRequest>,
    /// Completion, as `PATCH .../complete` with a body sets it.
    #[schema(value_type = bool)]
    #[serde(default)]
    pub completed: Sent<bool>,
}

/// A repeat rule as sent. Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub struct RecurrenceRequest {
    /// The unit.
    #[schema(value_type = Frequency, required = true)]
    #[serde(default)]
    pub frequency: Sent<Frequency>,
    /// Units between occurrences, 1–365; absent or `null` means 1.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 365, default = 1)]
    #[serde(default)]
    pub interval: Sent<Integer>,
}

/// Body of `PATCH .../complete`. Without a body, or with `{}`, completion toggles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub struct CompleteRequest {
    /// The state to set.
    #[schema(value_type = bool)]
    #[serde(default)]
    pub completed: Sent<bool>,
}

fn string_schema(nullable: bool) -> ObjectBuilder {
    let kind = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new().schema_type(kind)
}

fn title_schema() -> impl Into<RefOr<Schema>> {
    string_schema(false)
        .min_length(Some(1))
        .pattern(Some(text::trimmed_pattern(1, MAX_TITLE)))
        .description(Some(format!(
            "1–{MAX_TITLE} characters after trimming whitespace; no control characters."
        )))
}

fn description_schema() -> impl Into<RefOr<Schema>> {
    string_schema(true)
        .max_length(Some(MAX_DESCRIPTION))
        .pattern(Some(text::MULTILINE_PATTERN))
        .description(Some(format!(
            "Up to {MAX_DESCRIPTION} characters; no control characters but tab, line feed \
             and carriage return."
        )))
}

/// The schema of one tag, in bodies and in the `tag` query parameter.
pub fn tag_schema() -> ObjectBuilder {
    string_schema(false)
        .min_length(Some(1))
        .pattern(Some(text::trimmed_pattern(1, crate::input::MAX_TAG)))
}

fn tags_schema() -> impl Into<RefOr<Schema>> {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(tag_schema())
        .max_items(Some(MAX_TAGS))
        .description(Some(format!(
            "At most {MAX_TAGS} entries; each is trimmed and lower-cased, and duplicates are \
             dropped."
        )))
}

/// A timestamp in the accepted range, as `format: date-time` plus the range's pattern.
pub fn timestamp_schema(nullable: bool) -> ObjectBuilder {
    string_schema(nullable)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .pattern(Some(time::RANGE_PATTERN))
        .description(Some(time::RANGE_DESCRIPTION))
}

fn nullable_timestamp_schema() -> impl Into<RefOr<Schema>> {
    timestamp_schema(true)
}

// The attribute literals above restate these bounds; keep them honest at compile time.
const _: () = assert!(MAX_REMIND_BEFORE == 525_600 && MAX_INTERVAL == 365);
