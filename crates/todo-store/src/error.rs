//! Store errors, each with a bounded `kind()` for metric labels.

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist (or belongs to another user).
    #[error("not found")]
    NotFound,
    /// The stored version is not the expected one.
    #[error("version conflict: stored version is {current}")]
    VersionConflict {
        /// The version actually stored.
        current: i64,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The database cannot take the work now: busy, out of space, an I/O error, or the
    /// writer queue too long. Worth a 503 and a retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A transaction failed for a reason reported to another caller of the same batch.
    #[error("database error: {0}")]
    Failed(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(String),
    /// A stored value could not be read back.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The configured engine is not available.
    #[error("{0}")]
    Unsupported(String),
}

impl StoreError {
    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotFound => "not_found",
            StoreError::VersionConflict { .. } => "version_conflict",
            StoreError::Database(_) | StoreError::Failed(_) => "database",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Migrate(_) => "migrate",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Unsupported(_) => "unsupported",
        }
    }

    /// Whether the database is unreachable, busy or out of space (worth a 503 and a retry)
    /// rather than broken.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode::{
            CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, SystemIoFailure,
        };
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Database(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen
            ),
            _ => false,
        }
    }

    /// The same failure, for another caller whose work it also undid (errors are not
    /// `Clone`; what matters to each caller is the class and the message).
    pub(crate) fn shared(&self) -> StoreError {
        if self.is_unavailable() {
            StoreError::Unavailable(self.to_string())
        } else {
            StoreError::Failed(self.to_string())
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
