//! The hashing pool: a fixed set of threads (one per worker) fed by a bounded queue.
//!
//! Each hash holds `memory_kib` of memory for tens of milliseconds. When the queue is full the
//! caller is told to come back later instead of the process piling up memory under a login
//! flood.

use std::fmt;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use argon2::Argon2;
use tokio::sync::oneshot;

use super::Password;
use super::hashing::{HashMemory, hash, verify};
use super::policy::HashParameters;
use crate::metrics::HashPoolObserver;

/// Why hashing did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    #[error("the password hashing queue is full")]
    Busy,
    #[error("the password hashing pool has stopped")]
    Stopped,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOutcome {
    pub matches: bool,
    /// A new hash at the current parameters, when the stored one used older ones.
    pub rehashed: Option<String>,
}

enum Work {
    Hash {
        password: Password,
        reply: oneshot::Sender<Result<String, HashingError>>,
    },
    Verify {
        password: Password,
        stored_hash: String,
        reply: oneshot::Sender<Result<VerifyOutcome, HashingError>>,
    },
}

struct Job {
    work: Work,
    queued_at: Instant,
}

/// A fixed pool of hashing threads behind a bounded queue. Cheap to clone.
#[derive(Clone)]
pub struct PasswordHasherPool {
    queue: SyncSender<Job>,
    observer: HashPoolObserver,
    /// A hash of a random password: unknown emails are verified against it so that they take
    /// as long as wrong passwords.
    dummy_hash: Arc<str>,
}

impl fmt::Debug for PasswordHasherPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasherPool").finish_non_exhaustive()
    }
}

impl PasswordHasherPool {
    /// Starts `threads` hashing threads sharing a queue of `queue_capacity` waiting jobs.
    pub fn start(
        parameters: HashParameters,
        threads: usize,
        queue_capacity: usize,
        observer: HashPoolObserver,
    ) -> Result<Self, String> {
        let hasher = parameters.hasher()?;
        let dummy_password = Password::random();
        let mut scratch = HashMemory::new(parameters);
        let dummy_hash = hash(&hasher, parameters, &mut scratch, &dummy_password)
            .map_err(|error| error.to_string())?;
        drop(scratch);
        let (queue, jobs) = sync_channel::<Job>(queue_capacity);
        let jobs = Arc::new(Mutex::new(jobs));
        for index in 0..threads.max(1) {
            let jobs = Arc::clone(&jobs);
            let hasher = hasher.clone();
            let observer = observer.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || run_worker(&hasher, parameters, &jobs, &observer))
                .map_err(|error| format!("cannot start a password hashing thread: {error}"))?;
        }
        Ok(PasswordHasherPool {
            queue,
            observer,
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Hashes a new password into a PHC string.
    #[tracing::instrument(name = "password hash", skip_all)]
    pub async fn hash(&self, password: Password) -> Result<String, HashingError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Work::Hash { password, reply })?;
        answer.await.map_err(|_| HashingError::Stopped)?
    }

    /// Checks `password` against `stored_hash`, or against the dummy hash when there is no
    /// account, so both cases cost one full hash.
    #[tracing::instrument(name = "password verify", skip_all)]
    pub async fn verify(
        &self,
        password: Password,
        stored_hash: Option<&str>,
    ) -> Result<VerifyOutcome, HashingError> {
        let known = stored_hash.is_some();
        let stored_hash = stored_hash.unwrap_or(&self.dummy_hash).to_owned();
        let (reply, answer) = oneshot::channel();
        self.submit(Work::Verify {
            password,
            stored_hash,
            reply,
        })?;
        let outcome = answer.await.map_err(|_| HashingError::Stopped)??;
        Ok(if known {
            outcome
        } else {
            VerifyOutcome {
                matches: false,
                rehashed: None,
            }
        })
    }

    fn submit(&self, work: Work) -> Result<(), HashingError> {
        self.observer.queued.inc();
        let job = Job {
            work,
            queued_at: Instant::now(),
        };
        self.queue.try_send(job).map_err(|error| {
            self.observer.queued.dec();
            match error {
                TrySendError::Full(_) => HashingError::Busy,
                TrySendError::Disconnected(_) => HashingError::Stopped,
            }
        })
    }
}

