//! An administrator's statement that reaches a relation of a role that is not trusted (A43): the owner's own
//! functions run with the owner's rights (see `function_rights`), but other functions written into the owner's code
//! (a column default, a check, a view, a rule, a trigger's condition, a domain of a column, and the views that code
//! reads, whoever owns them) run with the caller's. Those that would use an administrator's rights against the
//! administrator are refused, on the relation and on each of its partitions and inheritance children: the
//! statement is refused before it runs, naming the relation and the function. Refused:
//! - PostgreSQL's functions PUBLIC may not execute, and those that run a query given as text, change or read a
//!   setting, take a session lock, read statistics or large objects, signal other sessions, or answer by the
//!   caller's privileges (see `functions::acts_on_session`), also as an aggregate's support function, and its
//!   volatile functions that act beyond their result (`setval`, replication slots, `pg_notify`);
//! - administrators' functions (tenant_guard's API, other extensions', a DBA's own) that PUBLIC may not execute or
//!   that act as above, and, unless SECURITY DEFINER or a trigger function: tenant_guard's volatile functions (they
//!   set the context, encrypt or change keys), functions of extensions not listed in
//!   `tenant_guard.admin_reach_extensions` (dblink, Citus's `run_command_on_*`), and functions in no extension.
//!
//! A relation is refused also when it reads or writes relations of its owner's choosing with the caller's rights (a
//! `security_invoker` view, a policy that reads relations, a default that advances an administrator's sequence), and
//! a domain of an untrusted owner wherever an administrator's statement converts a value to it. Statements are
//! judged when parse-analyzed (the planner evaluates some expressions before the executor starts) and again at
//! executor start.
//!
//! The verdict on a relation is kept for the statement in progress only.

use super::functions;
use crate::errors;
use crate::gucs;
use crate::privileged::with_pinned_search_path;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// A statement: (local transaction id, statement start).
/// A statement: (local transaction id, statement start, command id). The command id tells apart the statements of
/// one message and the catalog changes a statement makes as it runs.
type Statement = (u32, pg_sys::TimestampTz, pg_sys::CommandId);
/// The statement the answers are for, and the answer per object.
type PerStatement<V> = (Option<Statement>, HashMap<pg_sys::Oid, V>);

thread_local! {
    /// Relation -> the first refused function its owner's expressions call (None: nothing to refuse), for the
    /// statement in progress: judged again at each statement (an administrator's statements are few; a relcache
    /// callback slot, of which PostgreSQL has ten for every extension together, is not spent on this).
    static VERDICTS: RefCell<PerStatement<Option<String>>> = RefCell::new((None, HashMap::new()));
    /// Relation -> its nearest ancestor of an untrusted owner, for the statement in progress.
    static ANCESTORS: RefCell<PerStatement<Option<pg_sys::Oid>>> =
        RefCell::new((None, HashMap::new()));
    /// Set while a relation is being judged (the judging query runs through the executor too).
    static JUDGING: Cell<bool> = const { Cell::new(false) };
}

/// The statement the cached verdicts belong to: (local transaction id, statement start).
fn statement() -> Statement {
    // SAFETY: plain reads of backend state.
    unsafe {
        (
            crate::pg_version::local_transaction_id(),
            pg_sys::GetCurrentStatementStartTimestamp(),
            pg_sys::GetCurrentCommandId(false),
        )
    }
}

/// Whether `role` is a superuser or has the privileges of tenant_guard_admin.
fn trusted(role: pg_sys::Oid) -> bool {
    super::function_rights::role_trusted(role)
}

/// The first function the owner's code on a relation (or a domain's checks and default) calls that an administrator's
/// rights must not run (see `refused`); None when there is none.
fn refused_call(object: pg_sys::Oid, domain: bool) -> Option<String> {
    per_statement(&VERDICTS, object, || judge_calls(object, domain))
}

