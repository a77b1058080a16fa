//! How every binary runs: configuration errors exit 2 with one line, the async runtime gets
//! the configured worker threads, and a failure becomes an exit status and a message.

use std::future::Future;
use std::process::ExitCode;

/// Why a process stopped with an error, and with which exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessError {
    pub code: u8,
    pub message: String,
}

impl ProcessError {
    /// Wrong configuration or input: exit status 2.
    pub fn config(message: impl Into<String>) -> Self {
        ProcessError {
            code: 2,
            message: message.into(),
        }
    }

    /// Anything else (a dependency down, a port taken): exit status 1.
    pub fn runtime(message: impl Into<String>) -> Self {
        ProcessError {
            code: 1,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ProcessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProcessError {}

/// Prints `error` as `name: message` on stderr and returns its exit status.
pub fn exit_with(name: &str, error: &ProcessError) -> ExitCode {
    eprintln!("{name}: {}", error.message);
    ExitCode::from(error.code)
}

/// Runs `main` on a multi-threaded runtime with `worker_threads` workers, then exits 0, or
/// with the error's status and message.
pub fn run<F>(name: &str, worker_threads: usize, main: F) -> ExitCode
where
    F: Future<Output = Result<(), ProcessError>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let error = ProcessError::runtime(format!("cannot start the async runtime: {error}"));
            return exit_with(name, &error);
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => exit_with(name, &error),
    }
}

/// The whole `main` of a service binary: `config` (its error exits 2 with one line), then
/// logging and tracing set up from its [`CommonSettings`](crate::config::CommonSettings),
/// then `main` on a runtime with the configured workers; the exporters are flushed before
/// the exit status is returned.
#[cfg(feature = "telemetry")]
pub fn run_service<C, M, F>(
    name: &'static str,
    config: Result<C, String>,
    common: fn(&C) -> &crate::config::CommonSettings,
    main: M,
) -> ExitCode
where
    M: FnOnce(C) -> F,
    F: Future<Output = Result<(), ProcessError>>,
{
    let config = match config {
        Ok(config) => config,
        Err(message) => return exit_with(name, &ProcessError::config(message)),
    };
    let settings = common(&config);
    let telemetry = crate::telemetry::init(settings.log_format, name, &settings.env_label);
    let workers = settings.worker_count;
    let code = run(name, workers, main(config));
    telemetry.shutdown();
    code
}
