//! iam-sidecar: a reverse proxy placed next to another service. It verifies Bearer tokens
//! locally against the IAM's JWKS and passes identity headers to the service.

mod admin;
mod config;
mod forward;
mod identity;
mod metrics;
mod proxy;
mod rules;
mod verifier;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use iam_core::config::{ProcessConfig as _, Profile};
use iam_core::process::{self, ProcessError};

use crate::config::{SidecarConfig, SidecarMode};
use crate::forward::UpstreamClient;
use crate::metrics::Metrics;
use crate::proxy::{Gate, Mode};
use crate::verifier::TokenVerifier;
use crate::verifier::revocation_feed::FeedPoller;

/// mimalloc instead of glibc's malloc: a forwarded request allocates and frees dozens of
/// small blocks (headers, bodies, futures), and glibc's allocator was 8 % of the sidecar's
/// CPU. Measured (bench/README.md, 2026-12-07 20:47): 11 % less CPU per request with one
/// token, 7 % with many; RSS +0.5 MiB idle, +2 MiB at peak. `no_thp`: without it mimalloc
/// asks for transparent huge pages, which cost 8 MiB of RSS at idle.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Verifying reverse proxy for one service.
#[derive(Debug, Parser)]
#[command(name = "iam-sidecar", version, about)]
struct Cli {
    /// Configuration profile (UPSTREAM_URL is required in every profile in proxy mode).
    #[arg(long, default_value = "local")]
    config: Profile,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    process::run_service(
        "iam-sidecar",
        SidecarConfig::from_env(cli.config),
        |config| &config.common,
        run,
    )
}

async fn run(config: SidecarConfig) -> Result<(), ProcessError> {
    let metrics = Arc::new(Metrics::default());
    let rules = config.verification_rules.clone();
    let verifier = Arc::new(
        TokenVerifier::new(
            config.jwks_url.clone(),
            config.jwks_refresh_interval,
            rules,
            Arc::clone(&metrics),
        )
        .map_err(|error| ProcessError::runtime(error.to_string()))?,
    );
    verifier.spawn_refresher();
    FeedPoller::new(
        config.revocations_url.clone(),
        config.revocation_refresh_interval,
        Arc::clone(&verifier),
    )
    .spawn();

    let gate = Gate {
        policy: config.policy,
        verifier: Arc::clone(&verifier),
        metrics: Arc::clone(&metrics),
        mode: match config.mode {
            SidecarMode::Proxy => Mode::Proxy(Box::new(UpstreamClient::new(
                &config.upstream_url,
                config.upstream_timeout,
                config.upstream_http2,
                Arc::clone(&metrics),
            ))),
            SidecarMode::Decision => Mode::Decision,
        },
    };
    let main_log = proxy::request_log(&metrics, config.common.log_requests);
    let drain = iam_core::server::Drain::default();
    let admin_service = admin::service(
        verifier,
        metrics,
        config.common.env_label.clone(),
        drain.clone(),
    );

    // No idle timeout on the main port: long polls and event streams pass through it (its
    // HTTP/2 connections are pinged instead).
    let main_port = iam_core::server::hyper_port::HyperPort::bind(
        &config.common.host,
        config.common.port,
        None,
        gate,
        main_log,
    )
    .await?;
    let admin_server = iam_core::server::bind(
        &config.common.host,
        config.admin_port,
        Some(iam_core::server::IDLE_CONNECTION_TIMEOUT),
    )
    .await?;
    if let Ok(address) = main_port.local_addr() {
        tracing::info!(
            %address,
            mode = ?config.mode,
            upstream = %config.upstream_url,
            upstream_http2 = config.upstream_http2,
            rules = config.rule_count,
            env = %config.common.env_label,
            "iam-sidecar listening"
        );
    }
    for holding in admin_server.holdings() {
        tracing::info!(address = %holding.local_addr, "admin endpoints listening");
    }
    iam_core::server::Serve::new(drain, config.common.shutdown_delay)
        .listen_hyper(main_port)
        .listen(admin_server, admin_service)
        .run(std::future::ready(()))
        .await;
    Ok(())
}
