//! Passwords: the parsed `Password` type and the bounded argon2id hashing pool.
//!
//! Each hash holds `memory_kib` of memory for tens of milliseconds, so hashing runs on a fixed
//! set of threads (one per worker) fed by a bounded queue. When the queue is full the caller is
//! told to come back later instead of the process piling up memory under a login flood.

use std::fmt;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::PasswordVerifier as _;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::metrics::HashPoolObserver;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// A password of acceptable length. Never printed, never serialised.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Accepts 8 to 128 characters, exactly as given (no trimming: spaces are characters).
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let length = input.chars().count();
        if length < MIN_PASSWORD_CHARS {
            return Err("must be at least 8 characters");
        }
        if length > MAX_PASSWORD_CHARS {
            return Err("must be at most 128 characters");
        }
        Ok(Password(input.to_owned()))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// argon2id cost parameters (`PASSWORD_HASH_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParameters {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashParameters {
    /// Checks the parameters against argon2's own limits.
    pub fn validate(&self) -> Result<(), String> {
        self.argon2_params().map(|_| ())
    }

    fn argon2_params(&self) -> Result<Params, String> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|error| format!("argon2 rejects these parameters: {error}"))
    }

    fn hasher(&self) -> Result<Argon2<'static>, String> {
        Ok(Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            self.argon2_params()?,
        ))
    }
}

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
        let dummy_password = Password(uuid::Uuid::new_v4().to_string());
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

/// One worker's argon2 memory, allocated on its first hash and reused for every later one.
/// Allocating 19 MiB per hash made the allocator keep freed blocks around, and resident
/// memory grew far past threads × memory cost under a login flood; allocating lazily keeps
/// an idle process small.
struct HashMemory {
    block_count: usize,
    blocks: Vec<Block>,
}

impl HashMemory {
    fn new(parameters: HashParameters) -> Self {
        HashMemory {
            block_count: parameters
                .argon2_params()
                .map_or(0, |params| params.block_count()),
            blocks: Vec::new(),
        }
    }

    fn blocks(&mut self) -> &mut [Block] {
        if self.blocks.len() != self.block_count {
            self.blocks = vec![Block::new(); self.block_count];
        }
        &mut self.blocks
    }
}

/// Length of the hashes we write (argon2's default output length).
const OUTPUT_LEN: usize = 32;
/// Length of the salts we draw.
const SALT_LEN: usize = 16;

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

fn failed(error: impl std::fmt::Display) -> HashingError {
    HashingError::Failed(error.to_string())
}

/// A new PHC string for `password` with a fresh random salt, hashed in `memory`.
fn hash(
    hasher: &Argon2<'static>,
    parameters: HashParameters,
    memory: &mut HashMemory,
    password: &Password,
) -> Result<String, HashingError> {
    let mut salt = [0u8; SALT_LEN];
    openssl::rand::rand_bytes(&mut salt).map_err(failed)?;
    let mut output = [0u8; OUTPUT_LEN];
    hasher
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut output, memory.blocks())
        .map_err(failed)?;
    let params = parameters.argon2_params().map_err(failed)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(failed)?,
        salt: Some(Salt::new(&salt).map_err(failed)?),
        hash: Some(Output::new(&output).map_err(failed)?),
    };
    Ok(phc.to_string())
}

fn verify(
    hasher: &Argon2<'static>,
    parameters: HashParameters,
    memory: &mut HashMemory,
    password: &Password,
    stored_hash: &str,
) -> Result<VerifyOutcome, HashingError> {
    let parsed = PasswordHash::new(stored_hash)
        .map_err(|error| HashingError::Failed(format!("stored hash is unreadable: {error}")))?;
    if !uses_parameters(&parsed, parameters) {
        // Older parameters: verify with them (allocating, rare), then upgrade the hash.
        let matches = hasher.verify_password(password.as_bytes(), &parsed).is_ok();
        let rehashed = if matches {
            Some(hash(hasher, parameters, memory, password)?)
        } else {
            None
        };
        return Ok(VerifyOutcome { matches, rehashed });
    }
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(HashingError::Failed(
            "stored hash lacks salt or output".to_owned(),
        ));
    };
    let mut output = vec![0u8; expected.len()];
    hasher
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut output, memory.blocks())
        .map_err(failed)?;
    // Constant time, so the comparison reveals nothing about how much of the hash matched.
    let matches = openssl::memcmp::eq(&output, expected.as_bytes());
    Ok(VerifyOutcome {
        matches,
        rehashed: None,
    })
}

/// Whether a stored hash is argon2id version 19 at exactly the configured parameters.
fn uses_parameters(parsed: &PasswordHash, parameters: HashParameters) -> bool {
    let is_argon2id = parsed.algorithm.as_str() == Algorithm::Argon2id.ident().as_str();
    let Ok(stored) = Params::try_from(parsed) else {
        return false;
    };
    let is_current_version = parsed.version == Some(Version::V0x13.into());
    is_argon2id
        && is_current_version
        && stored.m_cost() == parameters.memory_kib
        && stored.t_cost() == parameters.iterations
        && stored.p_cost() == parameters.parallelism
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    const CHEAP: HashParameters = HashParameters {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn password(text: &str) -> Password {
        Password::parse(text).expect("valid password")
    }

    #[test]
    fn password_length_is_counted_in_characters() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("ünïcödé!").is_ok());
        assert!(Password::parse(&"x".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", password("hunter2hunter2")),
            "Password(<redacted>)"
        );
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
