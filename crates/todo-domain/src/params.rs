//! The query parameters of the list routes, described for OpenAPI next to the constants and
//! patterns their parsers ([`crate::TaskQuery::parse`], [`crate::query::parse_limit`]) use.

use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::{KnownFormat, Required, SchemaFormat};

use crate::event::EventType;
use crate::input::MAX_TAGS;
use crate::query::{MAX_LIMIT, MAX_QUERY, TaskQuery};
use crate::request::{tag_schema, timestamp_schema};
use crate::text;

fn query(
    name: &str,
    description: &str,
    schema: impl Into<utoipa::openapi::RefOr<utoipa::openapi::Schema>>,
) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn one_of(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
}

/// `limit` and `cursor`, which every list takes.
pub fn page_params() -> Vec<Parameter> {
    vec![
        query(
            "limit",
            &format!("Page size, 1-{MAX_LIMIT}; default 50"),
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(MAX_LIMIT)),
        ),
        query(
            "cursor",
            "Opaque, from the previous page's `next_cursor`, for the same sort and order; empty \
             means the first page. Any other value is a 422 on `cursor`.",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(2048))
                .pattern(Some("^[A-Za-z0-9_-]*$")),
        ),
    ]
}

/// The paging parameters of `/reminders` and `/notifications`.
pub struct PageParams;

impl IntoParams for PageParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        page_params()
    }
}

/// The filters and paging of `/audit`.
pub struct AuditParams;

impl IntoParams for AuditParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let types: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        let mut params = vec![
            query(
                "task_id",
                "Only this task's events",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            ),
            query(
                "event_type",
                "Only events of this CloudEvent type",
                one_of(&types),
            ),
        ];
        params.extend(page_params());
        params
    }
}

impl IntoParams for TaskQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut tag = query(
            "tag",
            &format!(
                "Repeatable (`tag=a&tag=b`): tasks holding every one. At most {MAX_TAGS}, each \
                 trimmed and lower-cased as stored tags are."
            ),
            ArrayBuilder::new()
                .items(tag_schema())
                .max_items(Some(MAX_TAGS)),
        );
        tag.style = Some(ParameterStyle::Form);
        tag.explode = Some(true);
        let mut params = vec![
            query(
                "status",
                "Completion filter; default all",
                one_of(&["all", "pending", "completed"]),
            ),
            query(
                "priority",
                "Only this priority",
                one_of(&["high", "medium", "low"]),
            ),
            tag,
            query(
                "q",
                &format!(
                    "Case-insensitive substring of the title or description; at most \
                     {MAX_QUERY} characters after trimming; blank is no filter"
                ),
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(text::trimmed_pattern(0, MAX_QUERY))),
            ),
            query(
                "due_before",
                "Tasks due strictly before this; never tasks without `due_at`",
                timestamp_schema(false),
            ),
            query(
                "due_after",
                "Tasks due strictly after this; never tasks without `due_at`",
                timestamp_schema(false),
            ),
            query(
                "sort",
                "Sort key; ties break on `id`. Default created_at",
                one_of(&["created_at", "due_at", "priority", "title"]),
            ),
            query(
                "order",
                "Default desc for created_at and priority, asc for due_at and title",
                one_of(&["asc", "desc"]),
            ),
        ];
        params.extend(page_params());
        params
    }
}
