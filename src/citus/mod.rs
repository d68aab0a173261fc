//! Citus: the same isolation on every node of a cluster.
//!
//! Citus is found at run time, never linked: when `citus` is in `shared_preload_libraries` and the extension exists
//! in the database, tenant_guard looks up three of its exported functions ([`symbols`]) and uses them to
//! - forward the signed token to the workers of every distributed statement, where each worker verifies it itself
//!   ([`context`]): a bare tenant id never travels between nodes;
//! - prune shards: a tenant's query on a distributed table reaches only its shard ([`pruning`]);
//! - apply issuer and data-key changes on every node in the coordinator's transaction, committed by Citus's two-phase
//!   commit, so that all nodes change or none does ([`replication`]).
//!
//! Protected Citus tables (distributed, reference, or Citus-managed local) get the policy form Citus accepts (see
//! `labels::policies`), and tenant_guard's own DDL on them is always propagated to the shards: a coordinator table
//! that looks protected while its shards are not cannot be made by labelling with `citus.enable_ddl_propagation`
//! off.

pub mod calls;
pub mod context;
pub mod pruning;
pub mod replication;
mod symbols;
pub mod ticket;

use crate::privileged::with_pinned_search_path;
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::CStr;

thread_local! {
    /// Set while a Citus function that converts tables runs (see [`converting`]).
    static CONVERTING: Cell<bool> = const { Cell::new(false) };
    /// Relations created in the current transaction (a worker's new shards among them).
    static CREATED: std::cell::RefCell<Vec<pg_sys::Oid>> = const { std::cell::RefCell::new(Vec::new()) };
    /// (local transaction id, installed, group id) of the last lookup: one catalog read per transaction.
    static NODE: Cell<(u32, bool, i32)> = const { Cell::new((u32::MAX, false, -1)) };
    /// Set while `node` or `shell_of` reads the catalogs.
    static LOOKING: Cell<bool> = const { Cell::new(false) };
}

/// Whether Citus is loaded in this server and installed in this database.
pub fn installed() -> bool {
    node().0
}

/// Whether this node is a Citus worker (not the coordinator). False where Citus is not installed.
pub fn is_worker() -> bool {
    let (installed, group) = node();
    installed && group > 0
}

/// Whether this node is the coordinator of a Citus cluster.
pub fn is_coordinator() -> bool {
    let (installed, group) = node();
    installed && group == 0
}

fn node() -> (bool, i32) {
    if !symbols::loaded() {
        return (false, -1);
    }
    let lxid = crate::pg_version::local_transaction_id();
    let (at, installed, group) = NODE.get();
    if at == lxid && lxid != 0 {
        return (installed, group);
    }
    // The lookup's own queries pass the planner hook, which asks again: not installed, while looking.
    if LOOKING.replace(true) {
        return (false, -1);
    }
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            LOOKING.set(false);
        }
    }
    let _done = Done;
    // SAFETY: catalog lookups by name; missing_ok returns InvalidOid instead of raising. While CREATE EXTENSION
    // citus runs, the extension exists before its tables do: Citus counts as installed once both tables exist.
    let installed = unsafe {
        pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pg_sys::InvalidOid
            && [c"pg_dist_local_group", c"pg_dist_partition"].iter().all(|t| {
                pg_sys::get_relname_relid(t.as_ptr(), pg_sys::PG_CATALOG_NAMESPACE.into()) != pg_sys::InvalidOid
            })
    };
    let group = if installed {
        with_pinned_search_path(|| Spi::get_one::<i32>("SELECT groupid FROM pg_catalog.pg_dist_local_group"))
            .ok()
            .flatten()
            .unwrap_or(-1)
    } else {
        -1
    };
    // SAFETY: plain read of a backend global.
    if !unsafe { pg_sys::creating_extension } {
        NODE.set((lxid, installed, group));
    }
    (installed, group)
}

