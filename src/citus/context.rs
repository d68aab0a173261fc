//! The token on every node: each distributed statement's workers receive the signed token and verify it themselves.
//!
//! Citus replays the `SET LOCAL` statements of a transaction at the start of every remote transaction it opens, and
//! sends them to the workers already in it. tenant_guard hands Citus `SET LOCAL tenant_guard.token TO '...'` itself
//! (whichever way the token was set on this node: `tenant.authenticate()`, `SET LOCAL`, `set_config()`, a
//! connection option) before each statement whose plan runs on other nodes, once per (sub)transaction and token,
//! and makes the statement's remote work run in transaction blocks so that the `SET LOCAL` reaches single-statement
//! transactions too. The token is checked here first, under the same rules as for a local query (where it came from,
//! its validity, the transaction's seal), so a token this node would refuse never travels. A worker's seal then
//! holds the remote transaction to the same tenant as the coordinator's.

use super::{calls, symbols};
use crate::context;
use crate::gucs;
use pgrx::prelude::*;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::ffi::CStr;
use zeroize::Zeroizing;

thread_local! {
    /// (local transaction id, subtransaction id, SHA-256 of the token) last handed to Citus.
    static FORWARDED: Cell<Option<(u32, u32, [u8; 32])>> = const { Cell::new(None) };
}

/// Before a statement runs: forwards the ticket and the token if its plan runs anything through Citus.
///
/// # Safety
/// `planned` is NULL or the statement's valid PlannedStmt.
pub unsafe fn forward_for_plan(planned: *mut pg_sys::PlannedStmt) {
    if planned.is_null() || !symbols::loaded() {
        return;
    }
    // SAFETY: as the caller promises.
    if unsafe { runs_on_other_nodes(planned) } && super::installed() {
        forward();
    }
}

/// Forwards the distributed transaction's ticket (see [`super::ticket`]) and the current token (or its absence,
/// after one was forwarded in this transaction) to the workers of this transaction, unless that exact token was
/// already forwarded in this (sub)transaction.
pub fn forward() {
    if !symbols::loaded() {
        return;
    }
    let token = context::token_for_other_nodes();
    let digest: [u8; 32] = Sha256::digest(token.as_ref().map_or("", |t| t.as_str()).as_bytes()).into();
    // SAFETY: plain reads of backend state.
    let here = unsafe { (crate::pg_version::local_transaction_id(), pg_sys::GetCurrentSubTransactionId()) };
    let earlier = FORWARDED.get();
    if earlier == Some((here.0, here.1, digest)) {
        return;
    }
    calls::coordinate();
    if let Some(ticket) = super::ticket::set_local_statement() {
        calls::set_local_everywhere(c"tenant_guard.citus_ticket", &ticket);
    }
    // the token, or no token where one was forwarded earlier in this transaction
    if token.is_some() || earlier.is_some_and(|(lxid, _, _)| lxid == here.0) {
        let text = Zeroizing::new(format!(
            "SET LOCAL tenant_guard.token TO {}",
            spi::quote_literal(token.as_ref().map_or("", |t| t.as_str()))
        ));
        calls::set_local_everywhere(gucs::TOKEN_NAME, &text);
    }
    FORWARDED.set(Some((here.0, here.1, digest)));
}

/// Whether a plan has a Citus scan (the node that runs the statement's tasks on the shards' nodes).
///
/// # Safety
/// `planned` is a valid PlannedStmt.
unsafe fn runs_on_other_nodes(planned: *mut pg_sys::PlannedStmt) -> bool {
    // SAFETY: a valid PlannedStmt: its plan tree and its list of subplans.
    unsafe {
        if citus_scan_in((*planned).planTree) {
            return true;
        }
        let subplans = pgrx::PgList::<pg_sys::Plan>::from_pg((*planned).subplans);
        let found = subplans.iter_ptr().any(|p| citus_scan_in(p));
        found
    }
}

/// # Safety
/// `plan` is NULL or a valid plan node.
unsafe fn citus_scan_in(plan: *mut pg_sys::Plan) -> bool {
    if plan.is_null() {
        return false;
    }
    // SAFETY: a valid plan node; each cast matches the node's tag, and each list holds plan nodes.
    unsafe {
        let children =
            |list: *mut pg_sys::List| pgrx::PgList::<pg_sys::Plan>::from_pg(list).iter_ptr().any(|p| citus_scan_in(p));
        let found = match (*plan).type_ {
            pg_sys::NodeTag::T_CustomScan => {
                let scan = plan as *mut pg_sys::CustomScan;
                let methods = (*scan).methods;
                (!methods.is_null()
                    && !(*methods).CustomName.is_null()
                    && CStr::from_ptr((*methods).CustomName).to_bytes().starts_with(b"Citus"))
                    || children((*scan).custom_plans)
            }
            pg_sys::NodeTag::T_Append => children((*(plan as *mut pg_sys::Append)).appendplans),
            pg_sys::NodeTag::T_MergeAppend => children((*(plan as *mut pg_sys::MergeAppend)).mergeplans),
            pg_sys::NodeTag::T_SubqueryScan => citus_scan_in((*(plan as *mut pg_sys::SubqueryScan)).subplan),
            pg_sys::NodeTag::T_BitmapAnd => children((*(plan as *mut pg_sys::BitmapAnd)).bitmapplans),
            pg_sys::NodeTag::T_BitmapOr => children((*(plan as *mut pg_sys::BitmapOr)).bitmapplans),
            _ => false,
        };
        found || citus_scan_in((*plan).lefttree) || citus_scan_in((*plan).righttree)
    }
}
