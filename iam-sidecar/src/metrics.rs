//! The sidecar's counters, rendered in the Prometheus text format on the admin port.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use iam_core::Reason;
use iam_core::metrics::{HttpMetrics, Registry, render};

/// Every reason a token can be refused, in a fixed order for the metric labels.
const REASONS: [Reason; Reason::ALL.len()] = Reason::ALL;

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Forwarded,
    ForwardedPublic,
    Unauthenticated,
    Forbidden,
    /// 503: the key set or the revocation feed has not loaded yet.
    NotReady,
    BadPath,
    /// Refused with 400 for its headers: more than one `Authorization`, or a method
    /// override that is not a method (or, in decision mode, an unclear question).
    BadRequest,
    /// Decision mode: answered 200 with the identity headers.
    Allowed,
    /// Decision mode: answered 200 for a public path.
    AllowedPublic,
}

const OUTCOMES: [(Outcome, &str); 9] = [
    (Outcome::Forwarded, "forwarded"),
    (Outcome::ForwardedPublic, "forwarded_public"),
    (Outcome::Unauthenticated, "unauthenticated"),
    (Outcome::Forbidden, "forbidden"),
    (Outcome::NotReady, "not_ready"),
    (Outcome::BadPath, "bad_path"),
    (Outcome::BadRequest, "bad_request"),
    (Outcome::Allowed, "allowed"),
    (Outcome::AllowedPublic, "allowed_public"),
];

/// Why the upstream did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    Unreachable,
    Timeout,
}

/// Counters shared by the proxy, the verifier and the admin endpoint.
#[derive(Debug)]
pub struct Metrics {
    /// Request count and latency (the shared HTTP series), in a registry of their own.
    pub http: HttpMetrics,
    registry: Registry,
    outcomes: [AtomicU64; OUTCOMES.len()],
    rejections: [AtomicU64; REASONS.len()],
    upstream_unreachable: AtomicU64,
    upstream_timeout: AtomicU64,
    jwks_refresh_failures: AtomicU64,
    jwks_refreshes: AtomicU64,
    jwks_keys: AtomicU64,
    revocation_feed_checks: AtomicU64,
    revocation_feed_failures: AtomicU64,
    /// Unix milliseconds of the last successful poll; 0 before the first.
    revocation_feed_checked_at: AtomicU64,
    revoked_subjects: AtomicU64,
    revoked_tokens: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        Metrics {
            http,
            registry,
            outcomes: Default::default(),
            rejections: Default::default(),
            upstream_unreachable: AtomicU64::default(),
            upstream_timeout: AtomicU64::default(),
            jwks_refresh_failures: AtomicU64::default(),
            jwks_refreshes: AtomicU64::default(),
            jwks_keys: AtomicU64::default(),
            revocation_feed_checks: AtomicU64::default(),
            revocation_feed_failures: AtomicU64::default(),
            revocation_feed_checked_at: AtomicU64::default(),
            revoked_subjects: AtomicU64::default(),
            revoked_tokens: AtomicU64::default(),
        }
    }
}

