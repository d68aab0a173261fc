//! The replay table's bookkeeping (`replay::record`), on a table in local memory: who may use a key, when an entry
//! may be reused, an issuer's share, a full table.

#[pgrx::pg_schema]
mod tests {
    use crate::replay::{record, size, Outcome, Table};
    use pgrx::prelude::*;

    /// A zeroed table of `capacity` slots in a buffer that lives as long as the test.
    fn table(capacity: usize) -> (Vec<u64>, *mut Table) {
        let mut buf = vec![0u64; size(capacity).div_ceil(8)];
        let table = buf.as_mut_ptr() as *mut Table;
        // SAFETY: the buffer is zeroed, aligned for the table and large enough for it.
        unsafe { (*table).capacity = capacity };
        (buf, table)
    }

    fn key(n: u8) -> [u8; 16] {
        [n; 16]
    }

    const A: (i32, u32) = (3, 17);
    const B: (i32, u32) = (4, 17);
    const NOW: i64 = 1_000_000;

    fn rec(t: *mut Table, k: u8, until: i64, who: (i32, u32), bucket: usize, sharing: usize, now: i64) -> Outcome {
        // SAFETY: a table of this test, used by this test only.
        unsafe { record(t, key(k), until, who, bucket, sharing, now) }
    }

    #[pg_test]
    fn a_key_serves_one_transaction_until_it_expires() {
        let (_buf, t) = table(128);
        assert_eq!(rec(t, 1, NOW + 60, A, 0, 1, NOW), Outcome::Recorded);
        assert_eq!(rec(t, 1, NOW + 60, A, 0, 1, NOW), Outcome::Recorded); // the same transaction again
        assert_eq!(rec(t, 1, NOW + 60, B, 0, 1, NOW), Outcome::Replayed); // another one
                                                                          // another backend's transaction with the same local id: another transaction
        assert_eq!(rec(t, 1, NOW + 60, (3, 18), 0, 1, NOW), Outcome::Replayed);
        // once expired by the clock, the entry is anybody's (the token itself is refused as expired before)
        assert_eq!(rec(t, 1, NOW + 200, B, 0, 1, NOW + 61), Outcome::Recorded);
    }

    #[pg_test]
    fn an_issuer_cannot_take_more_than_its_share() {
        let (_buf, t) = table(128);
        // two issuers share the table: 64 entries each
        for k in 0..64u8 {
            assert_eq!(rec(t, k + 1, NOW + 60, A, 0, 2, NOW), Outcome::Recorded);
        }
        assert_eq!(rec(t, 200, NOW + 60, A, 0, 2, NOW), Outcome::ShareFull);
        // the other issuer still has its share
        assert_eq!(rec(t, 201, NOW + 60, A, 1, 2, NOW), Outcome::Recorded);
        // the first issuer's entries expire: its share is free again
        assert_eq!(rec(t, 200, NOW + 200, A, 0, 2, NOW + 61), Outcome::Recorded);
    }

    #[pg_test]
    fn a_full_table_refuses_and_stays_full_without_a_scan_until_an_entry_expires() {
        let (_buf, t) = table(128);
        for k in 0..128u8 {
            assert_eq!(rec(t, k + 1, NOW + 60 + i64::from(k), A, 0, 1, NOW), Outcome::Recorded);
        }
        assert_eq!(rec(t, 250, NOW + 60, A, 0, 1, NOW), Outcome::Full);
        // SAFETY: a table of this test.
        assert_eq!(unsafe { (*t).full_until }, NOW + 60); // the first entry to expire
        assert_eq!(rec(t, 250, NOW + 60, A, 0, 1, NOW + 60), Outcome::Full);
        assert_eq!(rec(t, 250, NOW + 200, A, 0, 1, NOW + 61), Outcome::Recorded);
    }
}
