//! `iam_core::database::connections`: connections lent without a round trip on their way
//! back, against a real PostgreSQL. What must hold: a holder never sees another's answers, a
//! transaction dropped open never stays open, a broken connection fails at most one
//! statement, and closing ends.

use std::time::Duration;

use iam_core::database::connections::{Database, PoolSettings, Role};
use integration_tests::database::TestDatabase;
use integration_tests::eventually;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Executor as _, PgPool, Row as _};

const LIMIT: Duration = Duration::from_secs(10);

async fn database_of(test_db: &TestDatabase, connections: u32) -> Database {
    let options: PgConnectOptions = test_db.url.parse().expect("options");
    let settings = PoolSettings {
        max_connections: connections,
        acquire_timeout: Duration::from_secs(5),
        role: Role::Primary,
    };
    Database::connect(options, settings).await.expect("a pool")
}

async fn backend_pid(connection: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(connection)
        .await
        .expect("pid")
}

#[tokio::test]
async fn a_connection_given_back_rests_at_once_and_is_lent_again() {
    let test_db = TestDatabase::create().await;
    let db = database_of(&test_db, 1).await;
    let mut first = db.acquire().await.expect("a connection");
    let pid = backend_pid(&mut first).await;
    assert_eq!(db.num_idle(), 0);
    drop(first);
    // No await in between: sqlx would first test it with a round trip in a task of its own.
    assert_eq!(db.num_idle(), 1, "given back without a round trip");
    let mut second = db.acquire().await.expect("a connection");
    assert_eq!(backend_pid(&mut second).await, pid);
    assert_eq!(db.size(), 1);
}

#[tokio::test]
async fn an_abandoned_statement_never_answers_the_next_holder() {
    let test_db = TestDatabase::create().await;
    let db = database_of(&test_db, 1).await;
    // A statement still running when its holder gives up, and a result set abandoned after
    // its first rows: the connection still owes their answers when it is lent again.
    let abandoned = [
        "SELECT 'first' || pg_sleep(0.3)::text AS marker",
        "SELECT 'first' || n AS marker FROM generate_series(1, 200000) AS n",
    ];
    for statement in abandoned {
        let mut connection = db.acquire().await.expect("a connection");
        let pid = backend_pid(&mut connection).await;
        {
            let mut rows = sqlx::query(statement).fetch(&mut *connection);
            let first_row = tokio::time::timeout(Duration::from_millis(50), async {
                futures::StreamExt::next(&mut rows).await
            })
            .await;
            // Either nothing arrived in time, or one row of many did; the rest is owed.
            drop(first_row);
        }
        drop(connection);
        let mut next = db.acquire().await.expect("a connection");
        assert_eq!(backend_pid(&mut next).await, pid, "the same connection");
        let marker: String = sqlx::query_scalar("SELECT 'second'")
            .fetch_one(&mut *next)
            .await
            .expect("the next holder's own answer");
        assert_eq!(marker, "second", "after {statement}");
    }
}

/// Whether another session can lock row 1 of `held` at once, and how many rows it sees.
async fn seen_from_elsewhere(observer: &PgPool) -> (bool, i64) {
    let mut tx = observer.begin().await.expect("observer");
    tx.execute("SET LOCAL lock_timeout = '100ms'")
        .await
        .expect("lock timeout");
    let lockable = sqlx::query("SELECT id FROM held WHERE id = 1 FOR UPDATE")
        .fetch_optional(&mut *tx)
        .await
        .is_ok();
    tx.rollback().await.expect("rollback");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM held")
        .fetch_one(observer)
        .await
        .expect("count");
    (lockable, rows)
}

async fn insert_held(connection: &mut sqlx::PgConnection, id: i32) {
    sqlx::query("INSERT INTO held VALUES ($1)")
        .bind(id)
        .execute(connection)
        .await
        .expect("insert");
}

