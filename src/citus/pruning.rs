//! Shard pruning: a tenant's query on a distributed table reaches only that tenant's shard.
//!
//! Citus prunes shards on a comparison of the distribution column with a constant or a parameter; the policy
//! (`tenant_id = tenant.current_id()`) is applied on the shards, too late to prune. So before Citus plans a query,
//! tenant_guard adds `<tenant column> = '<the current tenant>'` to each level of the query that reads a protected
//! distributed table through inner joins only (where the condition cannot change the result: the policy already
//! hides every other tenant's row, and NULL-extended rows of outer joins are left alone). With it, Citus routes the
//! query to one shard.
//!
//! The tenant is then part of the plan, so a plan kept for later (a prepared statement, a PL/pgSQL statement) must
//! never run for another tenant: every such plan carries a private invalidation item, and whenever the token
//! changes in this backend (set, or reverted at COMMIT, ROLLBACK or a savepoint's end) tenant_guard invalidates
//! those plans in this backend alone, so the next execution plans again for the tenant of its token. A plan made
//! without a tenant context carries the item too, and gets pruned once a token is set.

use crate::context;
use crate::errors;
use crate::labels;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// The hash of tenant_guard's private plan invalidation item (a PROCOID item that no function's hash is meant to
/// match; a collision only makes a plan be made again).
const PLAN_ITEM_HASH: u32 = 0x7467_7072;

static mut PREV_PLANNER: pg_sys::planner_hook_type = None;

thread_local! {
    /// Whether this backend made a plan that carries the item (nothing to invalidate otherwise).
    static MARKED: Cell<bool> = const { Cell::new(false) };
    /// While tenant_guard sets the token to the value it already has.
    static UNCHANGED: Cell<bool> = const { Cell::new(false) };
    /// Relation -> tenant column, for protected distributed tables whose distribution column is the tenant column.
    static PRUNABLE: RefCell<HashMap<pg_sys::Oid, Option<i16>>> = RefCell::new(HashMap::new());
}

pub fn init() {
    // SAFETY: _PG_init runs once per process before any statement; we chain to the hook installed before (Citus's
    // distributed planner when citus is loaded first, as it must be). The relcache callback lives as long as the
    // backend.
    unsafe {
        PREV_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(planner);
        pg_sys::CacheRegisterRelcacheCallback(Some(forget), pg_sys::Datum::from(0));
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    PRUNABLE.with_borrow_mut(|p| {
        if relid == pg_sys::InvalidOid {
            p.clear();
        } else {
            p.remove(&relid);
        }
    });
}

thread_local! {
    /// While a query is planned: the executor entry count when the innermost planning began.
    static PLANNING: Cell<Option<u64>> = const { Cell::new(None) };
}

struct Planning(Option<u64>);

impl Planning {
    fn enter() -> Planning {
        Planning(PLANNING.replace(Some(crate::guard::executor::executor_entries())))
    }
}

impl Drop for Planning {
    fn drop(&mut self) {
        PLANNING.set(self.0);
    }
}

/// Whether a query is being planned, and nothing was executed since its planning began. The planner evaluates
/// STABLE calls to estimate how many rows a condition selects (the per-row policy `tenant_id = tenant.current_id()`
/// of a Citus table, for instance), and Citus evaluates the calls it routes by at execution. A function the planner
/// folds (an IMMUTABLE one) may execute SQL: from its first statement on, this is false for the rest of that
/// planning.
pub fn planning() -> bool {
    PLANNING.get().is_some_and(|at| at == crate::guard::executor::executor_entries())
}

/// Runs `f`, which sets the token to the value it has and back (see `calls::set_local_everywhere`): no plan is
/// made again for it.
pub fn unchanged_token<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            UNCHANGED.set(self.0);
        }
    }
    let _restore = Restore(UNCHANGED.replace(true));
    f()
}

