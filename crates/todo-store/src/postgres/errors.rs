//! PostgreSQL failures as [`StoreError`]s: what a retry may cure is `Unavailable` (a 503),
//! everything else is `Failed`.

use deadpool_postgres::PoolError;

use crate::StoreError;

/// Whether a SQLSTATE means the database cannot take the work now rather than that the
/// work is wrong: connection exceptions (class 08), insufficient resources (53: disk full,
/// out of memory, too many connections), operator intervention (57: admin or crash
/// shutdown, cannot connect now, a cancelled statement), system errors (58: I/O) and a
/// read-only transaction (25006, a standby or a read-only database).
pub(super) fn unavailable_state(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "53" | "57" | "58")) || code == "25006"
}

/// A driver error: a SQLSTATE decides the class; without one, a closed connection or an
/// I/O failure (refused, reset, timed out) is `Unavailable`.
pub(super) fn db(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let message = format!("{} (SQLSTATE {code})", db.message());
        return if unavailable_state(code) {
            StoreError::Unavailable(message)
        } else {
            StoreError::Failed(message)
        };
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        StoreError::Unavailable(with_causes(&e))
    } else {
        StoreError::Failed(with_causes(&e))
    }
}

/// The error and its causes: the driver's own text is generic ("error performing TLS
/// handshake"), the reason (`invalid peer certificate: UnknownIssuer`) is in its source.
fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        db(e)
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => db(e),
            PoolError::Timeout(kind) => StoreError::Unavailable(format!(
                "no database connection within the pool's timeout ({kind:?})"
            )),
            PoolError::Closed => StoreError::Unavailable("the connection pool is closed".into()),
            other => StoreError::Failed(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unavailable_state;

    #[test]
    fn sqlstates_a_retry_may_cure_are_unavailable() {
        for code in [
            "08006", "08001", "53100", "53200", "53300", "57P01", "57P03", "57014", "58030",
            "25006",
        ] {
            assert!(unavailable_state(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02", "40001", "28P01", "25P02", ""] {
            assert!(!unavailable_state(code), "{code}");
        }
    }
}