/// Whether a table is in Citus's metadata (distributed, reference or Citus local table) on this node.
pub fn is_citus_table(relid: pg_sys::Oid) -> bool {
    installed()
        && with_pinned_search_path(|| {
            Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid OPERATOR(pg_catalog.=) $1)",
            &[relid.into()],
        )
        })
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Runs `f` with `citus.enable_ddl_propagation` set for its duration only: on (the coordinator: tenant_guard's DDL
/// on a Citus table must reach its shards, whatever the session says) or off (a worker's shell table, and the tenant
/// column's DEFAULT, which only the node that plans an INSERT needs).
pub fn with_ddl_propagation<R>(on: bool, f: impl FnOnce() -> R) -> R {
    with_setting(c"citus.enable_ddl_propagation", if on { c"on" } else { c"off" }, f)
}

/// Runs `f` with a Citus setting set for its duration only (and whatever `f` sets at that level undone after it).
pub fn with_setting<R>(name: &CStr, value: &CStr, f: impl FnOnce() -> R) -> R {
    struct Pop(i32);
    impl Drop for Pop {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                // SAFETY: pops the nest level pushed below; on an ERROR, (sub)transaction abort pops it.
                unsafe { pg_sys::AtEOXact_GUC(true, self.0) };
            }
        }
    }
    // SAFETY: a new GUC nest level and a SAVE-action set inside it, as fmgr_security_definer does for a SET clause.
    let _pop = unsafe {
        let pop = Pop(pg_sys::NewGUCNestLevel());
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        pop
    };
    f()
}

/// The Citus table a shard belongs to, when `relid` is named like one of its shards on this node: `<anything>_<shard
/// id>` where pg_dist_shard lists that shard id. Only the id counts, not the rest of the name: renaming the table's
/// copy on a worker must not make its shards look like something else. (Shards of protected tables also carry the
/// table's label themselves, which no metadata change takes away: see `labels::policies`.)
pub fn shell_of(relid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    if !installed() {
        return None;
    }
    let shard = shard_id_in_name(relid)?;
    if LOOKING.replace(true) {
        return None;
    }
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            LOOKING.set(false);
        }
    }
    let _done = Done;
    with_pinned_search_path(|| {
        Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT logicalrelid::pg_catalog.oid FROM pg_catalog.pg_dist_shard WHERE shardid OPERATOR(pg_catalog.=) $1",
            &[shard.into()],
        )
    })
    .ok()
    .flatten()
    .filter(|shell| *shell != relid)
}

/// The shard id a relation's name ends with (`..._<digits>`).
fn shard_id_in_name(relid: pg_sys::Oid) -> Option<i64> {
    shard_name_parts(relid).map(|(_, shard)| shard)
}

/// A relation's name split as a shard's: (the part before the last `_`, the shard id after it).
fn shard_name_parts(relid: pg_sys::Oid) -> Option<(String, i64)> {
    // SAFETY: syscache lookup by oid; NULL when the relation does not exist.
    let name = unsafe { pg_sys::get_rel_name(relid) };
    if name.is_null() {
        return None;
    }
    // SAFETY: not NULL, so a NUL-terminated palloc'd copy of the name.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
    let (table, shard) = name.rsplit_once('_')?;
    if table.is_empty() || shard.is_empty() || !shard.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((table.to_owned(), shard.parse().ok()?))
}

/// Registers the end-of-transaction callback. Called once from `_PG_init`.
pub fn init() {
    // SAFETY: registering backend-lifetime callbacks with static functions and no argument.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
    }
}

/// A conversion that failed inside a savepoint is over too.
#[pg_guard]
unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    _mine: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        CONVERTING.set(false);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    if matches!(event, XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE) {
        CREATED.with_borrow_mut(Vec::clear);
        CONVERTING.set(false);
    }
}

/// Called for each relation created (OAT_POST_CREATE).
pub fn relation_created(relid: pg_sys::Oid) {
    if symbols::loaded() {
        CREATED.with_borrow_mut(|c| c.push(relid));
    }
}

/// Whether `relid` is a relation this transaction created on a worker (or named like a shard on the coordinator),
/// with no relation inheriting from it: Citus building a shard there (as the table's owner, before the worker's
/// metadata lists the shard) recreates the table's keys and constraints on it, which the coordinator's guard judged
/// on the table. Such a relation holds no rows but those this transaction put there, which its role could read
/// anyway, so the rules that protect other tenants' rows from validations do not apply to it; the tamper rules
/// (row-level security, policies, identity) still do.
pub fn is_new_shard(relid: pg_sys::Oid) -> bool {
    CREATED.with_borrow(|c| c.contains(&relid)) && (is_worker() || named_like_a_shard(relid)) && !has_children(relid)
}

