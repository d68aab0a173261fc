//! Intermediate results belong to one distributed transaction.
//!
//! Citus keeps the rows a distributed query passes between its steps (the result of a CTE or subquery, broadcast
//! to the workers) in files named by the user and the distributed transaction id, and any session can give itself
//! another transaction's id (`assign_distributed_transaction_id`, which Citus's own remote connections call) and
//! read them: all tenants share the application's role, so one tenant could read another's rows there. So the
//! coordinator hands every remote transaction a ticket made from the master key (see
//! `tenant_guard_core::node_ticket`) with the token, and the functions that read or write intermediate results run,
//! for a role that is not an administrator, only in the transaction's originating backend or in a session that
//! holds that transaction's ticket.

use crate::errors;
use crate::gucs;
use tenant_guard_core::node_ticket;

/// This backend's distributed transaction id: (originator here, initiator node, number, timestamp); None outside one.
fn current() -> Option<(bool, i32, u64, i64)> {
    super::calls::transaction_id()
}

/// The `SET LOCAL` that gives the workers of the current distributed transaction its ticket; None without a master
/// key (the workers then refuse intermediate results to confined roles, saying so).
pub fn set_local_statement() -> Option<String> {
    // Only for a transaction this backend started: a session can give itself another transaction's id
    // (`assign_distributed_transaction_id`), and a ticket minted for that id would open the other's results.
    let (originator, initiator, number, stamp) = current()?;
    if !originator {
        return None;
    }
    let key = crate::keys::master_key_if_configured()?;
    Some(format!(
        "SET LOCAL tenant_guard.citus_ticket TO '{}'",
        node_ticket::ticket(key.as_slice(), initiator, number, stamp)
    ))
}

/// Before such a function runs for a role that is not an administrator: this backend started the distributed
/// transaction, or holds its ticket.
pub fn check() {
    let Some((originator, initiator, number, stamp)) = current() else { return };
    if originator {
        return;
    }
    let Some(key) = crate::keys::master_key_if_configured() else { errors::citus_ticket_missing(true) };
    match gucs::citus_ticket() {
        Some(presented) if node_ticket::verify(key.as_slice(), initiator, number, stamp, presented) => {}
        _ => errors::citus_ticket_missing(false),
    }
}

/// Whether this session works for a distributed transaction a coordinator started and handed its ticket to: a
/// worker's remote transaction. (False on the coordinator, and in any session that gave itself an id.)
pub fn holds_ticket() -> bool {
    if !super::is_worker() {
        return false;
    }
    let Some((originator, initiator, number, stamp)) = current() else { return false };
    if originator {
        return false;
    }
    let Some(key) = crate::keys::master_key_if_configured() else { return false };
    gucs::citus_ticket()
        .is_some_and(|presented| node_ticket::verify(key.as_slice(), initiator, number, stamp, presented))
}
