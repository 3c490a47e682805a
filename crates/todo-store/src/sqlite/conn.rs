//! Connections held behind a mutex instead of a pool.
//!
//! Taking a connection is then a lock, and giving it back is an unlock. A sqlx pool instead
//! returns each connection through a spawned task that pings it first: two extra hand-offs
//! per statement batch, which on the single writer connection made every write wait for the
//! previous one's ping.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{Mutex, MutexGuard};

use crate::Result;

/// Longest wait for a connection before the caller is told the store is unavailable.
const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// One connection, opened on first use and again after it is discarded.
#[derive(Debug)]
pub(super) struct Conn {
    slot: Mutex<Option<SqliteConnection>>,
    options: SqliteConnectOptions,
}

/// Exclusive use of a [`Conn`]'s connection.
pub(super) struct Guard<'a> {
    slot: MutexGuard<'a, Option<SqliteConnection>>,
}

impl Conn {
    /// A connection slot that connects with `options`.
    pub(super) fn new(options: SqliteConnectOptions) -> Self {
        Conn {
            slot: Mutex::new(None),
            options,
        }
    }

    /// Waits for the connection (FIFO, at most [`WAIT`]), connecting if there is none.
    pub(super) async fn get(&self) -> Result<Guard<'_>> {
        let slot = tokio::time::timeout(WAIT, self.slot.lock())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        Self::fill(slot, &self.options).await
    }

    /// The connection if nobody holds it.
    async fn try_get(&self) -> Option<Result<Guard<'_>>> {
        let slot = self.slot.try_lock().ok()?;
        Some(Self::fill(slot, &self.options).await)
    }

    async fn fill<'a>(
        mut slot: MutexGuard<'a, Option<SqliteConnection>>,
        options: &SqliteConnectOptions,
    ) -> Result<Guard<'a>> {
        if slot.is_none() {
            *slot = Some(options.connect().await?);
        }
        Ok(Guard { slot })
    }
}

impl Guard<'_> {
    /// Closes the connection (SQLite discards any open transaction); the next user of the
    /// slot opens a fresh one.
    pub(super) fn discard(mut self) {
        self.slot.take();
    }
}

impl Deref for Guard<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.slot
            .as_ref()
            .expect("a guard always holds a connection")
    }
}

impl DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.slot
            .as_mut()
            .expect("a guard always holds a connection")
    }
}

/// A few read-only connections, handed out free-first, else in turn.
#[derive(Debug)]
pub(super) struct Readers {
    conns: Vec<Conn>,
    next: AtomicUsize,
}

impl Readers {
    /// `n` read-only connections with `options`.
    pub(super) fn new(options: SqliteConnectOptions, n: usize) -> Self {
        let conns = (0..n.max(1))
            .map(|_| Conn::new(options.clone().read_only(true)))
            .collect();
        Readers {
            conns,
            next: AtomicUsize::new(0),
        }
    }

    /// A free connection if there is one, else waits for the next in turn.
    pub(super) async fn get(&self) -> Result<Guard<'_>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.conns.len() {
            if let Some(guard) = self.conns[(start + i) % self.conns.len()].try_get().await {
                return guard;
            }
        }
        self.conns[start % self.conns.len()].get().await
    }
}
