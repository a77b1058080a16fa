//! Per-client-address request limit for the unauthenticated endpoints that cost a password
//! hash (`POST /api/v1/tokens`, `POST /api/v1/users`): a fixed one-minute window per address,
//! kept in memory per replica.
//!
//! The handlers of those endpoints call [`admit`] themselves, so the limit belongs to the
//! route that actually serves a request, whatever spelling of its path reached it
//! (`/api/v1/tokens/`, `//api/v1/tokens`, percent-encoded letters, …).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use salvo::http::header::{HeaderName, HeaderValue};
use salvo::prelude::*;

use crate::domain::client_address::TrustedProxies;
use crate::error::AppError;
use crate::state::AppState;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
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
        // Counters stay whole whatever panicked while holding the lock: keep limiting rather
        // than let every request through from then on.
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
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
    admit_address(
        state.client_limit.as_deref(),
        client_address(req, &state.config.trusted_proxies),
        Instant::now(),
    )
}

/// The client's address: the peer, or the rightmost untrusted `X-Forwarded-For` hop when
/// the peer is one of `TRUSTED_PROXIES` (the limit above and audit events use it).
pub fn client_address(req: &Request, trusted: &TrustedProxies) -> Option<IpAddr> {
    req.remote_addr().ip().map(|peer| {
        trusted.client(
            peer,
            req.headers()
                .get_all(X_FORWARDED_FOR)
                .iter()
                .map(HeaderValue::as_bytes),
        )
    })
}

/// [`admit`] for a client `address` at `now` under `limit` (`None`: not limited).
fn admit_address(
    limit: Option<&ClientRateLimit>,
    address: Option<IpAddr>,
    now: Instant,
) -> Result<(), AppError> {
    let (Some(limit), Some(address)) = (limit, address) else {
        return Ok(());
    };
    limit
        .admit(client_key(address), now)
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

    fn request_from(peer: &str, forwarded_for: &[&str]) -> Request {
        let mut req = Request::new();
        let peer: std::net::SocketAddr = peer.parse().expect("peer");
        *req.remote_addr_mut() = peer.into();
        for value in forwarded_for {
            req.headers_mut()
                .append(X_FORWARDED_FOR, value.parse().expect("header"));
        }
        req
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwarded_for_it() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").expect("cidr");
        let address = |text: &str| Some(text.parse::<IpAddr>().expect("ip"));
        // A trusted proxy: the rightmost hop it did not add itself.
        let proxied = request_from("10.1.2.3:4000", &["198.51.100.7, 10.9.9.9"]);
        assert_eq!(client_address(&proxied, &trusted), address("198.51.100.7"));
        // Anyone else: the header is the client's own word and is not believed.
        let direct = request_from("203.0.113.5:4000", &["198.51.100.7"]);
        assert_eq!(client_address(&direct, &trusted), address("203.0.113.5"));
        let plain = request_from("203.0.113.5:4000", &[]);
        assert_eq!(
            client_address(&plain, &TrustedProxies::default()),
            address("203.0.113.5")
        );
        // A request with no IP peer (a Unix socket, a test) has no address.
        assert_eq!(client_address(&Request::new(), &trusted), None);
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
    fn admitting_counts_under_the_client_key_and_answers_429() {
        let limit = ClientRateLimit::per_minute(1);
        let now = Instant::now();
        let first: IpAddr = "2001:db8::1".parse().expect("address");
        let same_network: IpAddr = "2001:db8::2".parse().expect("address");
        assert!(admit_address(Some(&limit), Some(first), now).is_ok());
        assert!(matches!(
            admit_address(Some(&limit), Some(same_network), now),
            Err(AppError::RateLimited {
                retry_after_seconds: 60
            })
        ));
        // Not limited, or no address to count (a Unix socket): admitted.
        assert!(admit_address(None, Some(first), now).is_ok());
        assert!(admit_address(Some(&limit), None, now).is_ok());
    }

    fn tracked(limit: &ClientRateLimit) -> usize {
        limit.windows.lock().expect("lock").len()
    }

    /// A limit tracking `count` addresses whose windows started at `at`.
    fn limit_with_windows(count: u32, at: Instant) -> ClientRateLimit {
        let limit = ClientRateLimit::per_minute(5);
        for index in 0..count {
            limit.admit(IpAddr::V4(index.into()), at).expect("admitted");
        }
        limit
    }

    #[test]
    fn expired_windows_are_swept_only_above_the_threshold() {
        let start = Instant::now();
        let at_threshold = u32::try_from(SWEEP_THRESHOLD).expect("fits");
        let client: IpAddr = [192, 0, 2, 1].into();
        // Exactly at the threshold: nothing is swept yet.
        let limit = limit_with_windows(at_threshold, start);
        limit.admit(client, start + WINDOW).expect("admitted");
        assert_eq!(tracked(&limit), SWEEP_THRESHOLD + 1);
        // Above it: windows that are a whole WINDOW old go, younger ones stay.
        let limit = limit_with_windows(at_threshold + 1, start);
        limit.admit(client, start + WINDOW).expect("admitted");
        assert_eq!(tracked(&limit), 1);
        let limit = limit_with_windows(at_threshold + 1, start);
        limit
            .admit(client, start + WINDOW - Duration::from_millis(1))
            .expect("admitted");
        assert_eq!(tracked(&limit), SWEEP_THRESHOLD + 2);
        // Below it a young map is never swept either.
        let limit = limit_with_windows(3, start);
        limit.admit(client, start + WINDOW * 2).expect("admitted");
        assert_eq!(tracked(&limit), 4);
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

    #[test]
    fn a_lock_poisoned_by_a_panic_keeps_limiting() {
        let limit = ClientRateLimit::per_minute(1);
        let now = Instant::now();
        let client: IpAddr = [10, 0, 0, 1].into();
        assert!(limit.admit(client, now).is_ok());
        let panicked = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let _held = limit.windows.lock();
                    panic!("a panic while the windows are locked");
                })
                .join()
        });
        assert!(panicked.is_err() && limit.windows.is_poisoned());
        assert_eq!(limit.admit(client, now), Err(60));
    }
}