/// The token changed: plans made for the previous one are made again at their next use.
pub fn token_changed() {
    if MARKED.get() && !UNCHANGED.get() {
        // SAFETY: runs this backend's syscache callbacks for one PROCOID hash value (no catalog access): the plan
        // cache marks the plans that carry the item invalid.
        unsafe { pg_sys::CallSyscacheCallbacks(pg_sys::SysCacheIdentifier::PROCOID as i32, PLAN_ITEM_HASH) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn planner(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: std::ffi::c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    // Not while tenant_guard's own lookups plan their queries (verifying the token reads the issuers).
    let touched = !BUSY.get() && super::installed() && {
        let _busy = Busy::enter();
        let mut tenant = Tenant::Unknown;
        // SAFETY: the Query the planner is about to plan; it belongs to this planning (the planner scribbles on
        // it anyway), and the nodes added are allocated in the current memory context.
        unsafe { add_tenant_quals(parse, &mut tenant) }
    };
    // SAFETY: the Query about to be planned.
    unsafe { refuse_volatile_update(parse) };
    if !BUSY.get() {
        let _busy = Busy::enter();
        // SAFETY: as above.
        unsafe { refuse_recurring_outer_join(parse) };
    }
    let _planning = Planning::enter();
    // SAFETY: passes the arguments on, to the previous hook or the standard planner.
    let planned = unsafe {
        match PREV_PLANNER {
            Some(prev) => {
                pg_sys::ffi::pg_guard_ffi_boundary(|| prev(parse, query_string, cursor_options, bound_params))
            }
            None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
        }
    };
    if touched && !planned.is_null() {
        // SAFETY: a valid PlannedStmt just made; the item is a plain node in the current memory context, which the
        // plan cache copies with the plan.
        unsafe {
            let item = pg_sys::palloc0(std::mem::size_of::<pg_sys::PlanInvalItem>()) as *mut pg_sys::PlanInvalItem;
            (*item).type_ = pg_sys::NodeTag::T_PlanInvalItem;
            (*item).cacheId = pg_sys::SysCacheIdentifier::PROCOID as i32;
            (*item).hashValue = PLAN_ITEM_HASH;
            (*planned).invalItems = pg_sys::lappend((*planned).invalItems, item.cast());
        }
        MARKED.set(true);
    }
    planned
}

/// Adds the tenant's condition to every level of `query` that reads a protected distributed table through inner
/// joins. Returns whether the query reads such a table at all (with or without a tenant to add).
///
/// # Safety
/// `query` is a valid, writable Query.
unsafe fn add_tenant_quals(query: *mut pg_sys::Query, tenant: &mut Tenant) -> bool {
    let mut touched = false;
    // SAFETY: a valid Query: its range table, CTEs and join tree.
    unsafe {
        let q = &mut *query;
        for cte in pgrx::PgList::<pg_sys::CommonTableExpr>::from_pg(q.cteList).iter_ptr() {
            let inner = (*cte).ctequery as *mut pg_sys::Query;
            if !inner.is_null() && (*inner).type_ == pg_sys::NodeTag::T_Query {
                touched |= add_tenant_quals(inner, tenant);
            }
        }
        let rtable = pgrx::PgList::<pg_sys::RangeTblEntry>::from_pg(q.rtable);
        let mut quals = Vec::new();
        let inner_only = q.jointree.is_null() || inner_joins_only(q.jointree as *mut pg_sys::Node);
        for (i, rte) in rtable.iter_ptr().enumerate() {
            match (*rte).rtekind {
                pg_sys::RTEKind::RTE_SUBQUERY if !(*rte).subquery.is_null() => {
                    touched |= add_tenant_quals((*rte).subquery, tenant);
                }
                pg_sys::RTEKind::RTE_RELATION => {
                    let Some(attnum) = prunable_column((*rte).relid) else { continue };
                    touched = true;
                    let index = (i + 1) as i32;
                    let reads = q.resultRelation == index || in_join_tree(q.jointree as *mut pg_sys::Node, index);
                    if let (true, true, Some(tenant)) = (inner_only, reads, tenant.get()) {
                        if matches!(
                            q.commandType,
                            pg_sys::CmdType::CMD_SELECT | pg_sys::CmdType::CMD_UPDATE | pg_sys::CmdType::CMD_DELETE
                        ) {
                            quals.push(tenant_qual(index, attnum, &tenant));
                        }
                    }
                }
                _ => {}
            }
        }
        if !quals.is_empty() && !q.jointree.is_null() {
            let mut all = (*q.jointree).quals;
            for qual in quals {
                all = pg_sys::make_and_qual(all, qual);
            }
            (*q.jointree).quals = all;
        }
    }
    touched
}

/// An UPDATE of a protected distributed table that computes a value with a VOLATILE function: tenant_guard's error
/// says what to do instead of Citus's.
///
/// # Safety
/// `query` is a valid Query.
unsafe fn refuse_volatile_update(query: *mut pg_sys::Query) {
    // SAFETY: a valid Query; the result relation's entry is in its range table.
    unsafe {
        let q = &*query;
        if q.commandType != pg_sys::CmdType::CMD_UPDATE || q.resultRelation <= 0 || BUSY.get() || !super::installed() {
            return;
        }
        let rte = pg_sys::list_nth(q.rtable, q.resultRelation - 1) as *mut pg_sys::RangeTblEntry;
        if prunable_column((*rte).relid).is_some() && pg_sys::contain_volatile_functions(q.targetList.cast()) {
            errors::citus_volatile_update(&labels::qualified_name((*rte).relid).unwrap_or_default());
        }
    }
}

/// An outer join from relations that are not distributed (a reference or local table, a function, VALUES) to a
/// protected distributed table, for a role that row-level security confines: Citus 13.2 crashes the server process
/// (SIGSEGV in its recursive planning of such joins under row-level security), which restarts every session of the
/// server. Refused until Citus fixes it.
///
/// # Safety
/// `query` is a valid Query.
unsafe fn refuse_recurring_outer_join(query: *mut pg_sys::Query) {
    if !super::installed() {
        return;
    }
    // SAFETY: a valid Query and its join tree.
    unsafe {
        let q = &*query;
        for cte in pgrx::PgList::<pg_sys::CommonTableExpr>::from_pg(q.cteList).iter_ptr() {
            let inner = (*cte).ctequery as *mut pg_sys::Query;
            if !inner.is_null() && (*inner).type_ == pg_sys::NodeTag::T_Query {
                refuse_recurring_outer_join(inner);
            }
        }
        for rte in pgrx::PgList::<pg_sys::RangeTblEntry>::from_pg(q.rtable).iter_ptr() {
            if (*rte).rtekind == pg_sys::RTEKind::RTE_SUBQUERY && !(*rte).subquery.is_null() {
                refuse_recurring_outer_join((*rte).subquery);
            }
        }
        check_joins(q, q.jointree as *mut pg_sys::Node);
    }
}

/// # Safety
/// `node` is NULL or a join tree node of `q`.
unsafe fn check_joins(q: &pg_sys::Query, node: *mut pg_sys::Node) {
    if node.is_null() {
        return;
    }
    // SAFETY: each cast matches the node's tag.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_FromExpr => {
                for n in pgrx::PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::FromExpr)).fromlist).iter_ptr() {
                    check_joins(q, n);
                }
            }
            pg_sys::NodeTag::T_JoinExpr => {
                let join = &*(node as *mut pg_sys::JoinExpr);
                let (preserved, nullable) = match join.jointype {
                    pg_sys::JoinType::JOIN_LEFT | pg_sys::JoinType::JOIN_ANTI => (join.larg, join.rarg),
                    pg_sys::JoinType::JOIN_RIGHT => (join.rarg, join.larg),
                    _ => (std::ptr::null_mut(), std::ptr::null_mut()),
                };
                if !preserved.is_null() && !has_distributed(q, preserved) {
                    if let Some(relid) = confined_protected_distributed(q, nullable) {
                        errors::citus_outer_join_refused(&labels::qualified_name(relid).unwrap_or_default());
                    }
                }
                check_joins(q, join.larg);
                check_joins(q, join.rarg);
            }
            _ => {}
        }
    }
}

