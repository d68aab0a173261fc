//! The ticket a Citus coordinator gives the workers of one distributed transaction: proof that a session on a worker
//! works for that transaction, which Citus's own transaction id (assignable by any session) is not.
//!
//! `ticket = HMAC-SHA256(K, "initiator:number:timestamp")`, hex, where `K = HMAC-SHA256(master key, "tenant_guard citus
//! node ticket v1")`: only a node that holds the master key (every node of the cluster, no role) can make one.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const CONTEXT: &[u8] = b"tenant_guard citus node ticket v1";

fn keyed(master_key: &[u8]) -> HmacSha256 {
    let mut derive = HmacSha256::new_from_slice(master_key).expect("HMAC takes a key of any length");
    derive.update(CONTEXT);
    let key = derive.finalize().into_bytes();
    HmacSha256::new_from_slice(&key).expect("HMAC takes a key of any length")
}

fn message(initiator: i32, number: u64, stamp: i64) -> String {
    format!("{initiator}:{number}:{stamp}")
}

/// The ticket of distributed transaction (initiator node, transaction number, timestamp), as 64 hex digits.
pub fn ticket(master_key: &[u8], initiator: i32, number: u64, stamp: i64) -> String {
    let mut mac = keyed(master_key);
    mac.update(message(initiator, number, stamp).as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `presented` is that transaction's ticket (compared in constant time).
pub fn verify(master_key: &[u8], initiator: i32, number: u64, stamp: i64, presented: &str) -> bool {
    if presented.len() != 64 || !presented.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return false;
    }
    let bytes: Vec<u8> =
        (0..32).map(|i| u8::from_str_radix(&presented[2 * i..2 * i + 2], 16).expect("checked hex")).collect();
    let mut mac = keyed(master_key);
    mac.update(message(initiator, number, stamp).as_bytes());
    mac.verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_ticket_verifies_for_its_transaction_only() {
        let t = ticket(&KEY, 0, 42, 1_000);
        assert_eq!(t.len(), 64);
        assert!(verify(&KEY, 0, 42, 1_000, &t));
        assert!(!verify(&KEY, 0, 43, 1_000, &t));
        assert!(!verify(&KEY, 1, 42, 1_000, &t));
        assert!(!verify(&KEY, 0, 42, 1_001, &t));
        assert!(!verify(&[8; 32], 0, 42, 1_000, &t));
    }

    #[test]
    fn malformed_tickets_never_verify() {
        let t = ticket(&KEY, 0, 42, 1_000);
        for bad in ["", "00", &t[..63], &t.to_uppercase(), &format!("{}g", &t[..63]), &format!("{t}0")] {
            assert!(!verify(&KEY, 0, 42, 1_000, bad), "{bad}");
        }
    }
}
