//! Small pieces every fake provider uses.

use std::sync::{Mutex, MutexGuard};

/// Locks a fake's state. A panic in a test thread leaves the data usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// As loose as the providers' own first check: one `@`, a non-empty local part, a
/// dotted domain (or `localhost`), no spaces or control characters.
pub(crate) fn valid_email(s: &str) -> bool {
    let mut parts = s.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None)
        if !l.is_empty() && (d.contains('.') || d == "localhost"))
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}
