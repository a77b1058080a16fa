//! Graceful shutdown: the signal every process stops on, and the drain that comes first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the process is draining: it got its stop signal and keeps serving for
/// `SHUTDOWN_DELAY` while load balancers stop sending, its readiness check answering 503.
/// Clones share one state.
#[derive(Debug, Clone, Default)]
pub struct Drain(Arc<AtomicBool>);

impl Drain {
    /// Whether the stop signal has come.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Marks the process as draining.
    pub fn begin(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_drain() {
        let drain = Drain::default();
        let seen_by_healthcheck = drain.clone();
        assert!(!seen_by_healthcheck.is_draining());
        drain.begin();
        assert!(seen_by_healthcheck.is_draining());
    }
}
