//! The database connections every request and task borrows: sqlx's pool underneath, with
//! connections handed back without a round trip.
//!
//! sqlx tests every connection a holder drops with a round trip to PostgreSQL (`Sync`, then
//! wait for `ReadyForQuery`) before another holder may take it. For a request that sends one
//! statement that is a second round trip: it doubled PostgreSQL's wake-ups and cost `GET
//! /me` a quarter of its throughput (bench/README.md). [`Database`] keeps the connections its
//! holders give back in a list of its own and hands them out again untested, because the test
//! proves nothing that the next statement does not prove anyway:
//! - sqlx's PostgreSQL connection begins every statement by finishing whatever exchange its
//!   last holder left (a future dropped mid-query, a transaction dropped without commit
//!   whose `ROLLBACK` is queued), so a connection needs no clean-up on the way back;
//! - a connection whose last exchange did not finish (its socket failed) is taken through
//!   [`CONNECTION_CHECK`] on the way out: finishing the exchange fails there, and the
//!   connection goes back to sqlx, which tests and closes it, instead of to a request;
//! - a connection idle for [`IDLE_BEFORE_PING`] or more (PostgreSQL or the network may have
//!   dropped it) is pinged before use, as iam-api has sqlx do for the idle connections it holds;
//! - one held for [`RETURN_TO_SQLX_AFTER`] goes back through sqlx, so that its pool applies
//!   its lifetime and idle rules.
//!
//! When the server behind the connections is replaced (a failover), the connections to the
//! old one are useless: gone, or read-only when they lead to a standby or a demoted primary.
//! A transaction finds out: its `BEGIN` fails for want of a server, or, dropped open (the
//! error path), its `ROLLBACK` fails or the server answers that it is in recovery. Then [`Database::retire_connections`]
//! closes every connection opened before that moment (those resting at once, the lent ones
//! when they are given back, those idle in sqlx's pool when sqlx would hand them out), so
//! that the next ones are opened afresh, to whichever server now answers at the address.
//! The retirement instant and that rollback are in `database/retirement.rs`.
//!
//! Holders wait for a connection in one first-come, first-served queue of [`Database`]'s own
//! (a permit per connection the pool may open): with two queues, those waiting in sqlx's
//! would starve while connections went round through the list. For the same reason every
//! database access of the running service goes through one [`Database`]: connections
//! resting in its list are lent out from sqlx's point of view, so code taking connections
//! from the sqlx pool directly would wait behind them.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres};

use super::retirement::{AfterRollback, Retirement, roll_back};

/// A connection idle at least this long is pinged before it is handed out.
pub const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);
/// How long the check of a connection on its way out may take before the connection is
/// given up (PostgreSQL or the network stopped answering).
pub const CONNECTION_CHECK: Duration = Duration::from_secs(3);
/// How long a connection stays out of sqlx's hands before it goes back through them.
pub const RETURN_TO_SQLX_AFTER: Duration = Duration::from_secs(60);

/// What a [`Database`] is for: writes need a primary, so a primary's connections that lead to
/// a server in recovery are retired; a read replica is in recovery by design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The read-write server (`POSTGRES_CONNECTION_STRING`).
    Primary,
    /// A read-only replica (`POSTGRES_READ_CONNECTION_STRING`).
    Replica,
}

/// How many connections a [`Database`] may open and how long a holder waits for one.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long [`Database::acquire`] waits before answering `PoolTimedOut`.
    pub acquire_timeout: Duration,
    pub role: Role,
}

/// The service's database: every statement runs on a connection from [`Database::acquire`].
/// Cheap to clone.
#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

struct Shared {
    pool: PgPool,
    /// One permit per connection the pool may open; a holder keeps one while it holds a
    /// connection. Waiters are served in the order they came. Closed by
    /// [`Database::close`]: connections given back from then on go to sqlx.
    permits: Arc<Semaphore>,
    /// Connections given back, the most recently used last (handed out first: a warm
    /// connection and its backend stay in the CPU caches).
    resting: Mutex<Vec<Resting>>,
    /// Connections opened before this instant are closed instead of lent.
    retirement: Arc<Retirement>,
    role: Role,
}

/// A connection given back and when.
struct Resting {
    connection: PoolConnection<Postgres>,
    taken_from_sqlx: Instant,
    since: Instant,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("pool", &self.shared.pool)
            .field("resting", &self.resting_len())
            .finish()
    }
}

impl Database {
    /// Connects to `options` (one connection now, to fail early) with a pool of its own.
    pub async fn connect(
        options: PgConnectOptions,
        settings: PoolSettings,
    ) -> Result<Self, sqlx::Error> {
        let retirement = Arc::new(Retirement::default());
        let pool = pool_options(settings, &retirement)
            .connect_with(options)
            .await?;
        Ok(Self::lending(pool, retirement, settings.role))
    }

    /// [`Self::connect`] without connecting yet: the first holder does (for a server that
    /// may be away when the process starts).
    pub fn connect_lazy(options: PgConnectOptions, settings: PoolSettings) -> Self {
        let retirement = Arc::new(Retirement::default());
        let pool = pool_options(settings, &retirement).connect_lazy_with(options);
        Self::lending(pool, retirement, settings.role)
    }