fn judge_calls(object: pg_sys::Oid, domain: bool) -> Option<String> {
    let found = JUDGING.replace(true);
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            JUDGING.set(self.0);
        }
    }
    let _reset = Reset(found);
    let calls: Vec<Call> = with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(
                    include_str!("../../sql/queries/admin_reach_calls.sql"),
                    None,
                    &(if domain { [pg_sys::InvalidOid, object] } else { [object, pg_sys::InvalidOid] })
                        .map(|o| o.into()),
                )
                .map(|rows| {
                    rows.filter_map(|r| {
                        Some(Call {
                            function: r.get::<pg_sys::Oid>(1).ok()??,
                            name: r.get::<String>(2).ok()??,
                            public: r.get::<bool>(3).ok()??,
                            owner: r.get::<pg_sys::Oid>(4).ok()??,
                            definer: r.get::<bool>(5).ok()??,
                            volatile: r.get::<String>(6).ok()?? == "v",
                            extension: r.get::<String>(7).ok().flatten(),
                            made_for_type: r.get::<bool>(8).ok()??,
                            trigger: r.get::<bool>(9).ok()??,
                        })
                    })
                    .collect()
                })
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not read a relation's code: {e}")))
        })
    });
    calls.iter().find(|call| refused(call)).map(|call| call.name.clone())
}

/// The answer for `object` kept in `cache` for the statement in progress, or `compute`d and kept.
fn per_statement<V: Clone>(
    cache: &'static std::thread::LocalKey<RefCell<PerStatement<V>>>,
    object: pg_sys::Oid,
    compute: impl FnOnce() -> V,
) -> V {
    let now = statement();
    let known = cache.with_borrow_mut(|(at, v)| {
        if *at != Some(now) {
            *at = Some(now);
            v.clear();
        }
        v.get(&object).cloned()
    });
    if let Some(known) = known {
        return known;
    }
    let found = compute();
    cache.with_borrow_mut(|(_, v)| v.insert(object, found.clone()));
    found
}

/// A function the owner's code calls (see `sql/queries/admin_reach_calls.sql`).
struct Call {
    function: pg_sys::Oid,
    name: String,
    public: bool,
    owner: pg_sys::Oid,
    definer: bool,
    volatile: bool,
    extension: Option<String>,
    made_for_type: bool,
    trigger: bool,
}

/// Whether an administrator's statement may not run `call` from the code of a relation whose owner is not trusted.
fn refused(call: &Call) -> bool {
    if (call.function.to_u32() as i64) < pg_sys::FirstNormalObjectId as i64 {
        // PostgreSQL's own: those PUBLIC may not run, those whose effect depends on the caller's rights, and those
        // that change something beyond their result (setval, replication slots, pg_notify, ...)
        return !call.public
            || functions::acts_on_session(call.function)
            || (call.volatile && !functions::computes_only(call.function));
    }
    if !trusted(call.owner) {
        return false; // runs with its owner's rights (see `function_rights`)
    }
    // an administrator's function (tenant_guard's API, an extension's, a DBA's own)
    if !call.public || functions::acts_on_session(call.function) {
        return true;
    }
    // SECURITY DEFINER: runs with its owner's rights whoever calls it. A range's constructors: PostgreSQL's code.
    // A trigger function an administrator owns: it serves only as a trigger, and owning it is its review.
    if call.definer || call.made_for_type || call.trigger {
        return false;
    }
    match call.extension.as_deref() {
        // tenant_guard's functions that only read the context; not those that set it, encrypt or change keys
        Some("tenant_guard") => call.volatile,
        Some(extension) => !gucs::admin_reach_extension(extension),
        None => true,
    }
}

/// The relation's owner, if it exists.
fn relation_owner(relid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    // SAFETY: a syscache lookup of the relation by oid, released at once.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as _, pg_sys::Datum::from(relid));
        if tuple.is_null() {
            return None;
        }
        let owner = (*(pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_class)).relowner;
        pg_sys::ReleaseSysCache(tuple);
        Some(owner)
    }
}

