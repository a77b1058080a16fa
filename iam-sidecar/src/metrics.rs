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
    KeysUnavailable,
    BadPath,
    /// Refused with 400 for its headers: more than one `Authorization`, or a method
    /// override that is not a method.
    BadRequest,
}

const OUTCOMES: [(Outcome, &str); 7] = [
    (Outcome::Forwarded, "forwarded"),
    (Outcome::ForwardedPublic, "forwarded_public"),
    (Outcome::Unauthenticated, "unauthenticated"),
    (Outcome::Forbidden, "forbidden"),
    (Outcome::KeysUnavailable, "keys_unavailable"),
    (Outcome::BadPath, "bad_path"),
    (Outcome::BadRequest, "bad_request"),
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
        // The shared HTTP series; their encoding ends with the closing `# EOF`.
        out.push_str(&render(&self.registry));
        out
    }
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
        let text = metrics.render();
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