#[tokio::test]
async fn a_transaction_dropped_open_is_rolled_back_at_once() {
    let test_db = TestDatabase::create().await;
    let observer = test_db.pool().await;
    observer
        .execute("CREATE TABLE held (id int PRIMARY KEY); INSERT INTO held VALUES (1)")
        .await
        .expect("table");
    let db = database_of(&test_db, 2).await;

    let mut tx = db.begin().await.expect("a transaction");
    sqlx::query("SELECT id FROM held WHERE id = 1 FOR UPDATE")
        .fetch_one(&mut *tx)
        .await
        .expect("lock");
    insert_held(&mut tx, 2).await;
    assert_eq!(seen_from_elsewhere(&observer).await, (false, 1));
    // As an error returned with `?` or a request its client abandoned would.
    drop(tx);
    eventually(
        LIMIT,
        "the dropped transaction's lock is released",
        || async { seen_from_elsewhere(&observer).await.0 },
    )
    .await;
    assert_eq!(
        seen_from_elsewhere(&observer).await,
        (true, 1),
        "rolled back"
    );
    // Its connection is lent again outside any transaction: what it writes is committed.
    eventually(LIMIT, "the rolled-back connection rests again", || async {
        db.num_idle() == 1
    })
    .await;
    let mut connection = db.acquire().await.expect("a connection");
    insert_held(&mut connection, 3).await;
    assert_eq!(seen_from_elsewhere(&observer).await, (true, 2));
    drop(connection);

    // A committed one is seen; a rolled-back one is not.
    let mut committed = db.begin().await.expect("a transaction");
    insert_held(&mut committed, 4).await;
    committed.commit().await.expect("commit");
    let mut rolled_back = db.begin().await.expect("a transaction");
    insert_held(&mut rolled_back, 5).await;
    rolled_back.rollback().await.expect("rollback");
    assert_eq!(seen_from_elsewhere(&observer).await, (true, 3));
}

#[tokio::test]
async fn a_connection_whose_backend_was_terminated_fails_at_most_one_statement() {
    let test_db = TestDatabase::create().await;
    let observer = test_db.pool().await;
    let db = database_of(&test_db, 1).await;
    let mut connection = db.acquire().await.expect("a connection");
    let pid = backend_pid(&mut connection).await;
    drop(connection);
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&observer)
        .await
        .expect("terminate");
    assert!(terminated);
    let mut failures = 0;
    let mut answered_by = None;
    for _ in 0..3 {
        let attempt = async {
            let mut connection = db.acquire().await?;
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut *connection)
                .await
        };
        match attempt.await {
            Ok(new_pid) => {
                answered_by = Some(new_pid);
                break;
            }
            Err(_) => failures += 1,
        }
    }
    assert!(
        failures <= 1,
        "{failures} statements failed on one broken connection"
    );
    let new_pid = answered_by.expect("a working connection after the broken one");
    assert_ne!(new_pid, pid);
}

#[tokio::test]
async fn concurrent_holders_each_get_their_own_answers_within_the_pool_size() {
    let test_db = TestDatabase::create().await;
    let db = database_of(&test_db, 4).await;
    let mut tasks = Vec::new();
    for task in 0..32_i32 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..20_i32 {
                let marker = task * 1000 + round;
                let mut connection = db.acquire().await.expect("a connection");
                if round % 5 == 4 {
                    // Every fifth round gives up on a slow statement.
                    let slow = sqlx::query("SELECT pg_sleep(0.05)").execute(&mut *connection);
                    let _ = tokio::time::timeout(Duration::from_millis(5), slow).await;
                    continue;
                }
                let answer: i32 = sqlx::query_scalar("SELECT $1::int")
                    .bind(marker)
                    .fetch_one(&mut *connection)
                    .await
                    .expect("an answer");
                assert_eq!(answer, marker);
                assert!(db.size() <= 4, "{} connections", db.size());
            }
        }));
    }
    for task in tasks {
        task.await.expect("a holder");
    }
    let row = sqlx::query("SELECT 1 AS one")
        .fetch_one(&mut *db.acquire().await.expect("a connection"))
        .await
        .expect("still usable");
    assert_eq!(row.get::<i32, _>("one"), 1);
}

#[tokio::test]
async fn closing_ends_with_connections_resting_and_lent() {
    let test_db = TestDatabase::create().await;
    let db = database_of(&test_db, 2).await;
    let resting = db.acquire().await.expect("a connection");
    let mut lent = db.acquire().await.expect("a connection");
    drop(resting);
    let closing = tokio::spawn({
        let db = db.clone();
        async move { db.close().await }
    });
    // Given back while the pool closes: it must go to sqlx, or closing would wait for ever.
    backend_pid(&mut lent).await;
    drop(lent);
    tokio::time::timeout(LIMIT, closing)
        .await
        .expect("closing ends")
        .expect("close");
    assert!(
        db.acquire().await.is_err(),
        "a closed database lends nothing"
    );
}
