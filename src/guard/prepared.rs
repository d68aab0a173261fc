//! Prepared statements behind a transaction pooler (while `tenant_guard.allow_session_scope` is off).
//!
//! A prepared statement outlives the transaction that prepared it, and behind a transaction-mode pooler the next
//! client's transaction on the same server connection can run it, or find it replaced: pgbouncer (1.21 and later)
//! shares one server-side statement among every client that sends the same text, and drivers name theirs
//! predictably. Four rules, for every role:
//!
//! - **A named statement is the one first seen under its name.** Each is fingerprinted (its text and parameter
//!   types, which fix what it does) when it first runs in the session, and at
//!   the COMMIT of every transaction that parsed something (so a statement parsed and described, but not yet run,
//!   is pinned before the next client gets the connection). A statement that runs under a name seen with another
//!   fingerprint is refused (42501), whoever replaced it (`DEALLOCATE`, `DISCARD ALL`, the protocol's Close and a
//!   new Parse). Preparing the same statement again under its name (a driver that names statements by their text,
//!   a pooler that prepares a text it evicted) is allowed. 32 bytes per name the session has seen.
//! - **SQL `EXECUTE` runs only what SQL `PREPARE` prepared in the same transaction** (also inside `EXPLAIN` and
//!   `CREATE TABLE AS`): anything older may be another client's, a statement a pooler prepared for another client
//!   included, and running it would replay that client's statement, literals and all, in this transaction.
//! - **The unnamed statement runs only in the transaction that parsed it** (PostgreSQL keeps it until the next
//!   unnamed Parse, across transactions): a client binding it later would run the previous client's statement.
//! - **A named statement whose text holds a token is never run**: whoever runs it would become that token's
//!   tenant. Pass the token as a parameter.
//!
//! The texts of the session's prepared statements and cursors (`pg_prepared_statements`, `pg_cursors`) are refused
//! to confined roles (see `functions`). What remains: a named statement parsed in a transaction that then failed is
//! pinned at the next statement of the session, so a client speaking the protocol could replace it (Close, Parse)
//! before that.

use crate::errors;
use crate::gucs;
use crate::privileged::{as_bootstrap_superuser, with_latest_snapshot};
use pgrx::pg_sys;
use pgrx::prelude::*;
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;

thread_local! {
    /// Statement name -> fingerprint of the statement first seen under it in this session.
    static SEEN: RefCell<HashMap<Box<[u8]>, [u8; 16]>> = RefCell::new(HashMap::new());
    /// Statement name -> local transaction id of the SQL PREPARE that made it.
    static SQL_PREPARED: RefCell<HashMap<Box<[u8]>, u32>> = RefCell::new(HashMap::new());
    /// Local transaction id in which something was parsed and the named statements were not yet pinned (0: none).
    static PARSED_IN: Cell<u32> = const { Cell::new(0) };
    /// (local transaction id, hash of the text) of the last Parse of the unnamed statement.
    static UNNAMED: Cell<(u32, u64)> = const { Cell::new((0, 0)) };
}

fn text_hash(text: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn current_lxid() -> u32 {
    // SAFETY: MyProc is set in every backend that runs SQL.
    unsafe { (*pg_sys::MyProc).lxid }
}

pub fn init() {
    // SAFETY: a backend-lifetime callback with a static function and no argument.
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if event == pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT {
        pin_pending();
    }
}

/// Called when a statement has been parsed (post_parse_analyze), in any protocol message. A Parse of the unnamed
/// statement runs in the memory context PostgreSQL makes for it.
///
/// # Safety
/// `text` is NULL or the NUL-terminated text being parsed.
pub unsafe fn parsed(text: *const std::ffi::c_char) {
    if gucs::session_scope_allowed() {
        return;
    }
    let lxid = current_lxid();
    pin_pending_from_earlier(lxid);
    PARSED_IN.set(lxid);
    // SAFETY: CurrentMemoryContext is valid, its name a static string; `text` as the caller promises.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        if !text.is_null()
            && !context.is_null()
            && CStr::from_ptr((*context).name).to_bytes() == b"unnamed prepared statement"
        {
            UNNAMED.set((lxid, text_hash(CStr::from_ptr(text).to_bytes())));
        }
    }
}

