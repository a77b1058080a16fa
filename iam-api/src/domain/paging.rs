//! Keyset paging, as the user listing and the audit trail page: `limit` rows after a cursor
//! (the last id of the previous page), read as `limit + 1` so that the extra row tells
//! whether another page follows.

use uuid::Uuid;

use crate::error::AppError;

/// Largest page.
pub const MAX_PAGE_SIZE: i64 = 200;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: i64 = 50;

/// The page size asked for (or the default), within 1 to [`MAX_PAGE_SIZE`], else 422.
pub fn page_size(limit: Option<i64>) -> Result<i64, AppError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if (1..=MAX_PAGE_SIZE).contains(&limit) {
        Ok(limit)
    } else {
        Err(AppError::invalid_field(
            "limit",
            "must be between 1 and 200",
        ))
    }
}

/// How many rows to read for a page of `limit`.
pub fn rows_to_read(limit: i64) -> i64 {
    limit + 1
}

/// One page of at most `limit` items of `rows` (read with [`rows_to_read`]), and the cursor
/// of the next page when there is one.
pub fn page_of<T>(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> (Vec<T>, Option<Uuid>) {
    let has_more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next = if has_more { rows.last().map(id) } else { None };
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_holds_at_most_limit_rows_and_names_the_next_only_when_there_is_one() {
        let ids: Vec<Uuid> = (0..4).map(|n| Uuid::from_u128(n + 1)).collect();
        assert_eq!(
            page_of(ids.clone(), 3, |id| *id),
            (ids[..3].to_vec(), Some(ids[2]))
        );
        assert_eq!(
            page_of(ids[..3].to_vec(), 3, |id| *id),
            (ids[..3].to_vec(), None)
        );
        assert_eq!(page_of(Vec::<Uuid>::new(), 3, |id| *id), (vec![], None));
        assert_eq!(rows_to_read(3), 4);
    }

    #[test]
    fn page_sizes_are_one_to_two_hundred_with_fifty_by_default() {
        assert_eq!(page_size(None).ok(), Some(50));
        assert_eq!(page_size(Some(1)).ok(), Some(1));
        assert_eq!(page_size(Some(200)).ok(), Some(200));
        for bad in [0, -1, 201] {
            assert!(page_size(Some(bad)).is_err(), "{bad}");
        }
    }
}
