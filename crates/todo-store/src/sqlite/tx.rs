//! Write transactions that can't outlive a failure.
//!
//! SQLite rolls a transaction back by itself on some errors (disk full, I/O error), and a
//! dropped future (a client that went away) abandons one half-way. Rather than trust the
//! driver to track either, a [`WriteTx`] that is not committed closes its connection: SQLite
//! discards the open transaction, and the pool opens a clean connection for the next write.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool};

use crate::Result;

/// An open `BEGIN IMMEDIATE` transaction on the writer connection.
pub(super) struct WriteTx {
    conn: PoolConnection<Sqlite>,
    committed: bool,
}

impl WriteTx {
    /// Takes the writer and starts a transaction holding the write lock from the start, so
    /// two processes sharing the file queue instead of failing on lock upgrade.
    pub(super) async fn begin(pool: &SqlitePool) -> Result<Self> {
        let mut conn = pool.acquire().await?;
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            conn.close_on_drop();
            return Err(e.into());
        }
        Ok(WriteTx {
            conn,
            committed: false,
        })
    }

    /// Commits; on failure the connection is discarded with the transaction.
    pub(super) async fn commit(mut self) -> Result<()> {
        sqlx::query("COMMIT").execute(&mut *self.conn).await?;
        self.committed = true;
        Ok(())
    }
}

impl WriteTx {
    /// Rolls back after a refusal that left the transaction sound (a version conflict, a
    /// missing row). If even that fails, the connection goes with it.
    pub(super) async fn rollback(mut self) {
        if sqlx::query("ROLLBACK")
            .execute(&mut *self.conn)
            .await
            .is_ok()
        {
            self.committed = true; // clean: keep the connection
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.close_on_drop();
        }
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}