    fn lending(pool: PgPool, retirement: Arc<Retirement>, role: Role) -> Self {
        let connections = usize::try_from(pool.options().get_max_connections()).unwrap_or(1);
        Database {
            shared: Arc::new(Shared {
                permits: Arc::new(Semaphore::new(connections)),
                pool,
                resting: Mutex::new(Vec::new()),
                retirement,
                role,
            }),
        }
    }

    /// Closes every connection opened before now, as they come back (see the module
    /// documentation): after a failover they lead to a server that is gone or read-only.
    pub fn retire_connections(&self) {
        self.shared.retire_connections();
    }

    /// A connection for one request or task; dropping it gives it back. Waits at most the
    /// pool's acquire timeout (then `PoolTimedOut`, as sqlx answers).
    pub async fn acquire(&self) -> Result<Connection, sqlx::Error> {
        let timeout = self.shared.pool.options().get_acquire_timeout();
        let permits = Arc::clone(&self.shared.permits);
        let permit = match tokio::time::timeout(timeout, permits.acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(sqlx::Error::PoolClosed),
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
        };
        loop {
            let Some(resting) = self.shared.take_resting() else {
                // Holding a permit, with none resting: sqlx has a connection for us, or room
                // to open one, unless one is on its way back to it (and then it comes soon).
                let connection = self.shared.pool.acquire().await?;
                return Ok(Connection::new(
                    connection,
                    Instant::now(),
                    permit,
                    &self.shared,
                ));
            };
            let Resting {
                mut connection,
                taken_from_sqlx,
                since,
            } = resting;
            if self.shared.retirement.covers(taken_from_sqlx) {
                connection.close_on_drop();
                continue;
            }
            if ready_for_use(&mut connection, since.elapsed()).await {
                return Ok(Connection::new(
                    connection,
                    taken_from_sqlx,
                    permit,
                    &self.shared,
                ));
            }
            // sqlx tests it again and closes it: a broken connection never reaches a request.
            drop(connection);
        }
    }

    /// A transaction on a connection of its own (see [`Transaction`]).
    pub async fn begin(&self) -> Result<Transaction, sqlx::Error> {
        let mut connection = self.acquire().await?;
        if let Err(error) = sqlx::raw_sql("BEGIN").execute(&mut *connection).await {
            if crate::database::is_unavailable(&error) {
                // A connection that cannot even begin (its server gone or shutting down):
                // the others lead to the same server.
                connection.discard();
                self.shared.retire_connections();
            }
            return Err(error);
        }
        Ok(Transaction {
            connection,
            open: true,
        })
    }

    /// Connections open (lent out, resting here, or idle in sqlx's pool).
    pub fn size(&self) -> u32 {
        self.shared.pool.size()
    }

    /// Connections not lent out.
    pub fn num_idle(&self) -> usize {
        self.shared.pool.num_idle() + self.resting_len()
    }

    /// Closes every connection: those resting now, and the others as they are given back.
    pub async fn close(&self) {
        self.shared.permits.close();
        let resting = std::mem::take(&mut *self.shared.resting());
        drop(resting);
        self.shared.pool.close().await;
    }

    fn resting_len(&self) -> usize {
        self.shared.resting().len()
    }
}

impl Shared {
    fn resting(&self) -> MutexGuard<'_, Vec<Resting>> {
        // The list stays consistent whatever a panicking holder did: push and pop only.
        self.resting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_resting(&self) -> Option<Resting> {
        self.resting().pop()
    }

    fn retire_connections(&self) {
        self.retirement.now();
        let resting = std::mem::take(&mut *self.resting());
        for mut resting in resting {
            resting.connection.close_on_drop();
        }
        tracing::warn!(
            "closing every database connection opened so far: the server behind them is gone \
             or read-only (a failover?); new connections go to whichever server answers now"
        );
    }

    fn give_back(&self, mut connection: PoolConnection<Postgres>, taken_from_sqlx: Instant) {
        if self.retirement.covers(taken_from_sqlx) {
            connection.close_on_drop();
            return;
        }
        // A transaction of sqlx's own that was dropped open has queued its ROLLBACK without
        // sending it: sqlx's test on the way back sends it at once, so that no lock stays
        // held while the connection rests.
        let back_to_sqlx = self.permits.is_closed()
            || connection.is_in_transaction()
            || connection.should_flush()
            || taken_from_sqlx.elapsed() >= RETURN_TO_SQLX_AFTER;
        if back_to_sqlx {
            // Dropping a pooled connection gives it to sqlx, which tests it, then keeps or
            // closes it by its own rules.
            drop(connection);
            return;
        }
        self.resting().push(Resting {
            connection,
            taken_from_sqlx,
            since: Instant::now(),
        });
    }
}