fn run_worker(
    hasher: &Argon2<'static>,
    parameters: HashParameters,
    jobs: &Mutex<Receiver<Job>>,
    observer: &HashPoolObserver,
) {
    let mut memory = HashMemory::new(parameters);
    loop {
        // Hold the lock only while taking a job, never while hashing.
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        observer.queued.dec();
        observer.waited(job.queued_at.elapsed().as_secs_f64());
        match job.work {
            Work::Hash { password, reply } => {
                let _ = reply.send(hash(hasher, parameters, &mut memory, &password));
            }
            Work::Verify {
                password,
                stored_hash,
                reply,
            } => {
                let outcome = verify(hasher, parameters, &mut memory, &password, &stored_hash);
                let _ = reply.send(outcome);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier as _;
    use argon2::password_hash::phc::PasswordHash;

    const CHEAP: HashParameters = HashParameters {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn password(text: &str) -> Password {
        Password::parse(text).expect("valid password")
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_with_the_configured_parameters() {
        let default = HashParameters {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        };
        let pool =
            PasswordHasherPool::start(default, 1, 4, HashPoolObserver::default()).expect("pool");
        let hash = pool.hash(password("correct horse")).await.expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
    }

    #[tokio::test]
    async fn verification_accepts_the_right_password_only() {
        let pool =
            PasswordHasherPool::start(CHEAP, 1, 4, HashPoolObserver::default()).expect("pool");
        let hash = pool.hash(password("correct horse")).await.expect("hash");
        let right = pool.verify(password("correct horse"), Some(&hash)).await;
        assert_eq!(
            right.expect("verify"),
            VerifyOutcome {
                matches: true,
                rehashed: None
            }
        );
        let wrong = pool.verify(password("wrong horse!"), Some(&hash)).await;
        assert!(!wrong.expect("verify").matches);
        let unknown = pool.verify(password("correct horse"), None).await;
        assert!(!unknown.expect("verify").matches);
    }

    #[tokio::test]
    async fn hashes_verify_with_the_reference_argon2_implementation() {
        let pool =
            PasswordHasherPool::start(CHEAP, 1, 4, HashPoolObserver::default()).expect("pool");
        let ours = pool.hash(password("correct horse")).await.expect("hash");
        let parsed = PasswordHash::new(&ours).expect("phc");
        let reference = CHEAP.hasher().expect("hasher");
        assert!(reference.verify_password(b"correct horse", &parsed).is_ok());
        assert!(reference.verify_password(b"wrong horse", &parsed).is_err());
        // And a hash made by the reference implementation verifies with ours.
        let theirs =
            argon2::password_hash::PasswordHasher::hash_password(&reference, b"correct horse")
                .expect("reference hash")
                .to_string();
        let outcome = pool
            .verify(password("correct horse"), Some(&theirs))
            .await
            .expect("verify");
        assert_eq!(
            outcome,
            VerifyOutcome {
                matches: true,
                rehashed: None
            }
        );
    }

    #[tokio::test]
    async fn a_hash_with_old_parameters_is_rehashed_on_login() {
        let old =
            PasswordHasherPool::start(CHEAP, 1, 4, HashPoolObserver::default()).expect("pool");
        let stored = old.hash(password("correct horse")).await.expect("hash");
        let stronger = HashParameters {
            memory_kib: 128,
            ..CHEAP
        };
        let pool =
            PasswordHasherPool::start(stronger, 1, 4, HashPoolObserver::default()).expect("pool");
        let outcome = pool
            .verify(password("correct horse"), Some(&stored))
            .await
            .expect("verify");
        assert!(outcome.matches);
        let rehashed = outcome.rehashed.expect("rehashed");
        assert!(rehashed.contains("m=128,"), "{rehashed}");
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_instead_of_growing() {
        let slow = HashParameters {
            memory_kib: 19_456,
            iterations: 4,
            parallelism: 1,
        };
        let pool =
            PasswordHasherPool::start(slow, 1, 1, HashPoolObserver::default()).expect("pool");
        let mut pending = Vec::new();
        let mut busy = 0;
        for _ in 0..8 {
            match pool.submit_for_test() {
                Ok(answer) => pending.push(answer),
                Err(HashingError::Busy) => busy += 1,
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert!(busy >= 6, "only {busy} of 8 were refused");
        for answer in pending {
            answer.await.expect("answer").expect("hash");
        }
    }

    impl PasswordHasherPool {
        fn submit_for_test(
            &self,
        ) -> Result<oneshot::Receiver<Result<String, HashingError>>, HashingError> {
            let (reply, answer) = oneshot::channel();
            self.submit(Work::Hash {
                password: password("queued password"),
                reply,
            })?;
            Ok(answer)
        }
    }
}
