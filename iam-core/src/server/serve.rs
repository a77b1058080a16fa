//! Serving until a shutdown signal: the one start-to-stop sequence of every process.
//!
//! On SIGTERM/SIGINT every listener of the process stops accepting at once and in-flight
//! requests get [`SHUTDOWN_GRACE`] to finish; then the process's own clean-up runs (closing
//! its database pool) and "stopped" is logged. The steps between the signal and the stop are
//! [`stop_on_signal`]'s alone, so a drain period (`SHUTDOWN_DELAY`) belongs there.

use std::future::Future;
use std::time::Duration;

use salvo::conn::tcp::TcpAcceptor;
use salvo::prelude::*;
use salvo::server::ServerHandle;

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The listeners of one process and how it stops; [`Serve::run`] serves them all.
#[derive(Debug, Default)]
pub struct Serve {
    listeners: Vec<(Server<TcpAcceptor>, Service)>,
}

impl Serve {
    /// Nothing to serve yet.
    pub fn new() -> Self {
        Serve::default()
    }

    /// Adds a bound server (see [`super::bind`]) and the service it answers with.
    pub fn listen(mut self, server: Server<TcpAcceptor>, service: Service) -> Self {
        self.listeners.push((server, service));
        self
    }

    /// Serves until SIGTERM or SIGINT, lets in-flight requests finish, then awaits
    /// `clean_up` (closing the database pool) and logs "stopped".
    pub async fn run(self, clean_up: impl Future<Output = ()>) {
        let handles: Vec<ServerHandle> = self
            .listeners
            .iter()
            .map(|(server, _)| server.handle())
            .collect();
        tokio::spawn(stop_on_signal(handles));
        futures_util::future::join_all(
            self.listeners
                .into_iter()
                .map(|(server, service)| server.serve(service)),
        )
        .await;
        clean_up.await;
        tracing::info!("stopped");
    }
}

/// Waits for the shutdown signal, then stops every listener gracefully.
async fn stop_on_signal(handles: Vec<ServerHandle>) {
    crate::shutdown::wait_for_signal().await;
    // A drain period (readiness answering 503 while serving goes on) would run here, before
    // any listener stops accepting.
    tracing::info!("shutting down: finishing in-flight requests");
    for handle in handles {
        handle.stop_graceful(Some(SHUTDOWN_GRACE));
    }
}