/// Refuses the relation if an administrator's statement would run a refused function of its owner's expressions,
/// or of any of its partitions and inheritance children (rows are routed into them without their being in the plan).
pub fn check_relation(relid: pg_sys::Oid) {
    // SAFETY: plain read of a backend global (set while an extension script runs).
    if JUDGING.get() || unsafe { pg_sys::creating_extension } || !super::is_admin() {
        return;
    }
    check_one(relid);
    if !functions::installed_here() {
        return;
    }
    let was = JUDGING.replace(true);
    let descendants: Vec<pg_sys::Oid> = with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(
                    "WITH RECURSIVE d(oid) AS (SELECT $1::pg_catalog.oid UNION \
                         SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN d ON i.inhparent OPERATOR(pg_catalog.=) d.oid) \
                     SELECT oid FROM d WHERE oid OPERATOR(pg_catalog.<>) $1::pg_catalog.oid",
                    None,
                    &[relid.into()],
                )
                .map(|rows| rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten()).collect())
                .unwrap_or_default()
        })
    });
    JUDGING.set(was);
    for child in descendants {
        check_one(child);
    }
}

/// Refuses a relation an administrator's statement writes (see `check_relation`), and the owner's types among its
/// columns, whoever owns the relation: their defaults and checks run as the rows are written, with the caller's
/// rights.
pub fn check_written(relid: pg_sys::Oid) {
    check_relation(relid);
    for typid in column_types(relid) {
        check_type(typid);
    }
}

/// The types of a relation's columns that PostgreSQL did not ship.
fn column_types(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    // SAFETY: opens the relation's cache entry (no lock: the statement holds or takes its own), reads its tuple
    // descriptor and closes it; a relation that does not exist yields nothing.
    unsafe {
        let relation = pg_sys::RelationIdGetRelation(relid);
        if relation.is_null() {
            return Vec::new();
        }
        // pgrx reads the attributes where each major keeps them (PostgreSQL 18 moved them behind compact ones);
        // the descriptor stays the relation's (neither released nor freed by the wrapper)
        let found = pgrx::PgTupleDesc::from_pg_unchecked((*relation).rd_att)
            .iter()
            .filter(|a| !a.attisdropped && (a.atttypid.to_u32() as i64) >= pg_sys::FirstNormalObjectId as i64)
            .map(|a| a.atttypid)
            .collect();
        pg_sys::RelationClose(relation);
        found
    }
}

fn check_one(relid: pg_sys::Oid) {
    // the relations of trusted owners (every catalog, most tables) cost a syscache lookup
    let Some(owner) = relation_owner(relid) else { return };
    if (relid.to_u32() as i64) < pg_sys::FirstNormalObjectId as i64 || !functions::installed_here() {
        return;
    }
    let name = if !trusted(owner) {
        super::display_name(relid)
    } else {
        // a trusted role's partition or child of an untrusted role's table carries the code it inherited (defaults,
        // checks): judged as that role's
        match untrusted_ancestor(relid) {
            Some(ancestor) => {
                format!("{} (code inherited from {})", super::display_name(relid), super::display_name(ancestor))
            }
            None => return,
        }
    };
    if let Some(what) = reads_as_caller(relid) {
        errors::admin_reaches_owner_relation(&name, &what);
    }
    if let Some(function) = refused_call(relid, false) {
        errors::admin_reaches_owner_call(&name, &function);
    }
}

/// Whether a relation's owner is a superuser or an administrator.
pub fn owned_by_administrator(relid: pg_sys::Oid) -> bool {
    relation_owner(relid).is_some_and(trusted)
}

/// The nearest ancestor (through partitioning or inheritance) of a relation that a role that is not trusted owns.
fn untrusted_ancestor(relid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    per_statement(&ANCESTORS, relid, || untrusted_ancestor_in_catalog(relid))
}