/// Pins what a transaction that did not reach COMMIT parsed, at the next statement of the session.
fn pin_pending_from_earlier(lxid: u32) {
    let pending = PARSED_IN.get();
    if pending != 0 && pending != lxid {
        pin_pending();
    }
}

/// Fingerprints every named statement not yet seen under its name.
fn pin_pending() {
    if PARSED_IN.replace(0) == 0 || gucs::session_scope_allowed() {
        return;
    }
    // SAFETY: plain reads of backend state (no SQL inside a parallel worker or outside a transaction).
    if unsafe { pg_sys::ParallelWorkerNumber >= 0 || !pg_sys::IsTransactionState() } {
        return;
    }
    // the statement list is the session's own; read as the bootstrap superuser, whom tenant_guard does not refuse it
    let names: Vec<String> = as_bootstrap_superuser(|| {
        with_latest_snapshot(|| {
            Spi::connect(|client| {
                client
                    .select("SELECT name FROM pg_catalog.pg_prepared_statement()", None, &[])
                    .map(|rows| rows.filter_map(|r| r.get::<String>(1).ok().flatten()).collect())
                    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not list statements: {e}")))
            })
        })
    });
    for name in names {
        let Ok(cname) = std::ffi::CString::new(name) else { continue };
        // SAFETY: a NUL-terminated name; FetchPreparedStatement returns NULL for a missing one.
        let entry = unsafe { pg_sys::FetchPreparedStatement(cname.as_ptr(), false) };
        if !entry.is_null() && !SEEN.with_borrow(|seen| seen.contains_key(cname.as_bytes())) {
            // SAFETY: a prepared statement entry has a valid CachedPlanSource.
            let print = unsafe { fingerprint((*entry).plansource) };
            SEEN.with_borrow_mut(|seen| seen.insert(cname.as_bytes().into(), print));
        }
    }
}

/// Checks the named prepared statement about to run (the extended protocol's Bind and Execute, SQL EXECUTE).
///
/// # Safety
/// `name` is NULL or a NUL-terminated statement name.
pub unsafe fn running(name: *const std::ffi::c_char) {
    if name.is_null() || gucs::session_scope_allowed() {
        return;
    }
    pin_pending_from_earlier(current_lxid());
    // SAFETY: as the caller promises; FetchPreparedStatement returns NULL for a missing name (throwError false).
    let (key, entry) = unsafe {
        let key = CStr::from_ptr(name).to_bytes();
        if key.is_empty() {
            return;
        }
        (key, pg_sys::FetchPreparedStatement(name, false))
    };
    if entry.is_null() {
        return;
    }
    let label = String::from_utf8_lossy(key);
    // SAFETY: a prepared statement entry has a valid CachedPlanSource with a NUL-terminated text.
    let (print, holds_token) = unsafe {
        let source = (*entry).plansource;
        let text = (*source).query_string;
        let holds_token =
            !text.is_null() && crate::redaction::redact(&CStr::from_ptr(text).to_string_lossy()).is_some();
        (fingerprint(source), holds_token)
    };
    if holds_token {
        errors::prepared_statement_holds_token(&label);
    }
    let replaced = SEEN.with_borrow_mut(|seen| match seen.get(key) {
        Some(known) => *known != print,
        None => {
            seen.insert(key.into(), print);
            false
        }
    });
    if replaced {
        errors::prepared_statement_replaced(&label);
    }
}

