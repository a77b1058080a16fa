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
use sqlx::{Connection as _, PgConnection, PgPool, Postgres};

/// A connection idle at least this long is pinged before it is handed out.
pub const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);
/// How long the check of a connection on its way out may take before the connection is
/// given up (PostgreSQL or the network stopped answering).
pub const CONNECTION_CHECK: Duration = Duration::from_secs(3);
/// How long a connection stays out of sqlx's hands before it goes back through them.
pub const RETURN_TO_SQLX_AFTER: Duration = Duration::from_secs(60);

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
    /// Lends out `pool`'s connections (its `before_acquire` check still runs for those taken
    /// from it).
    pub fn new(pool: PgPool) -> Self {
        let connections = usize::try_from(pool.options().get_max_connections()).unwrap_or(1);
        Database {
            shared: Arc::new(Shared {
                permits: Arc::new(Semaphore::new(connections)),
                pool,
                resting: Mutex::new(Vec::new()),
            }),
        }
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
        sqlx::raw_sql("BEGIN").execute(&mut *connection).await?;
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

    fn give_back(&self, connection: PoolConnection<Postgres>, taken_from_sqlx: Instant) {
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
            let rollback = sqlx::raw_sql("ROLLBACK").execute(&mut *connection);
            match tokio::time::timeout(CONNECTION_CHECK, rollback).await {
                Ok(Ok(_)) => home.give_back(connection, taken_from_sqlx),
                // Closing the connection ends the transaction on the server too.
                _ => connection.close_on_drop(),
            }
            drop(permit);
        });
    }
}