fn untrusted_ancestor_in_catalog(relid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    let was = JUDGING.replace(true);
    let ancestors: Vec<(pg_sys::Oid, pg_sys::Oid)> = with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(
                    "WITH RECURSIVE a(oid, depth) AS (SELECT $1::pg_catalog.oid, 0 UNION \
                         SELECT i.inhparent, a.depth OPERATOR(pg_catalog.+) 1 FROM pg_catalog.pg_inherits i \
                           JOIN a ON i.inhrelid OPERATOR(pg_catalog.=) a.oid) \
                     SELECT a.oid, c.relowner FROM a JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.oid \
                      WHERE a.depth OPERATOR(pg_catalog.>) 0 ORDER BY a.depth",
                    None,
                    &[relid.into()],
                )
                .map(|rows| {
                    rows.filter_map(|r| Some((r.get::<pg_sys::Oid>(1).ok()??, r.get::<pg_sys::Oid>(2).ok()??)))
                        .collect()
                })
                .unwrap_or_default()
        })
    });
    JUDGING.set(was);
    ancestors.into_iter().find(|(_, owner)| !trusted(*owner)).map(|(ancestor, _)| ancestor)
}

/// Refuses a domain whose checks or default, written by a role that is not trusted, call a function an
/// administrator's statement may not run: PostgreSQL converts values to a domain in many places no statement shows
/// (PL/pgSQL variables and RETURN, array and composite literals read while a statement is parsed), so such a domain
/// is refused when it is made, not only when a statement is judged.
pub fn check_new_domain(statement: &str, typid: pg_sys::Oid) {
    if super::is_admin() || !functions::installed_here() {
        return;
    }
    if let Some(function) = refused_call(typid, true) {
        // SAFETY: a syscache lookup of an existing type; a palloc'd, NUL-terminated name.
        let name = unsafe { super::cstr(pg_sys::format_type_be_qualified(typid)) };
        errors::domain_code_refused(statement, &name, &function);
    }
}

/// What makes the relation read or write relations of its owner's choosing with the caller's rights (see
/// `sql/queries/admin_reach_relation.sql`), if anything.
fn reads_as_caller(relid: pg_sys::Oid) -> Option<String> {
    // SAFETY: role lookups for the current user.
    let policies_apply = unsafe { !pg_sys::superuser() && !pg_sys::has_bypassrls_privilege(pg_sys::GetUserId()) };
    let was = JUDGING.replace(true);
    let found = with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(
                    include_str!("../../sql/queries/admin_reach_relation.sql"),
                    None,
                    &[relid.into(), policies_apply.into()],
                )
                .map(|rows| rows.filter_map(|r| r.get::<String>(1).ok().flatten()).next())
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not read a relation's code: {e}")))
        })
    });
    JUDGING.set(was);
    found
}

/// Refuses a type of an untrusted owner (a domain, a composite or range type, or an array of one) whose code (a
/// domain's checks and default, its fields' domains) calls a refused function, when an administrator's statement
/// converts a value to it or fills a column of it (of the administrator's own table too), or alters it.
pub fn check_type(typid: pg_sys::Oid) {
    // SAFETY: as in `check_relation`.
    if JUDGING.get() || unsafe { pg_sys::creating_extension } || !super::is_admin() {
        return;
    }
    let mut typid = typid;
    let owner = loop {
        if (typid.to_u32() as i64) < pg_sys::FirstNormalObjectId as i64 {
            return;
        }
        // SAFETY: a syscache lookup of the type by oid, released at once.
        let (owner, kind, element) = unsafe {
            let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::TYPEOID as _, pg_sys::Datum::from(typid));
            if tuple.is_null() {
                return;
            }
            let form = pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_type;
            let found = ((*form).typowner, (*form).typtype as u8, (*form).typelem);
            pg_sys::ReleaseSysCache(tuple);
            found
        };
        match kind {
            b'b' if element != pg_sys::InvalidOid => typid = element, // an array: its element type
            b'd' | b'c' | b'r' | b'm' => break owner,
            _ => return,
        }
    };
    if trusted(owner) || !functions::installed_here() {
        return;
    }
    if let Some(function) = refused_call(typid, true) {
        // SAFETY: a syscache lookup of an existing type; a palloc'd, NUL-terminated name.
        let name = unsafe { super::cstr(pg_sys::format_type_be_qualified(typid)) };
        errors::admin_reaches_owner_call(&format!("type {name}"), &function);
    }
}

