//! iam-jwks: publishes the public signing keys as a cached JWKS document so that any service
//! can verify IAM access tokens offline. It reads only public keys.

mod config;
mod document;
mod http;
mod key_cache;
mod metrics;
mod revocation_feed;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use iam_core::config::{ProcessConfig as _, Profile};
use iam_core::process::{self, ProcessError};
use sqlx::postgres::PgPoolOptions;

use crate::config::JwksConfig;
use crate::key_cache::KeyCache;

/// Publishes the IAM's public signing keys.
#[derive(Debug, Parser)]
#[command(name = "iam-jwks", version, about)]
struct Cli {
    /// Configuration profile: local works without any environment; stage and prod require
    /// POSTGRES_CONNECTION_STRING.
    #[arg(long, default_value = "local")]
    config: Profile,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    process::run_service(
        "iam-jwks",
        JwksConfig::from_env(cli.config),
        |config| &config.common,
        run,
    )
}

async fn run(config: JwksConfig) -> Result<(), ProcessError> {
    // iam-jwks only reads, and what it serves is cached and reloaded anyway: a read replica,
    // when configured, serves it all (keys, revocation feed, healthcheck).
    let options = match iam_core::database::read_connect_options(&config.database)
        .map_err(ProcessError::config)?
    {
        Some(replica) => replica,
        None => {
            iam_core::database::connect_options(&config.database).map_err(ProcessError::config)?
        }
    };
    // Lazy: the database may be away at start; the first load retries until it answers.
    let db = PgPoolOptions::new()
        .max_connections(config.database.pool_size)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options);
    let metrics = metrics::JwksMetrics::new();
    let cache = KeyCache::load_first(&db, Arc::clone(&metrics))
        .await
        .map_err(ProcessError::config)?;
    cache.spawn_reloader(db.clone(), config.refresh_interval);
    let feed = revocation_feed::FeedCache::new(Arc::clone(&metrics));
    // Built once before serving, so a started iam-jwks serves the feed at once; if the
    // database refuses now, the builder keeps trying (the feed answers 503 until then).
    feed.build_first(&db).await;
    feed.spawn_builder(db.clone());

    let drain = iam_core::server::Drain::default();
    let log = iam_core::server::RequestLog::new(
        metrics.http.clone(),
        iam_core::server::RouteLabel::Matched,
    )
    .with_env(config.common.env_label.clone())
    .logging(config.common.log_requests);
    let answer = http::answer(&config, cache, feed, db.clone(), metrics, drain.clone())
        .map_err(ProcessError::config)?;
    let port = iam_core::server::hyper_port::HyperPort::bind(
        &config.common.host,
        config.common.port,
        Some(iam_core::server::IDLE_CONNECTION_TIMEOUT),
        answer,
        log,
    )
    .await?;
    if let Ok(address) = port.local_addr() {
        tracing::info!(%address, env = %config.common.env_label, "iam-jwks listening");
    }
    iam_core::server::Serve::new(drain, config.common.shutdown_delay)
        .listen_hyper(port)
        .run(async move { db.close().await })
        .await;
    Ok(())
}
