//! SQLite's errors, sorted into the store's backend-neutral classes.

use crate::StoreError;

impl From<rusqlite::Error> for StoreError {
    /// Busy or locked files, I/O errors, a full disk and a file that can't be opened are
    /// worth a retry (503); anything else is a failure.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{
            CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, SystemIoFailure,
        };
        match &e {
            rusqlite::Error::SqliteFailure(failure, _)
                if matches!(
                    failure.code,
                    DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen
                ) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl StoreError {
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
