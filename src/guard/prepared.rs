//! Prepared statements behind a transaction pooler (while `tenant_guard.allow_session_scope` is off).
//!
//! A prepared statement outlives the transaction that prepared it, and behind a transaction-mode pooler the next
//! client's transaction on the same server connection can run it: bind a statement another client parsed (and
//! replay its literals, a token included), or find one another client planted under the name its own driver will
//! bind (`_pg3_0`, `S_1`, names from the text) on a server connection where it never parsed that name. So, for
//! every role:
//!
//! - **A prepared statement runs only in the transaction that parsed it**: the extended protocol's Bind of a named
//!   or the unnamed statement, SQL `EXECUTE` (also inside `EXPLAIN` and `CREATE TABLE AS`), whichever portal runs it
//!   (its first FETCH too). A client that prepares once and runs many times behind such a pooler must let the
//!   pooler manage the statements: pgbouncer 1.21 and later, with `max_prepared_statements` above 0, prepares each
//!   statement on each server connection under its own names (`PGBOUNCER_1`, ...), which clients cannot address.
//!   Setting `tenant_guard.pooler_statement_prefix` to that prefix lets statements under it run in any transaction;
//!   each is then fingerprinted (text and parameter types) the first time it runs, and one that runs under a name
//!   seen with another fingerprint is refused. SQL `PREPARE` and `DEALLOCATE` of names under the prefix are
//!   refused.
//! - **A named statement whose text holds a token is never run**: whoever runs it would become that token's
//!   tenant. Pass the token as a parameter.
//!
//! The texts of the session's prepared statements and cursors (`pg_prepared_statements`, `pg_cursors`) are refused
//! to confined roles (see `functions`).

use crate::errors;
use crate::gucs;
use pgrx::pg_sys;
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;

thread_local! {
    /// Statement name -> fingerprint of the statement first run under it in this session (pooler-managed names).
    static SEEN: RefCell<HashMap<Box<[u8]>, [u8; 16]>> = RefCell::new(HashMap::new());
    /// (local transaction id, the statement texts parsed in it: hash of the text, address of the text parsed).
    static PARSED: RefCell<(u32, HashSet<(u64, usize)>)> = RefCell::new((0, HashSet::new()));
    /// (local transaction id, hash of the text, address of the text parsed) of the last Parse of the unnamed
    /// statement.
    static UNNAMED: Cell<(u32, u64, usize)> = const { Cell::new((0, 0, 0)) };
}

fn current_lxid() -> u32 {
    crate::pg_version::local_transaction_id()
}