/// Every relation and domain an administrator's statement names, judged as soon as it is analyzed: the planner
/// evaluates some expressions (constant folding, estimates) before the executor starts.
///
/// # Safety
/// `query` is NULL or a parse-analyzed Query.
pub unsafe fn check_query(query: *mut pg_sys::Query) {
    // SAFETY: as in `check_relation`.
    if query.is_null() || JUDGING.get() || unsafe { pg_sys::creating_extension } {
        return;
    }
    // SAFETY: as the caller promises; EXPLAIN, CREATE TABLE AS and DECLARE hold their analyzed statement as a Query.
    // Other utility statements (a ROLLBACK of an aborted block among them) return before anything is looked up.
    let text = unsafe {
        let mut node = query as *mut pg_sys::Node;
        loop {
            let q = node as *mut pg_sys::Query;
            if (*node).type_ != pg_sys::NodeTag::T_Query || (*q).commandType != pg_sys::CmdType::CMD_UTILITY {
                break;
            }
            let utility = (*q).utilityStmt;
            node = match utility.as_ref().map(|u| u.type_) {
                Some(pg_sys::NodeTag::T_ExplainStmt) => (*(utility as *mut pg_sys::ExplainStmt)).query,
                Some(pg_sys::NodeTag::T_CreateTableAsStmt) => (*(utility as *mut pg_sys::CreateTableAsStmt)).query,
                Some(pg_sys::NodeTag::T_DeclareCursorStmt) => (*(utility as *mut pg_sys::DeclareCursorStmt)).query,
                _ => return,
            };
            if node.is_null() {
                return;
            }
        }
        if (*node).type_ != pg_sys::NodeTag::T_Query || !super::is_admin() {
            return;
        }
        let out = pg_sys::nodeToString(node as *const std::ffi::c_void);
        let text = super::cstr(out);
        pg_sys::pfree(out as *mut std::ffi::c_void);
        text
    };
    let relations = oids_after(&text, ":relid ");
    let types = oids_after(&text, ":resulttype ");
    for relid in relations {
        check_relation(relid);
    }
    for typid in types {
        check_type(typid);
    }
}

/// The distinct object ids written after `field` in a node tree's text.
fn oids_after(text: &str, field: &str) -> Vec<pg_sys::Oid> {
    let mut found: Vec<pg_sys::Oid> = text
        .match_indices(field)
        .filter_map(|(at, _)| {
            let digits: String = text[at + field.len()..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok().filter(|&oid| oid != 0).map(pg_sys::Oid::from)
        })
        .collect();
    found.sort_unstable_by_key(|oid| oid.to_u32());
    found.dedup();
    found
}

/// Every relation a plan reads or writes, for an administrator's statement.
///
/// # Safety
/// `pstmt` is a valid planned statement.
pub unsafe fn check_plan(pstmt: *mut pg_sys::PlannedStmt) {
    // SAFETY: as in `check_relation`.
    if JUDGING.get() || unsafe { pg_sys::creating_extension } || !super::is_admin() {
        return;
    }
    // SAFETY: the statement's range table, a list of RangeTblEntry nodes.
    let rtable = unsafe { PgList::<pg_sys::RangeTblEntry>::from_pg((*pstmt).rtable) };
    for rte in rtable.iter_ptr() {
        // SAFETY: each entry is a RangeTblEntry.
        let (kind, relid) = unsafe { ((*rte).rtekind, (*rte).relid) };
        if kind == pg_sys::RTEKind::RTE_RELATION && relid != pg_sys::InvalidOid {
            check_relation(relid);
        }
    }
    // SAFETY: the statement's result relations, a list of 1-based indexes into its range table.
    let written = unsafe { PgList::<std::ffi::c_void>::from_pg((*pstmt).resultRelations) };
    for index in 0..written.len() {
        let at = written.get_int(index).unwrap_or(0);
        if at >= 1 {
            // SAFETY: a valid index of the range table.
            if let Some(rte) = rtable.get_ptr(at as usize - 1) {
                // SAFETY: a RangeTblEntry.
                check_written(unsafe { (*rte).relid });
            }
        }
    }
}
