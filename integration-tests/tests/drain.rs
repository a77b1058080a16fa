//! Rolling updates lose nothing: after SIGTERM each process drains for `SHUTDOWN_DELAY`
//! (readiness 503, requests still accepted and served), then stops and exits 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use integration_tests::sidecar::stack_with;
use integration_tests::{ServiceProcess, eventually};
use serde_json::Value;

const DELAY_SECONDS: u64 = 4;
/// Clients stop this long after the signal: well inside the delay, so every request they
/// send must succeed however slow the machine is at that moment.
const CLIENTS_STOP_AFTER: Duration = Duration::from_secs(2);
const CLIENTS_PER_PROCESS: usize = 3;

/// A client sending `request`s one after another, each on a new connection (so the
/// listener must still accept), until `stop`; returns every status it got and any error.
fn client(
    url: String,
    token: Option<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let mut answered = 0;
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut request = http.get(&url);
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(response) if response.status() == 200 => answered += 1,
                Ok(response) => failures.push(format!("{url}: {}", response.status())),
                Err(error) => failures.push(format!("{url}: {error}")),
            }
        }
        (answered, failures)
    })
}

async fn readiness(process: &ServiceProcess) -> (u16, String) {
    let response = reqwest::get(&process.health_url).await.expect("readiness");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json");
    (
        status,
        body["status"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn every_process_drains_after_sigterm_and_loses_no_request() {
    let delay = DELAY_SECONDS.to_string();
    let mut stack = stack_with(|sidecar| sidecar.env("SHUTDOWN_DELAY", delay.as_str())).await;
    // The stack's api and jwks run with the local default (no delay); start drained ones.
    let mut api = ServiceProcess::builder(&stack.db)
        .env("SHUTDOWN_DELAY", delay.as_str())
        .start()
        .await;
    let mut jwks = ServiceProcess::jwks_builder(&stack.db)
        .env("SHUTDOWN_DELAY", delay.as_str())
        .start()
        .await;
    let (_, token) = api.user_with_token("drain@example.com").await;
    for process in [&api, &jwks, &stack.sidecar] {
        assert_eq!(readiness(process).await, (200, "ok".to_owned()));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS_PER_PROCESS {
        clients.push(client(
            api.url("/api/v1/me"),
            Some(token.clone()),
            Arc::clone(&stop),
        ));
        clients.push(client(
            jwks.url("/.well-known/jwks.json"),
            None,
            Arc::clone(&stop),
        ));
        clients.push(client(
            stack.sidecar.url("/orders"),
            Some(stack.token.clone()),
            Arc::clone(&stop),
        ));
    }
    // Traffic flows before the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    api.terminate();
    jwks.terminate();
    stack.sidecar.terminate();

    for process in [&api, &jwks, &stack.sidecar] {
        eventually(
            Duration::from_secs(2),
            "readiness says draining",
            || async { readiness(process).await == (503, "draining".to_owned()) },
        )
        .await;
    }
    tokio::time::sleep(CLIENTS_STOP_AFTER.saturating_sub(signalled.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    let mut answered = 0;
    for client in clients {
        let (count, failed) = client.await.expect("client task");
        answered += count;
        failures.extend(failed);
    }
    assert!(
        failures.is_empty(),
        "requests failed while draining: {failures:?}"
    );
    assert!(answered > 0);
    assert!(
        signalled.elapsed() < Duration::from_secs(DELAY_SECONDS),
        "the clients ran past the delay ({:?}); the check is void",
        signalled.elapsed()
    );

    for process in [&mut api, &mut jwks, &mut stack.sidecar] {
        let status = process.wait(Duration::from_secs(40)).await;
        assert!(status.success(), "{status}: {}", process.logs());
        assert!(
            process.logs().contains("draining"),
            "the drain is logged: {}",
            process.logs()
        );
    }
    assert!(
        signalled.elapsed() >= Duration::from_secs(DELAY_SECONDS),
        "a process stopped before its delay was over"
    );
}

#[tokio::test]
async fn without_a_delay_the_process_stops_at_once_and_a_second_signal_ends_a_drain() {
    let db = integration_tests::TestDatabase::create().await;
    // The api creates the schema and the first key that iam-jwks publishes.
    let _api = ServiceProcess::start(&db).await;
    let mut quick = ServiceProcess::jwks_builder(&db).start().await;
    quick.terminate();
    let status = quick.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");

    let mut long = ServiceProcess::jwks_builder(&db)
        .env("SHUTDOWN_DELAY", "300")
        .start()
        .await;
    long.terminate();
    eventually(Duration::from_secs(5), "the drain has begun", || async {
        long.logs().contains("draining")
    })
    .await;
    long.terminate();
    let status = long.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");
    assert!(long.logs().contains("ending the drain early"));
}
