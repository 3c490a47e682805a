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
    /// The database failed (a bug, a constraint, a broken file): the engine's message.
    #[error("database error: {0}")]
    Database(String),
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
    /// rather than broken. Each engine sorts its errors into these two when converting them.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
