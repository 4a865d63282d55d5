//! One shutdown story for every service: a future that resolves on SIGTERM or Ctrl-C.
//! Servers stop accepting when it resolves, drain what is in flight, then return.

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
