//! Serving until a shutdown signal: the one start-to-stop sequence of every process.
//!
//! On SIGTERM/SIGINT the process first drains: for `SHUTDOWN_DELAY` its [`Drain`] says so
//! (readiness answers 503) while every listener keeps accepting and serving as usual, because
//! load balancers and Kubernetes endpoints take seconds to stop sending. A second signal ends
//! the delay early. Then every listener stops accepting and in-flight requests get
//! [`SHUTDOWN_GRACE`] to finish; then the process's own clean-up runs (closing its database
//! pool) and "stopped" is logged.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use salvo::conn::tcp::TcpAcceptor;
use salvo::prelude::*;
use salvo::server::ServerHandle;
use tokio::sync::watch;

use super::hyper_port::{Answer, HyperPort};
use crate::shutdown::Drain;

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The listeners of one process and how it stops; [`Serve::run`] serves them all.
pub struct Serve {
    listeners: Vec<(Server<TcpAcceptor>, Service)>,
    hyper_ports: Vec<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Turns true when the drain is over: the hyper ports stop accepting.
    stop: watch::Sender<bool>,
    drain: Drain,
    drain_delay: Duration,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listeners", &self.listeners)
            .field("hyper_ports", &self.hyper_ports.len())
            .field("drain", &self.drain)
            .field("drain_delay", &self.drain_delay)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// Nothing to serve yet; on the stop signal `drain` begins and lasts `drain_delay`.
    pub fn new(drain: Drain, drain_delay: Duration) -> Self {
        Serve {
            listeners: Vec::new(),
            hyper_ports: Vec::new(),
            stop: watch::Sender::new(false),
            drain,
            drain_delay,
        }
    }

    /// Adds a bound server (see [`super::bind`]) and the service it answers with.
    pub fn listen(mut self, server: Server<TcpAcceptor>, service: Service) -> Self {
        self.listeners.push((server, service));
        self
    }

    /// Adds a bound port served by hyper directly (see [`super::hyper_port`]).
    pub fn listen_hyper<A: Answer>(mut self, port: HyperPort<A>) -> Self {
        self.hyper_ports
            .push(Box::pin(port.serve(self.stop.subscribe())));
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
        tokio::spawn(stop_on_signal(
            handles,
            self.stop,
            self.drain,
            self.drain_delay,
        ));
        futures_util::future::join(
            futures_util::future::join_all(
                self.listeners
                    .into_iter()
                    .map(|(server, service)| server.serve(service)),
            ),
            futures_util::future::join_all(self.hyper_ports),
        )
        .await;
        clean_up.await;
        tracing::info!("stopped");
    }
}

/// Waits for the shutdown signal, drains for `delay`, then stops every listener gracefully.
async fn stop_on_signal(
    handles: Vec<ServerHandle>,
    stop: watch::Sender<bool>,
    drain: Drain,
    delay: Duration,
) {
    crate::shutdown::wait_for_signal().await;
    drain.begin();
    if !delay.is_zero() {
        tracing::info!(
            delay_seconds = delay.as_secs(),
            "draining: readiness answers 503, requests are still served"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = crate::shutdown::wait_for_signal() => {
                tracing::info!("second stop signal: ending the drain early");
            }
        }
    }
    tracing::info!("shutting down: finishing in-flight requests");
    stop.send_replace(true);
    for handle in handles {
        handle.stop_graceful(Some(SHUTDOWN_GRACE));
    }
}