/// The range table entries a join tree node covers.
///
/// # Safety
/// `node` is a join tree node.
unsafe fn entries(node: *mut pg_sys::Node, out: &mut Vec<i32>) {
    // SAFETY: each cast matches the node's tag.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_RangeTblRef => out.push((*(node as *mut pg_sys::RangeTblRef)).rtindex),
            pg_sys::NodeTag::T_FromExpr => {
                for n in pgrx::PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::FromExpr)).fromlist).iter_ptr() {
                    entries(n, out);
                }
            }
            pg_sys::NodeTag::T_JoinExpr => {
                entries((*(node as *mut pg_sys::JoinExpr)).larg, out);
                entries((*(node as *mut pg_sys::JoinExpr)).rarg, out);
            }
            _ => {}
        }
    }
}

/// Whether a join tree node reads a hash-distributed table.
///
/// # Safety
/// `node` is a join tree node of `q`.
unsafe fn has_distributed(q: &pg_sys::Query, node: *mut pg_sys::Node) -> bool {
    let mut found = Vec::new();
    // SAFETY: as the caller promises; the indexes are the range table's.
    unsafe {
        entries(node, &mut found);
        found.into_iter().any(|i| {
            let rte = pg_sys::list_nth(q.rtable, i - 1) as *mut pg_sys::RangeTblEntry;
            (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION && super::is_distributed((*rte).relid)
        })
    }
}

/// A protected distributed table that a join tree node reads and that row-level security confines for the role.
///
/// # Safety
/// `node` is a join tree node of `q`.
unsafe fn confined_protected_distributed(q: &pg_sys::Query, node: *mut pg_sys::Node) -> Option<pg_sys::Oid> {
    let mut found = Vec::new();
    // SAFETY: as the caller promises; the indexes are the range table's.
    unsafe {
        entries(node, &mut found);
        found.into_iter().find_map(|i| {
            let rte = pg_sys::list_nth(q.rtable, i - 1) as *mut pg_sys::RangeTblEntry;
            let relid = (*rte).relid;
            ((*rte).rtekind == pg_sys::RTEKind::RTE_RELATION
                && prunable_column(relid).is_some()
                && pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, true)
                    == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32)
                .then_some(relid)
        })
    }
}

