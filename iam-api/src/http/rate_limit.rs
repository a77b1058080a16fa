//! Per-client-IP request limit, applied by `app.rs` to the unauthenticated write endpoints
//! (`POST /api/v1/tokens`, `POST /api/v1/users`): a fixed one-minute window per address,
//! kept in memory per replica.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use salvo::prelude::*;

use crate::error::AppError;

const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked addresses, expired windows are swept on insert.
const SWEEP_THRESHOLD: usize = 10_000;

/// Allows `limit` requests per client address per minute.
#[derive(Debug)]
pub struct ClientRateLimit {
    limit: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl ClientRateLimit {
    /// A limit of `limit` requests per minute per address.
    pub fn per_minute(limit: u32) -> Self {
        ClientRateLimit {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request from `client` at `now`; the seconds to wait when over the limit.
    fn admit(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        if windows.len() > SWEEP_THRESHOLD {
            windows.retain(|_, (started, _)| now.duration_since(*started) < WINDOW);
        }
        let (started, count) = windows.entry(client).or_insert((now, 0));
        if now.duration_since(*started) >= WINDOW {
            *started = now;
            *count = 0;
        }
        if *count >= self.limit {
            let remaining = WINDOW.saturating_sub(now.duration_since(*started));
            return Err(remaining.as_secs().max(1));
        }
        *count += 1;
        Ok(())
    }
}

#[async_trait]
impl Handler for ClientRateLimit {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let Some(client) = req.remote_addr().ip() else {
            ctrl.call_next(req, depot, res).await;
            return;
        };
        if let Err(retry_after_seconds) = self.admit(client, Instant::now()) {
            AppError::RateLimited {
                retry_after_seconds,
            }
            .render(res);
            ctrl.skip_rest();
            return;
        }
        ctrl.call_next(req, depot, res).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_window() {
        let limit = ClientRateLimit::per_minute(2);
        let now = Instant::now();
        let first: IpAddr = [10, 0, 0, 1].into();
        let second: IpAddr = [10, 0, 0, 2].into();
        assert!(limit.admit(first, now).is_ok());
        assert!(limit.admit(first, now).is_ok());
        assert_eq!(limit.admit(first, now + Duration::from_secs(15)), Err(45));
        assert!(limit.admit(second, now).is_ok());
        assert!(limit.admit(first, now + WINDOW).is_ok());
    }
}
