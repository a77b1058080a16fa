//! Login throttling: soft, bounded back-off per email after repeated failures.
//!
//! The first failures are free; after that each further attempt must wait twice as long as
//! the last, up to a cap. It never locks an account permanently, so an attacker can slow a
//! real user down but not shut them out for long. Unknown emails are throttled the same way,
//! so a 429 says nothing about whether an account exists.

use chrono::{DateTime, Utc};

use crate::store::login_failures::FailureRecord;

/// Failures allowed before any delay.
pub const FREE_FAILURES: i32 = 5;
/// The longest delay, in seconds.
pub const MAX_DELAY_SECONDS: i64 = 900;
/// A failure record idle this long is forgotten.
pub const FORGET_AFTER_SECONDS: i64 = 86_400;

/// The delay owed after `failures` consecutive failures.
pub fn delay_seconds(failures: i32) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let exponent = u32::try_from(failures - FREE_FAILURES)
        .unwrap_or(u32::MAX)
        .min(20);
    (1_i64 << exponent).min(MAX_DELAY_SECONDS)
}

/// Seconds the caller must still wait at `now`, or `None` when a login may be attempted.
pub fn retry_after(record: Option<&FailureRecord>, now: DateTime<Utc>) -> Option<u64> {
    let record = record?;
    // `now` is read before the row lock is waited for, so a concurrent attempt may have
    // recorded a failure "after" it: that counts as no time having passed, never as time
    // owed (a negative idle time once throttled requests that still had free failures).
    let idle = (now - record.last_failure_at).num_milliseconds().max(0);
    if idle >= FORGET_AFTER_SECONDS * 1000 {
        return None;
    }
    let owed_ms = delay_seconds(record.failure_count) * 1000 - idle;
    (owed_ms > 0).then(|| u64::try_from((owed_ms + 999) / 1000).unwrap_or(1))
}

/// The record after one more attempt is charged at `now`: the count goes up by one, or
/// starts again at one when the old record was idle long enough to be forgotten.
pub fn charge(record: FailureRecord, now: DateTime<Utc>) -> FailureRecord {
    let forgotten =
        (now - record.last_failure_at).num_milliseconds() >= FORGET_AFTER_SECONDS * 1000;
    FailureRecord {
        failure_count: if forgotten {
            1
        } else {
            record.failure_count.saturating_add(1)
        },
        last_failure_at: now,
    }
}

/// Records older than this at `now` no longer count and may be deleted.
pub fn forgotten_before(now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono::Duration::seconds(FORGET_AFTER_SECONDS)
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    fn record(failure_count: i32, seconds_ago: i64, now: DateTime<Utc>) -> FailureRecord {
        FailureRecord {
            failure_count,
            last_failure_at: now - chrono::Duration::seconds(seconds_ago),
        }
    }

    #[test]
    fn a_failure_recorded_after_this_attempt_read_the_clock_owes_nothing_extra() {
        let now = Utc::now();
        // Four failures, the last one 300 ms "after" now: the fifth attempt is still free.
        let later = FailureRecord {
            failure_count: 4,
            last_failure_at: now + chrono::Duration::milliseconds(300),
        };
        assert_eq!(retry_after(Some(&later), now), None);
        // Five failures: a full second is owed, not more.
        let fifth = FailureRecord {
            failure_count: 5,
            last_failure_at: now + chrono::Duration::milliseconds(300),
        };
        assert_eq!(retry_after(Some(&fifth), now), Some(1));
    }

    #[test]
    fn charging_counts_one_more_or_starts_again_once_forgotten() {
        let now = Utc::now();
        let charged = charge(record(3, 10, now), now);
        assert_eq!(charged.failure_count, 4);
        assert_eq!(charged.last_failure_at, now);
        assert_eq!(charge(record(0, 0, now), now).failure_count, 1);
        assert_eq!(
            charge(record(7, FORGET_AFTER_SECONDS - 1, now), now).failure_count,
            8
        );
        assert_eq!(
            charge(record(7, FORGET_AFTER_SECONDS, now), now).failure_count,
            1
        );
        assert_eq!(
            charge(record(i32::MAX, 0, now), now).failure_count,
            i32::MAX
        );
        assert_eq!(
            forgotten_before(now),
            now - chrono::Duration::seconds(FORGET_AFTER_SECONDS)
        );
    }

    #[test]
    fn the_first_failures_cost_nothing() {
        let now = Utc::now();
        assert_eq!(retry_after(None, now), None);
        assert_eq!(
            retry_after(Some(&record(FREE_FAILURES - 1, 0, now)), now),
            None
        );
    }

    #[test]
    fn the_delay_doubles_and_is_capped() {
        assert_eq!(delay_seconds(5), 1);
        assert_eq!(delay_seconds(6), 2);
        assert_eq!(delay_seconds(9), 16);
        assert_eq!(delay_seconds(40), MAX_DELAY_SECONDS);
        assert_eq!(delay_seconds(i32::MAX), MAX_DELAY_SECONDS);
    }

    #[test]
    fn retry_after_counts_down_from_the_last_failure() {
        let now = Utc::now();
        assert_eq!(retry_after(Some(&record(9, 0, now)), now), Some(16));
        assert_eq!(retry_after(Some(&record(9, 10, now)), now), Some(6));
        assert_eq!(retry_after(Some(&record(9, 16, now)), now), None);
        // The longest delay is owed for its whole length: forgetting takes a day, not less.
        assert_eq!(retry_after(Some(&record(50, 100, now)), now), Some(800));
        assert_eq!(
            retry_after(Some(&record(50, FORGET_AFTER_SECONDS, now)), now),
            None
        );
    }
}
