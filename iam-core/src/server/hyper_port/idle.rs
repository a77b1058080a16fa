//! When a hyper port's connection is idle: it answers no request (HTTP/2 pings and their
//! answers move bytes on a connection nobody uses, so bytes do not count).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Whether a connection is answering a request, or began or finished one since its idle
/// watch last looked. Requests, not bytes: HTTP/2 pings (a peer's, and the answers to
/// them) move bytes on a connection that nobody uses.
#[derive(Debug, Default)]
pub(super) struct Activity {
    in_flight: AtomicUsize,
    moved: AtomicBool,
}

impl Activity {
    /// Marks a request as begun until the returned guard is dropped.
    pub(super) fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.moved.store(true, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    /// Whether no request was answered, begun or finished since the last call.
    pub(super) fn quiet_since_last_look(&self) -> bool {
        let moved = self.moved.swap(false, Ordering::Relaxed);
        !moved && self.in_flight.load(Ordering::Relaxed) == 0
    }
}

/// A request being answered (see [`Activity::begin`]).
#[derive(Debug)]
pub(super) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.moved.store(true, Ordering::Relaxed);
    }
}

/// How many times per idle timeout a connection's idle watch looks for traffic: a connection
/// is closed after between 1 and 1 + 1/IDLE_CHECKS idle timeouts without any.
const IDLE_CHECKS: u32 = 4;

/// Resolves once the connection has answered no request for `idle_timeout` (never for
/// `None`).
pub(super) async fn idle_elapsed(activity: &Activity, idle_timeout: Option<Duration>) {
    let Some(limit) = idle_timeout else {
        return std::future::pending().await;
    };
    let check = limit / IDLE_CHECKS;
    let mut quiet = Duration::ZERO;
    while quiet < limit {
        tokio::time::sleep(check).await;
        quiet = if activity.quiet_since_last_look() {
            quiet + check
        } else {
            Duration::ZERO
        };
    }
}
