//! One shutdown story for every service: a future that resolves on SIGTERM or Ctrl-C.
//! Servers stop accepting when it resolves, drain what is in flight, then return.
//!
//! On the way, SIGXFSZ is caught: a file size limit (`ulimit -f`, systemd's
//! `LimitFSIZE=`, `prlimit --fsize`) then makes a write past it fail with `EFBIG`, which
//! the stores and the spool answer as a full disk (RESOURCE_EXHAUSTED, nothing stored,
//! writes again once there is room), instead of killing the process, which the default
//! action does, and which would only come back to the same limit after a restart.

use std::future::Future;

/// Registers for SIGTERM and SIGINT (Ctrl-C) now, and returns a future that resolves
/// when either arrives. Call it before the service announces that it listens: a signal
/// that arrives between the two is then a graceful stop, not the default abrupt exit.
///
/// Must be called inside a tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        survive_file_size_limit();
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                    _ = int.recv() => tracing::info!("Ctrl-C received, shutting down"),
                },
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "cannot listen for signals; stop this process with SIGKILL");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received, shutting down");
        } else {
            std::future::pending::<()>().await;
        }
    }
}

/// Catches SIGXFSZ (once caught by tokio, its handler stays for the life of the process),
/// logging each one; writes past the file size limit then fail with `EFBIG`.
#[cfg(unix)]
fn survive_file_size_limit() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::from_raw(libc::SIGXFSZ)) {
        Ok(mut xfsz) => {
            tokio::spawn(async move {
                while xfsz.recv().await.is_some() {
                    tracing::warn!("a write went past the file size limit (SIGXFSZ); it fails as on a full disk");
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot catch SIGXFSZ: a file size limit will kill this process"),
    }
}