impl Metrics {
    /// Counts a request's outcome.
    pub fn outcome(&self, outcome: Outcome) {
        if let Some(index) = OUTCOMES.iter().position(|(known, _)| *known == outcome) {
            self.outcomes[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a refused token by reason.
    pub fn rejection(&self, reason: Reason) {
        if let Some(index) = REASONS.iter().position(|known| *known == reason) {
            self.rejections[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an upstream failure.
    pub fn upstream_failure(&self, failure: UpstreamFailure) {
        match failure {
            UpstreamFailure::Unreachable => &self.upstream_unreachable,
            UpstreamFailure::Timeout => &self.upstream_timeout,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Records a JWKS fetch: success with the number of keys, or failure.
    pub fn jwks_refresh(&self, keys: Option<usize>) {
        match keys {
            Some(count) => {
                self.jwks_refreshes.fetch_add(1, Ordering::Relaxed);
                self.jwks_keys.store(count as u64, Ordering::Relaxed);
            }
            None => {
                self.jwks_refresh_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records a successful poll of the revocation feed (a new copy or a 304).
    pub fn revocation_feed_checked(&self) {
        self.revocation_feed_checks.fetch_add(1, Ordering::Relaxed);
        self.revocation_feed_checked_at
            .store(unix_millis(), Ordering::Relaxed);
    }

    /// Records a failed poll of the revocation feed.
    pub fn revocation_feed_failed(&self) {
        self.revocation_feed_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Records the size of the revocations in force.
    pub fn revoked_entries(&self, subjects: usize, tokens: usize) {
        self.revoked_subjects
            .store(subjects as u64, Ordering::Relaxed);
        self.revoked_tokens.store(tokens as u64, Ordering::Relaxed);
    }

    /// Seconds since the last successful poll of the revocation feed; `None` before one.
    pub fn revocation_feed_age_seconds(&self) -> Option<f64> {
        let checked_at = self.revocation_feed_checked_at.load(Ordering::Relaxed);
        (checked_at > 0).then(|| unix_millis().saturating_sub(checked_at) as f64 / 1000.0)
    }

    /// The OpenMetrics text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        out.push_str("# HELP iam_sidecar_requests Requests by outcome.\n");
        out.push_str("# TYPE iam_sidecar_requests counter\n");
        for ((_, label), counter) in OUTCOMES.iter().zip(&self.outcomes) {
            let _ = writeln!(
                out,
                "iam_sidecar_requests_total{{outcome=\"{label}\"}} {}",
                load(counter)
            );
        }
        out.push_str("# HELP iam_sidecar_token_rejections Refused access tokens by reason.\n");
        out.push_str("# TYPE iam_sidecar_token_rejections counter\n");
        for (reason, counter) in REASONS.iter().zip(&self.rejections) {
            let _ = writeln!(
                out,
                "iam_sidecar_token_rejections_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                load(counter)
            );
        }
        out.push_str("# HELP iam_sidecar_upstream_errors Upstream requests that failed.\n");
        out.push_str("# TYPE iam_sidecar_upstream_errors counter\n");
        let _ = writeln!(
            out,
            "iam_sidecar_upstream_errors_total{{kind=\"unreachable\"}} {}",
            load(&self.upstream_unreachable)
        );
        let _ = writeln!(
            out,
            "iam_sidecar_upstream_errors_total{{kind=\"timeout\"}} {}",
            load(&self.upstream_timeout)
        );
        out.push_str("# HELP iam_sidecar_jwks_refreshes Successful JWKS fetches.\n");
        out.push_str("# TYPE iam_sidecar_jwks_refreshes counter\n");
        let _ = writeln!(
            out,
            "iam_sidecar_jwks_refreshes_total {}",
            load(&self.jwks_refreshes)
        );
        out.push_str("# HELP iam_sidecar_jwks_refresh_failures Failed JWKS fetches.\n");
        out.push_str("# TYPE iam_sidecar_jwks_refresh_failures counter\n");
        let _ = writeln!(
            out,
            "iam_sidecar_jwks_refresh_failures_total {}",
            load(&self.jwks_refresh_failures)
        );
        out.push_str("# HELP iam_sidecar_jwks_keys Keys in the current verification set.\n");
        out.push_str("# TYPE iam_sidecar_jwks_keys gauge\n");
        let _ = writeln!(out, "iam_sidecar_jwks_keys {}", load(&self.jwks_keys));
        out.push_str(
            "# HELP iam_sidecar_revocation_feed_checks Successful polls of the revocation feed.\n",
        );
        out.push_str("# TYPE iam_sidecar_revocation_feed_checks counter\n");
        let _ = writeln!(
            out,
            "iam_sidecar_revocation_feed_checks_total {}",
            load(&self.revocation_feed_checks)
        );
        out.push_str(
            "# HELP iam_sidecar_revocation_feed_failures Failed polls of the revocation feed.\n",
        );
        out.push_str("# TYPE iam_sidecar_revocation_feed_failures counter\n");
        let _ = writeln!(
            out,
            "iam_sidecar_revocation_feed_failures_total {}",
            load(&self.revocation_feed_failures)
        );
        if let Some(age) = self.revocation_feed_age_seconds() {
            out.push_str("# HELP iam_sidecar_revocation_feed_age_seconds Seconds since the revocation feed was last polled successfully.\n");
            out.push_str("# TYPE iam_sidecar_revocation_feed_age_seconds gauge\n");
            let _ = writeln!(out, "iam_sidecar_revocation_feed_age_seconds {age}");
        }
        out.push_str("# HELP iam_sidecar_revoked_subjects Subject cut-offs in force.\n");
        out.push_str("# TYPE iam_sidecar_revoked_subjects gauge\n");
        let _ = writeln!(
            out,
            "iam_sidecar_revoked_subjects {}",
            load(&self.revoked_subjects)
        );
        out.push_str("# HELP iam_sidecar_revoked_tokens Single revoked token ids in force.\n");
        out.push_str("# TYPE iam_sidecar_revoked_tokens gauge\n");
        let _ = writeln!(
            out,
            "iam_sidecar_revoked_tokens {}",
            load(&self.revoked_tokens)
        );
        // The shared HTTP series; their encoding ends with the closing `# EOF`.
        out.push_str(&render(&self.registry));
        out
    }
}

/// Unix milliseconds now.
fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_rendered_with_their_labels() {
        let metrics = Metrics::default();
        metrics.outcome(Outcome::Forwarded);
        metrics.rejection(Reason::Expired);
        metrics.rejection(Reason::Expired);
        metrics.upstream_failure(UpstreamFailure::Timeout);
        metrics.jwks_refresh(Some(2));
        assert!(!metrics.render().contains("revocation_feed_age"));
        metrics.revocation_feed_checked();
        metrics.revoked_entries(3, 1);
        let text = metrics.render();
        assert!(text.contains("iam_sidecar_revocation_feed_checks_total 1"));
        assert!(text.contains("iam_sidecar_revocation_feed_age_seconds "));
        assert!(text.contains("iam_sidecar_revoked_subjects 3"));
        assert!(text.contains("iam_sidecar_revoked_tokens 1"));
        assert!(text.contains("iam_sidecar_requests_total{outcome=\"forwarded\"} 1"));
        assert!(text.contains("iam_sidecar_token_rejections_total{reason=\"expired\"} 2"));
        assert!(text.contains("iam_sidecar_upstream_errors_total{kind=\"timeout\"} 1"));
        assert!(text.contains("iam_sidecar_jwks_keys 2"));
        assert!(text.contains("# TYPE iam_sidecar_requests counter"));
        assert!(text.ends_with("# EOF\n"));
    }

    /// The backticked names listed after the colon on the README line that starts with
    /// `prefix`, in order, up to any parenthesised remark.
    fn readme_list(prefix: &str) -> Vec<&'static str> {
        let readme = include_str!("../../README.md");
        let line = readme
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("README has no line starting {prefix:?}"));
        let (_, list) = line.split_once(':').unwrap_or(("", line));
        let list = list.split(" (").next().unwrap_or(list);
        list.split('`').skip(1).step_by(2).collect()
    }

    #[test]
    fn the_readme_lists_every_label_value_in_order() {
        let reasons: Vec<&str> = REASONS.iter().map(|reason| reason.as_str()).collect();
        assert_eq!(readme_list("**Token refusal reasons**"), reasons);
        let outcomes: Vec<&str> = OUTCOMES.iter().map(|(_, label)| *label).collect();
        assert_eq!(readme_list("**Sidecar outcomes**"), outcomes);
    }
}