/// sqlx's pool options for a [`Database`]: its own release test is off, since [`Database`]
/// does without it; its acquire test pings only a connection that sat idle (where PostgreSQL
/// or the network may have dropped it) and closes one opened before the last retirement.
fn pool_options(settings: PoolSettings, retirement: &Arc<Retirement>) -> PgPoolOptions {
    let retirement = Arc::clone(retirement);
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(move |connection, metadata| {
            let retirement = Arc::clone(&retirement);
            Box::pin(async move {
                let opened = Instant::now().checked_sub(metadata.age);
                if opened.is_some_and(|opened| retirement.covers(opened)) {
                    // `false`: sqlx closes it and opens another.
                    return Ok(false);
                }
                if metadata.idle_for >= IDLE_BEFORE_PING {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Whether a connection given back `idle` ago may be handed out: whatever exchange its last
/// holder left unfinished is finished (at no cost when there is none), and one that rested
/// long is pinged.
async fn ready_for_use(connection: &mut PgConnection, idle: Duration) -> bool {
    let check = async {
        // `flush` is sqlx's "wait until ready": it sends what is queued (a dropped
        // transaction's ROLLBACK) and reads the answers still owed to the last holder.
        connection.flush().await?;
        if idle >= IDLE_BEFORE_PING {
            connection.ping().await?;
        }
        Ok::<(), sqlx::Error>(())
    };
    matches!(
        tokio::time::timeout(CONNECTION_CHECK, check).await,
        Ok(Ok(()))
    )
}

/// A connection lent by [`Database::acquire`]: use it as `&mut *connection` wherever sqlx
/// takes an executor. Dropping it gives it back.
pub struct Connection {
    connection: Option<PoolConnection<Postgres>>,
    taken_from_sqlx: Instant,
    /// Released after the connection is given back (fields drop after `Drop::drop`), so
    /// that the next waiter finds it resting.
    permit: Option<OwnedSemaphorePermit>,
    home: Arc<Shared>,
}

impl Connection {
    fn new(
        connection: PoolConnection<Postgres>,
        taken_from_sqlx: Instant,
        permit: OwnedSemaphorePermit,
        home: &Arc<Shared>,
    ) -> Self {
        Connection {
            connection: Some(connection),
            taken_from_sqlx,
            permit: Some(permit),
            home: Arc::clone(home),
        }
    }
}

impl Connection {
    /// Closes the connection instead of giving it back.
    fn discard(mut self) {
        if let Some(mut connection) = self.connection.take() {
            connection.close_on_drop();
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Deref for Connection {
    type Target = PgConnection;

    #[allow(clippy::expect_used)] // present from construction until drop
    fn deref(&self) -> &PgConnection {
        self.connection.as_ref().expect("a lent connection")
    }
}

impl DerefMut for Connection {
    #[allow(clippy::expect_used)] // present from construction until drop
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.connection.as_mut().expect("a lent connection")
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.home.give_back(connection, self.taken_from_sqlx);
        }
    }
}

/// A transaction from [`Database::begin`]: use it as `&mut *tx` wherever sqlx takes an
/// executor, then [`Self::commit`] or [`Self::rollback`]. One dropped open (an error returned
/// with `?`, a request abandoned by its client) is rolled back at once by a task of its own,
/// so that its locks are released before its connection is lent again.
#[derive(Debug)]
pub struct Transaction {
    connection: Connection,
    open: bool,
}

impl Transaction {
    /// Makes the transaction's changes durable.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql("COMMIT")
            .execute(&mut *self.connection)
            .await?;
        self.open = false;
        Ok(())
    }

    /// Discards the transaction's changes.
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut *self.connection)
            .await?;
        self.open = false;
        Ok(())
    }
}

impl Deref for Transaction {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.connection
    }
}

impl DerefMut for Transaction {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.connection
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let Some(mut connection) = self.connection.connection.take() else {
            return;
        };
        let taken_from_sqlx = self.connection.taken_from_sqlx;
        // The rollback keeps the permit until the connection rests again: a waiter let in
        // earlier would find none resting and wait on sqlx for this very connection.
        let permit = self.connection.permit.take();
        let home = Arc::clone(&self.connection.home);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to roll back on: closing the connection ends the transaction.
            connection.close_on_drop();
            return;
        };
        runtime.spawn(async move {
            let rollback = roll_back(&mut connection, home.role);
            match tokio::time::timeout(CONNECTION_CHECK, rollback).await {
                Ok(Ok(AfterRollback::Usable)) => home.give_back(connection, taken_from_sqlx),
                // A standby where the primary should be, or a connection that broke or whose
                // server is shutting down: what a failover looks like. The other connections
                // lead to the same server; all of them are closed (closing this one ends the
                // transaction on the server too).
                Ok(Ok(AfterRollback::InRecovery)) => {
                    connection.close_on_drop();
                    home.retire_connections();
                }
                Ok(Err(error)) if crate::database::is_unavailable(&error) => {
                    connection.close_on_drop();
                    home.retire_connections();
                }
                // A rollback that took too long (a statement still waiting for a lock) says
                // nothing about the other connections.
                Ok(Err(_)) | Err(_) => connection.close_on_drop(),
            }
            drop(permit);
        });
    }
}