/// Whether any relation inherits from `relid` (a validation on it would read its children's rows too).
fn has_children(relid: pg_sys::Oid) -> bool {
    with_pinned_search_path(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhparent OPERATOR(pg_catalog.=) $1)",
            &[relid.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(true)
}

/// Whether a relation is named `<a table>_<digits>` in that table's schema (a shard Citus is creating on the
/// coordinator, before pg_dist_shard lists it).
fn named_like_a_shard(relid: pg_sys::Oid) -> bool {
    let Some((table, _)) = shard_name_parts(relid) else { return false };
    let Ok(table) = std::ffi::CString::new(table) else { return false };
    // (the table may not be in Citus's metadata yet: a reference table's shard on the coordinator comes first)
    // SAFETY: syscache lookups by name and by oid.
    unsafe { pg_sys::get_relname_relid(table.as_ptr(), pg_sys::get_rel_namespace(relid)) != pg_sys::InvalidOid }
}

/// Whether the session propagates DDL to the workers (`citus.enable_ddl_propagation`).
pub fn ddl_propagation_on() -> bool {
    // SAFETY: reads a setting by name; missing_ok returns NULL when Citus did not define it.
    let value = unsafe { pg_sys::GetConfigOption(c"citus.enable_ddl_propagation".as_ptr(), true, false) };
    // SAFETY: not NULL, so a NUL-terminated string owned by the GUC machinery.
    value.is_null() || unsafe { CStr::from_ptr(value) }.to_bytes() == b"on"
}

/// Marks the start (a Citus function that converts tables is about to run) and the end (its statement is done) of a
/// conversion.
pub fn set_converting(on: bool) {
    CONVERTING.set(on);
}

/// Whether a Citus function that converts tables is running. Citus reads the table then (whether it is empty) as the
/// caller, whom the table's policies confine: without a token, that read matches no tenant instead of failing.
pub fn converting() -> bool {
    CONVERTING.get()
}

/// After tenant_guard's restrictive policy was created on a shard (Citus applying the coordinator's policies, on
/// one of its parallel connections, which may not see the table's label yet): the shard takes the label that the
/// policy's tenant column makes.
pub fn label_policed_shard(relid: pg_sys::Oid) {
    if !installed() || crate::labels::table_label(relid).is_some() || shard_id_in_name(relid).is_none() {
        return;
    }
    let column = with_pinned_search_path(|| {
        Spi::get_one_with_args::<String>(include_str!("../../sql/queries/policy_tenant_column.sql"), &[relid.into()])
    })
    .ok()
    .flatten();
    if let Some(column) = column {
        set_label(relid, &crate::labels::grammar::Label::TenantScoped { column });
    }
}

fn set_label(relid: pg_sys::Oid, label: &crate::labels::grammar::Label) {
    let address = pg_sys::ObjectAddress { classId: pg_sys::RelationRelationId, objectId: relid, objectSubId: 0 };
    let text = std::ffi::CString::new(label.canonical()).expect("labels have no NUL");
    // SAFETY: a valid address of an existing relation and NUL-terminated provider and label strings.
    unsafe { pg_sys::SetSecurityLabel(&address, crate::labels::PROVIDER.as_ptr(), text.as_ptr()) }
}

/// After an ALTER TABLE on a shard of a protected table (Citus applying the coordinator's DDL, tenant_guard's
/// `FORCE ROW LEVEL SECURITY` among it): the shard takes the table's label itself, so that it stays protected
/// whatever later happens to its name or to Citus's metadata. Written directly (the statement holds the shard's
/// lock already; a SECURITY LABEL statement would wait for it on another connection of the same transaction).
pub fn label_altered_shard(relid: pg_sys::Oid) {
    if !installed() || crate::labels::table_label(relid).is_some() {
        return;
    }
    let Some(shell) = shell_of(relid) else { return };
    let Some(label) = crate::labels::table_label(shell) else { return };
    set_label(relid, &label);
}

/// Whether a table is hash-distributed (not a reference or Citus local table).
pub fn is_distributed(relid: pg_sys::Oid) -> bool {
    installed()
        && with_pinned_search_path(|| {
            Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition \
                  WHERE logicalrelid OPERATOR(pg_catalog.=) $1 AND partmethod OPERATOR(pg_catalog.=) 'h')",
                &[relid.into()],
            )
        })
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// What a Citus function does that tenant_guard must know before it runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CitusFunction {
    /// Turns a table into a Citus table (create_distributed_table, ...): its policies must first have the form
    /// Citus accepts, before Citus copies them to the shards.
    ConvertsTables,
    /// Rewrites, moves, splits or drops a table's shards (undistribute_table, alter_distributed_table, shard moves
    /// and splits, rebalancing): it copies rows as its caller and drops the old shards, so run by a role that the
    /// policies confine it would lose every other tenant's rows.
    RewritesShards,
    /// One of `citus_internal`'s functions that delete or change shard metadata. Citus lets a table's owner call
    /// them from a session that names itself a Citus connection (`application_name`), which any client can: they
    /// could detach a shard from its table's protection.
    ChangesShardMetadata,
    /// Reads or writes intermediate results (see [`ticket`]), or the partitioned results of a repartition.
    IntermediateResults,
    /// `assign_distributed_transaction_id`: the session takes another transaction's id (see `calls`).
    AssignsTransactionId,
    /// Runs a query under EXPLAIN ANALYZE and keeps its plan for a later call (what Citus's distributed EXPLAIN
    /// ANALYZE runs on each task): its actual row counts include other tenants' rows.
    ExplainsTasks,
}

