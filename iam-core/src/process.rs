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

/// Runs `main` on a runtime with `worker_threads` workers, then exits 0, or with the error's
/// status and message. One worker is tokio's current-thread scheduler: everything runs on
/// the calling thread, which costs less per wake-up than a multi-threaded scheduler with one
/// worker (no hand-over between the main thread and the worker, no shared run queue): the
/// sidecar at its one worker spent about a quarter less CPU per forwarded request with it
/// (bench/README.md, 2026-12-07 13:33).
pub fn run<F>(name: &str, worker_threads: usize, main: F) -> ExitCode
where
    F: Future<Output = Result<(), ProcessError>>,
{
    let mut builder = if worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(worker_threads);
        builder
    };
    let runtime = match builder.enable_all().build() {
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::runtime::{Handle, RuntimeFlavor};

    use super::*;

    /// Runs `run` with `workers` and returns the flavour of runtime `main` ran on, and
    /// whether a task it spawned ran on the thread that called `run`.
    fn runtime_of(workers: usize) -> (RuntimeFlavor, bool) {
        let seen = Arc::new(Mutex::new(None));
        let seen_in_main = Arc::clone(&seen);
        let caller = std::thread::current().id();
        let code = run("test", workers, async move {
            let flavor = Handle::current().runtime_flavor();
            let spawned_on = tokio::spawn(async { std::thread::current().id() })
                .await
                .map_err(|error| ProcessError::runtime(error.to_string()))?;
            *seen_in_main.lock().expect("lock") = Some((flavor, spawned_on == caller));
            Ok(())
        });
        assert_eq!(code, ExitCode::SUCCESS);
        let seen = seen.lock().expect("lock").take();
        seen.expect("main ran")
    }

    #[test]
    fn one_worker_runs_every_task_on_the_calling_thread() {
        assert_eq!(runtime_of(1), (RuntimeFlavor::CurrentThread, true));
        // 0 is refused by the configuration; were it to reach here, it means one thread too.
        assert_eq!(runtime_of(0), (RuntimeFlavor::CurrentThread, true));
    }

    #[test]
    fn more_workers_run_tasks_on_worker_threads() {
        assert_eq!(runtime_of(2), (RuntimeFlavor::MultiThread, false));
    }

    #[test]
    fn an_error_from_main_becomes_its_exit_status() {
        let code = run("test", 1, async { Err(ProcessError::config("bad")) });
        assert_eq!(code, ExitCode::from(2));
        let code = run("test", 2, async { Err(ProcessError::runtime("down")) });
        assert_eq!(code, ExitCode::from(1));
    }
}
