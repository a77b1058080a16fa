//! Per-client-address request limit for the unauthenticated endpoints that cost a password
//! hash (`POST /api/v1/tokens`, `POST /api/v1/users`): a fixed one-minute window per address,
//! kept in memory per replica.
//!
//! The handlers of those endpoints call [`admit`] themselves, so the limit belongs to the
//! route that actually serves a request, whatever spelling of its path reached it
//! (`/api/v1/tokens/`, `//api/v1/tokens`, percent-encoded letters, …).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use salvo::prelude::*;

use crate::error::AppError;
use crate::state::AppState;

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

/// The address a client is counted under: an IPv6 client by its /64 network, which one
/// subscriber usually owns whole (counting single addresses would give it 2^64 windows), and
/// an IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1_u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
    }
}

/// Counts this request against its client's window when the deployment limits clients
/// (`RATE_LIMIT_PER_MINUTE`); a 429 when the window is full.
pub fn admit(req: &Request, state: &AppState) -> Result<(), AppError> {
    let (Some(limit), Some(address)) = (&state.client_limit, req.remote_addr().ip()) else {
        return Ok(());
    };
    limit
        .admit(client_key(address), Instant::now())
        .map_err(|retry_after_seconds| AppError::RateLimited {
            retry_after_seconds,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(address: &str) -> String {
        client_key(address.parse().expect("address")).to_string()
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:3::1"), "2001:db8:1:3::");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::1"), "::");
    }

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