/// What a function is to tenant_guard, when it is one of Citus's: one catalog lookup per call of a function that is
/// not PostgreSQL's own, none otherwise (this runs for every function a statement sets up).
pub fn classify(fn_oid: pg_sys::Oid) -> Option<CitusFunction> {
    const CONVERTERS: [&CStr; 4] = [
        c"create_distributed_table",
        c"create_distributed_table_concurrently",
        c"create_reference_table",
        c"citus_add_local_table_to_metadata",
    ];
    const REWRITERS: [&CStr; 18] = [
        c"undistribute_table",
        c"alter_distributed_table",
        c"alter_table_set_access_method",
        c"alter_old_partitions_set_access_method",
        c"isolate_tenant_to_new_shard",
        c"citus_split_shard_by_split_points",
        c"citus_move_shard_placement",
        c"master_move_shard_placement",
        c"citus_copy_shard_placement",
        c"rebalance_table_shards",
        c"citus_rebalance_start",
        c"citus_drain_node",
        c"citus_drop_all_shards",
        c"master_drop_all_shards",
        c"worker_drop_distributed_table",
        c"worker_drop_shell_table",
        c"drop_old_time_partitions",
        c"replicate_table_shards",
    ];
    if fn_oid.to_u32() < pg_sys::FirstNormalObjectId || !installed() {
        return None;
    }
    // SAFETY: syscache lookups by oid; NULL when the function or its schema does not exist.
    let (namespace, name) = unsafe {
        let name = pg_sys::get_func_name(fn_oid);
        if name.is_null() {
            return None;
        }
        (pg_sys::get_func_namespace(fn_oid), CStr::from_ptr(name))
    };
    let bytes = name.to_bytes();
    let contains = |part: &[u8]| bytes.windows(part.len()).any(|w| w == part);
    if namespace == pg_sys::PG_CATALOG_NAMESPACE.into() {
        if CONVERTERS.contains(&name) {
            Some(CitusFunction::ConvertsTables)
        } else if REWRITERS.contains(&name) {
            Some(CitusFunction::RewritesShards)
        } else if contains(b"intermediate_result") || contains(b"query_result") {
            Some(CitusFunction::IntermediateResults)
        } else if bytes == b"assign_distributed_transaction_id" {
            Some(CitusFunction::AssignsTransactionId)
        } else if contains(b"explain_analyze") {
            Some(CitusFunction::ExplainsTasks)
        } else {
            None
        }
    } else {
        // SAFETY: a syscache lookup of the function's schema; NULL when it does not exist.
        let schema = unsafe { pg_sys::get_namespace_name(namespace) };
        // SAFETY: not NULL, so a NUL-terminated palloc'd copy of the name.
        let internal = !schema.is_null() && unsafe { CStr::from_ptr(schema) }.to_bytes() == b"citus_internal";
        (internal && (contains(b"delete") || contains(b"update"))).then_some(CitusFunction::ChangesShardMetadata)
    }
}

/// Whether this database has a protected Citus table.
pub fn has_protected_tables() -> bool {
    installed()
        && with_pinned_search_path(|| {
            Spi::get_one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d JOIN pg_catalog.pg_seclabel l \
                   ON l.objoid OPERATOR(pg_catalog.=) d.logicalrelid \
                  AND l.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
                  AND l.provider OPERATOR(pg_catalog.=) 'tenant_guard' \
                  AND tenant._label_column(l.label) IS NOT NULL)",
            )
        })
        .ok()
        .flatten()
        .unwrap_or(true)
}
