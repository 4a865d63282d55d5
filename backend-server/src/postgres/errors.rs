//! What a tokio-postgres error means to the engine: whether the statement surely took no
//! effect (and may be tried again), whether the host behind the connection can no longer
//! take writes (so its pooled connections are dropped), and its text for messages.

use tokio_postgres::error::SqlState;

/// The error and its causes, one line. A server error gives its message and SQLSTATE
/// only: its detail can quote the values that were refused.
pub(super) fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A serialization conflict or a deadlock: the statement took no effect.
pub(super) fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// The host refused the write because its sessions are read-only (SQLSTATE 25006: a
/// primary turned standby, or fenced with `default_transaction_read_only`). The
/// statement took no effect, and every connection to that host is as useless.
pub(super) fn read_only_host(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// The server is going away (SQLSTATE class 57P: shut down, crashed, or still starting):
/// the connection is lost, and whether the statement took effect is unknown.
pub(super) fn host_going_away(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CRASH_SHUTDOWN
        || *c == SqlState::CANNOT_CONNECT_NOW)
}

/// Two servers creating the schema at once can collide on PostgreSQL's catalog.
pub(super) fn is_catalog_race(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::DUPLICATE_TABLE || *c == SqlState::DUPLICATE_OBJECT)
}