/// A portal with a cached plan but no statement name is about to run at the top level, `text` being its text: the
/// client's Bind of the unnamed statement if the text is the unnamed statement's. Refused unless that was parsed in
/// this transaction.
///
/// # Safety
/// `text` is the NUL-terminated text of the portal.
pub unsafe fn running_unnamed(text: *const std::ffi::c_char) {
    if gucs::session_scope_allowed() || text.is_null() {
        return;
    }
    let (lxid, hash) = UNNAMED.get();
    // SAFETY: as the caller promises.
    if lxid != 0 && lxid != current_lxid() && text_hash(unsafe { CStr::from_ptr(text) }.to_bytes()) == hash {
        errors::unnamed_statement_from_earlier_transaction();
    }
}

/// A SQL PREPARE has just run.
///
/// # Safety
/// `stmt` is the statement's PrepareStmt.
pub unsafe fn prepared_with_sql(stmt: *mut pg_sys::PrepareStmt) {
    // SAFETY: as the caller promises; the name is NUL-terminated.
    let name = unsafe { CStr::from_ptr((*stmt).name).to_bytes() };
    let lxid = current_lxid();
    SQL_PREPARED.with_borrow_mut(|p| p.insert(name.into(), lxid));
}

/// SQL `EXECUTE name`, also inside `EXPLAIN` and `CREATE TABLE AS`: runs only a statement that SQL PREPARE made in
/// this transaction, and is checked like any named statement.
///
/// # Safety
/// `node` is a utility statement's parse tree.
pub unsafe fn executing(node: *mut pg_sys::Node) {
    // SAFETY: each branch casts the node to the type its tag names.
    let name = unsafe {
        let inner = match (*node).type_ {
            pg_sys::NodeTag::T_ExplainStmt => super::utility_of((*(node as *mut pg_sys::ExplainStmt)).query),
            pg_sys::NodeTag::T_CreateTableAsStmt => {
                super::utility_of((*(node as *mut pg_sys::CreateTableAsStmt)).query)
            }
            _ => node,
        };
        if inner.is_null() || (*inner).type_ != pg_sys::NodeTag::T_ExecuteStmt {
            return;
        }
        (*(inner as *mut pg_sys::ExecuteStmt)).name
    };
    if name.is_null() || gucs::session_scope_allowed() {
        return;
    }
    // SAFETY: a NUL-terminated name; FetchPreparedStatement returns NULL for a missing one (the statement's own
    // error follows).
    let (key, entry) = unsafe { (CStr::from_ptr(name).to_bytes(), pg_sys::FetchPreparedStatement(name, false)) };
    if entry.is_null() {
        return;
    }
    // SAFETY: a valid entry.
    let from_sql = unsafe { (*entry).from_sql };
    let lxid = current_lxid();
    if !from_sql || SQL_PREPARED.with_borrow(|p| p.get(key).copied()) != Some(lxid) {
        errors::prepared_statement_from_earlier_transaction(&String::from_utf8_lossy(key));
    }
    // SAFETY: as above.
    unsafe { running(name) };
}

/// What fixes what a prepared statement does: its text and its parameter types. (PostgreSQL resolves its names
/// with the search path of each execution, which a client cannot leave behind: see `session`.)
///
/// # Safety
/// `source` is a valid CachedPlanSource.
unsafe fn fingerprint(source: *const pg_sys::CachedPlanSource) -> [u8; 16] {
    let mut hash = Sha256::new();
    // SAFETY: the plan source's text is NUL-terminated; its parameter types are an array of num_params oids.
    unsafe {
        let text = (*source).query_string;
        if !text.is_null() {
            hash.update(CStr::from_ptr(text).to_bytes());
        }
        hash.update([0]);
        let count = (*source).num_params.max(0) as usize;
        if count > 0 && !(*source).param_types.is_null() {
            for oid in std::slice::from_raw_parts((*source).param_types, count) {
                hash.update(oid.to_u32().to_le_bytes());
            }
        }
    }
    let digest = hash.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}