/// The current tenant, looked up once per planning and only when a query reads a prunable table.
enum Tenant {
    Unknown,
    Known(Option<uuid::Uuid>),
}

impl Tenant {
    fn get(&mut self) -> Option<uuid::Uuid> {
        if let Tenant::Unknown = self {
            *self = Tenant::Known(context::peek_tenant());
        }
        match self {
            Tenant::Known(t) => *t,
            Tenant::Unknown => None,
        }
    }
}

thread_local! {
    /// Set while the hook looks at a query (its own lookups plan queries too, which it leaves alone).
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

struct Busy;

impl Busy {
    fn enter() -> Busy {
        BUSY.set(true);
        Busy
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.set(false);
    }
}

/// The tenant column's number when `relid` is a protected distributed table distributed by it.
fn prunable_column(relid: pg_sys::Oid) -> Option<i16> {
    if let Some(known) = PRUNABLE.with_borrow(|p| p.get(&relid).copied()) {
        return known;
    }
    let attnum = labels::protected_column(relid).and_then(|column| {
        crate::privileged::with_pinned_search_path(|| {
            Spi::get_one_with_args::<i16>(
                "SELECT a.attnum FROM pg_catalog.pg_dist_partition d \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) d.logicalrelid \
                  WHERE d.logicalrelid OPERATOR(pg_catalog.=) $1 AND d.partmethod OPERATOR(pg_catalog.=) 'h' \
                    AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name \
                    AND pg_catalog.column_to_column_name(d.logicalrelid, d.partkey) OPERATOR(pg_catalog.=) $2",
                &[relid.into(), column.as_str().into()],
            )
        })
        .ok()
        .flatten()
    });
    PRUNABLE.with_borrow_mut(|p| p.insert(relid, attnum));
    attnum
}

/// `<range table entry index>.<attnum> = '<tenant>'::uuid`.
fn tenant_qual(index: i32, attnum: i16, tenant: &uuid::Uuid) -> *mut pg_sys::Node {
    // SAFETY: node constructors allocating in the current memory context; the uuid's 16 bytes are copied into a
    // palloc'd pg_uuid_t, which the Const points to (uuid is passed by reference); the type cache gives uuid's `=`.
    unsafe {
        let var = pg_sys::makeVar(index as _, attnum, pg_sys::UUIDOID, -1, pg_sys::InvalidOid, 0);
        let bytes = pg_sys::palloc(16) as *mut u8;
        std::ptr::copy_nonoverlapping(tenant.as_bytes().as_ptr(), bytes, 16);
        let value =
            pg_sys::makeConst(pg_sys::UUIDOID, -1, pg_sys::InvalidOid, 16, pg_sys::Datum::from(bytes), false, false);
        let eq = (*pg_sys::lookup_type_cache(pg_sys::UUIDOID, pg_sys::TYPECACHE_EQ_OPR as i32)).eq_opr;
        pg_sys::make_opclause(
            eq,
            pg_sys::BOOLOID,
            false,
            var.cast(),
            value.cast(),
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
        )
        .cast()
    }
}

/// Whether a join tree joins with inner joins only.
///
/// # Safety
/// `node` is NULL or a join tree node (FromExpr, JoinExpr, RangeTblRef).
unsafe fn inner_joins_only(node: *mut pg_sys::Node) -> bool {
    if node.is_null() {
        return true;
    }
    // SAFETY: each cast matches the node's tag.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_FromExpr => {
                pgrx::PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::FromExpr)).fromlist)
                    .iter_ptr()
                    .all(|n| inner_joins_only(n))
            }
            pg_sys::NodeTag::T_JoinExpr => {
                let join = node as *mut pg_sys::JoinExpr;
                (*join).jointype == pg_sys::JoinType::JOIN_INNER
                    && inner_joins_only((*join).larg)
                    && inner_joins_only((*join).rarg)
            }
            _ => true,
        }
    }
}

/// Whether range table entry `index` is one of the join tree's relations.
///
/// # Safety
/// `node` is NULL or a join tree node.
unsafe fn in_join_tree(node: *mut pg_sys::Node, index: i32) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: each cast matches the node's tag.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_RangeTblRef => (*(node as *mut pg_sys::RangeTblRef)).rtindex == index,
            pg_sys::NodeTag::T_FromExpr => {
                pgrx::PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::FromExpr)).fromlist)
                    .iter_ptr()
                    .any(|n| in_join_tree(n, index))
            }
            pg_sys::NodeTag::T_JoinExpr => {
                let join = node as *mut pg_sys::JoinExpr;
                in_join_tree((*join).larg, index) || in_join_tree((*join).rarg, index)
            }
            _ => false,
        }
    }
}
