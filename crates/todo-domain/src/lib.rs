//! The Todo platform's domain: tasks, their validation, recurrence arithmetic, list queries,
//! cursors, reminders, audit entries and the CloudEvents that carry changes between services.
//!
//! Nothing here performs I/O: no tokio, no database, no HTTP. Services and stores turn these
//! values into effects, so every rule below can be tested in isolation.

pub mod audit;
pub mod cursor;
pub mod error;
pub mod event;
pub mod input;
pub mod params;
pub mod query;
pub mod recurrence;
pub mod reminder;
pub mod request;
pub mod task;
pub mod text;
pub mod time;

pub use audit::AuditEntry;
pub use cursor::Cursor;
pub use error::{FieldError, ValidationErrors};
pub use event::{CloudEvent, EventType, ReminderData, TaskData, Topic};
pub use input::{CreateTask, TaskPatch};
pub use query::{Order, SortKey, StatusFilter, TaskQuery};
pub use recurrence::{Frequency, Recurrence};
pub use reminder::{Notification, Reminder, ReminderPlan, ReminderStatus};
pub use request::{CompleteRequest, NewTaskRequest, RecurrenceRequest, Sent, TaskUpdateRequest};
pub use task::{Priority, Task};