fn text_hash(text: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Whether the client parsed `text` in this transaction: the statement's text was parsed from a message of this
/// transaction, not merely analyzed again from the stored statement's own copy. PostgreSQL re-analyzes a stored
/// statement from its copy of the text when it is bound after something invalidated it (another search path, `DISCARD
/// PLANS`, a change to a table it reads, `ANALYZE`); that analysis is not a Parse by the client. A client's Parse
/// and Query messages are analyzed from the message itself, which PostgreSQL copies into the statement after
/// analysis, so the two are told apart by the text's address.
fn parsed_here(text: &[u8], stored: *const std::ffi::c_char) -> bool {
    let lxid = current_lxid();
    let hash = text_hash(text);
    PARSED.with_borrow(|(at, texts)| {
        *at == lxid && texts.iter().any(|&(h, address)| h == hash && address != stored as usize)
    })
}

/// Called when the client's statement has been parsed (post_parse_analyze of the text of a Query or Parse
/// message). A Parse of the unnamed statement runs in the memory context PostgreSQL makes for it.
///
/// # Safety
/// `text` is NULL or the NUL-terminated text being parsed.
pub unsafe fn parsed(text: *const std::ffi::c_char) {
    if text.is_null() || gucs::session_scope_allowed() {
        return;
    }
    // SAFETY: as the caller promises.
    let hash = text_hash(unsafe { CStr::from_ptr(text) }.to_bytes());
    let lxid = current_lxid();
    PARSED.with_borrow_mut(|(at, texts)| {
        if *at != lxid {
            *at = lxid;
            texts.clear();
        }
        texts.insert((hash, text as usize));
    });
    // SAFETY: CurrentMemoryContext is valid; its name is a static string.
    let unnamed = unsafe {
        let context = pg_sys::CurrentMemoryContext;
        !context.is_null() && CStr::from_ptr((*context).name).to_bytes() == b"unnamed prepared statement"
    };
    if unnamed {
        UNNAMED.set((lxid, hash, text as usize));
    }
}

/// Whether `name` is one the pooler manages (see the module notes).
fn pooler_managed(name: &[u8]) -> bool {
    gucs::pooler_statement_prefix().is_some_and(|prefix| name.starts_with(prefix.as_bytes()))
}

/// Checks the named prepared statement about to run (the extended protocol's Bind and Execute, SQL EXECUTE).
///
/// # Safety
/// `name` is NULL or a NUL-terminated statement name.
pub unsafe fn running(name: *const std::ffi::c_char) {
    if name.is_null() || gucs::session_scope_allowed() {
        return;
    }
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
    let (source, stored, text) = unsafe {
        let source = (*entry).plansource;
        (source, (*source).query_string, CStr::from_ptr((*source).query_string).to_bytes())
    };
    // SAFETY: a valid plan source.
    if crate::redaction::redact(&String::from_utf8_lossy(unsafe { own_statement(source, text) })).is_some() {
        errors::prepared_statement_holds_token(&label);
    }
    if pooler_managed(key) {
        // SAFETY: as above.
        let print = unsafe { fingerprint(source) };
        let replaced = SEEN.with_borrow_mut(|seen| *seen.entry(key.into()).or_insert(print) != print);
        if replaced {
            errors::prepared_statement_replaced(&label);
        }
    } else {
        // SAFETY: a valid prepared statement entry (fetched above).
        let here = unsafe { prepared_in_this_transaction(entry) } && parsed_here(text, stored);
        if !here {
            errors::prepared_statement_from_earlier_transaction(&label);
        }
    }
}

/// Whether the named statement was created (SQL PREPARE, the protocol's Parse) in the current transaction: PostgreSQL
/// stamps it with the start time of the statement or message that created it, and a transaction starts after every
/// earlier transaction's statements. (Together with [`parsed_here`]: neither a re-analysis of the stored text nor
/// a second statement of the same text changes the stamp.)
///
/// # Safety
/// `entry` is a valid prepared statement entry.
unsafe fn prepared_in_this_transaction(entry: *const pg_sys::PreparedStatement) -> bool {
    // SAFETY: as the caller promises; a plain read of the transaction's start time.
    unsafe { (*entry).prepare_time >= pg_sys::GetCurrentTransactionStartTimestamp() }
}

/// The statement's own part of its text (a SQL PREPARE in a string of several statements).
///
/// # Safety
/// `source` is a valid CachedPlanSource whose text is `text`.
unsafe fn own_statement(source: *const pg_sys::CachedPlanSource, text: &[u8]) -> &[u8] {
    // SAFETY: as the caller promises; the raw statement is NULL or a RawStmt whose location is within the text.
    let (start, len) = unsafe {
        let raw = (*source).raw_parse_tree;
        if raw.is_null() {
            return text;
        }
        ((*raw).stmt_location.max(0) as usize, (*raw).stmt_len.max(0) as usize)
    };
    let start = start.min(text.len());
    let end = if len == 0 { text.len() } else { (start + len).min(text.len()) };
    &text[start..end]
}

/// A portal with a cached plan but no statement name is about to run, `text` being its text: the client's Bind of
/// the unnamed statement if the text is the unnamed statement's. Refused unless that was parsed in this
/// transaction.
///
/// # Safety
/// `text` is the NUL-terminated text of the portal.
pub unsafe fn running_unnamed(text: *const std::ffi::c_char) {
    if gucs::session_scope_allowed() || text.is_null() {
        return;
    }
    let (lxid, hash, address) = UNNAMED.get();
    // SAFETY: as the caller promises.
    let same_text = text_hash(unsafe { CStr::from_ptr(text) }.to_bytes()) == hash;
    // parsed in an earlier transaction, or recorded from an analysis of the stored copy (see parsed_here)
    if lxid != 0 && same_text && (lxid != current_lxid() || address == text as usize) {
        errors::unnamed_statement_from_earlier_transaction();
    }
}

/// SQL PREPARE and DEALLOCATE, before they run: refused for names the pooler manages.
///
/// # Safety
/// `node` is a utility statement's parse tree.
pub unsafe fn preparing(node: *mut pg_sys::Node) {
    if gucs::session_scope_allowed() {
        return;
    }
    // SAFETY: each branch casts the node to the type its tag names; names are NULL or NUL-terminated.
    let (what, name) = unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_PrepareStmt => ("PREPARE", (*(node as *mut pg_sys::PrepareStmt)).name),
            pg_sys::NodeTag::T_DeallocateStmt => ("DEALLOCATE", (*(node as *mut pg_sys::DeallocateStmt)).name),
            _ => return,
        }
    };
    if name.is_null() {
        return; // DEALLOCATE ALL: the pooler prepares its statements again when they are missing
    }
    // SAFETY: as above.
    let name = unsafe { CStr::from_ptr(name) }.to_bytes();
    if pooler_managed(name) {
        errors::pooler_statement_refused(what, &String::from_utf8_lossy(name));
    }
}

/// SQL `EXECUTE name`, however it is wrapped (`EXPLAIN`, `CREATE TABLE AS`, `EXPLAIN CREATE TABLE AS`): checked like
/// any named statement.
///
/// # Safety
/// `node` is a utility statement's parse tree.
pub unsafe fn executing(node: *mut pg_sys::Node) {
    // SAFETY: each branch casts the node to the type its tag names; wrappers hold their statement as a Query or a
    // raw node (utility_of unwraps the Query).
    let name = unsafe {
        let mut inner = node;
        loop {
            if inner.is_null() {
                return;
            }
            inner = match (*inner).type_ {
                pg_sys::NodeTag::T_ExplainStmt => super::utility_of((*(inner as *mut pg_sys::ExplainStmt)).query),
                pg_sys::NodeTag::T_CreateTableAsStmt => {
                    super::utility_of((*(inner as *mut pg_sys::CreateTableAsStmt)).query)
                }
                pg_sys::NodeTag::T_ExecuteStmt => break (*(inner as *mut pg_sys::ExecuteStmt)).name,
                _ => return,
            };
        }
    };
    // SAFETY: a NUL-terminated name (or NULL).
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
