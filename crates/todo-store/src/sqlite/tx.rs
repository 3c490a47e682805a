//! Write transactions that can't outlive a failure.
//!
//! SQLite rolls a transaction back by itself on some errors (disk full, I/O error), and a
//! dropped future (a client that went away) abandons one half-way. Rather than track either,
//! a [`WriteTx`] that is not committed closes its connection: SQLite discards the open
//! transaction, and the next writer opens a clean connection.

use std::ops::{Deref, DerefMut};

use sqlx::sqlite::SqliteConnection;

use super::conn::{Conn, Guard};
use crate::Result;

/// An open `BEGIN IMMEDIATE` transaction on the writer connection.
pub(super) struct WriteTx<'a> {
    guard: Option<Guard<'a>>,
    committed: bool,
}

impl<'a> WriteTx<'a> {
    /// Takes the writer and starts a transaction holding the write lock from the start, so
    /// two processes sharing the file queue instead of failing on lock upgrade.
    pub(super) async fn begin(writer: &'a Conn) -> Result<Self> {
        // Built before BEGIN runs, so a failure or a drop while it runs discards the
        // connection too.
        let mut tx = Self::batch(writer).await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *tx).await?;
        Ok(tx)
    }

    /// Takes the writer for a batch that opens and commits its own transaction (`BEGIN
    /// IMMEDIATE; ...; COMMIT` sent as one). Until [`WriteTx::finished`] is called, dropping
    /// it discards the connection: a batch cut short (an error, or a request dropped while
    /// it ran) may have left its transaction open, and the next statement on the
    /// connection would run inside it.
    pub(super) async fn batch(writer: &'a Conn) -> Result<Self> {
        Ok(WriteTx {
            guard: Some(writer.get().await?),
            committed: false,
        })
    }

    /// Marks a [`WriteTx::batch`] as having run to its own `COMMIT`.
    pub(super) fn finished(mut self) {
        self.committed = true;
    }

    /// Commits; on failure the connection is discarded with the transaction.
    pub(super) async fn commit(mut self) -> Result<()> {
        sqlx::query("COMMIT").execute(&mut *self).await?;
        self.committed = true;
        Ok(())
    }

    /// Rolls back after a refusal that left the transaction sound (a version conflict, a
    /// missing row). If even that fails, the connection goes with it.
    pub(super) async fn rollback(mut self) {
        if sqlx::query("ROLLBACK").execute(&mut *self).await.is_ok() {
            self.committed = true; // clean: keep the connection
        }
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if !self.committed
            && let Some(guard) = self.guard.take()
        {
            guard.discard();
        }
    }
}

impl Deref for WriteTx<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.guard.as_ref().expect("held until drop")
    }
}

impl DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.guard.as_mut().expect("held until drop")
    }
}
