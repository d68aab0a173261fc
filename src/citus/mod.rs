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

pub mod context;
pub mod pruning;
pub mod replication;
mod symbols;

use crate::privileged::with_pinned_search_path;
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::CStr;

thread_local! {
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

/// Whether a function is one of Citus's that turn a table into a Citus table (its policies must then have the form
/// Citus accepts before Citus copies them to the shards).
pub fn converts_tables(fn_oid: pg_sys::Oid) -> bool {
    const CONVERTERS: [&CStr; 4] = [
        c"create_distributed_table",
        c"create_distributed_table_concurrently",
        c"create_reference_table",
        c"citus_add_local_table_to_metadata",
    ];
    if !installed() {
        return false;
    }
    // SAFETY: syscache lookups by oid; NULL when the function does not exist.
    let name = unsafe { pg_sys::get_func_name(fn_oid) };
    if name.is_null() {
        return false;
    }
    // SAFETY: not NULL, so a NUL-terminated palloc'd copy of the name.
    let name = unsafe { CStr::from_ptr(name) };
    // SAFETY: as above.
    let namespace = unsafe { pg_sys::get_func_namespace(fn_oid) };
    namespace == pg_sys::PG_CATALOG_NAMESPACE.into() && CONVERTERS.contains(&name)
}

/// Runs `f` with `citus.enable_ddl_propagation` set for its duration only: on (the coordinator: tenant_guard's DDL
/// on a Citus table must reach its shards, whatever the session says) or off (a worker's shell table, and the tenant
/// column's DEFAULT, which only the node that plans an INSERT needs).
pub fn with_ddl_propagation<R>(on: bool, f: impl FnOnce() -> R) -> R {
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
            c"citus.enable_ddl_propagation".as_ptr(),
            if on { c"on" } else { c"off" }.as_ptr(),
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

/// The Citus table a shard belongs to, when `relid` is a shard on this node (`<table>_<shard id>` in the table's
/// schema, listed in pg_dist_shard).
pub fn shell_of(relid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    if !installed() {
        return None;
    }
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
    let shard: i64 = shard.parse().ok()?;
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
    let shell = with_pinned_search_path(|| {
        Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT logicalrelid::pg_catalog.oid FROM pg_catalog.pg_dist_shard WHERE shardid OPERATOR(pg_catalog.=) $1",
            &[shard.into()],
        )
    })
    .ok()
    .flatten()?;
    // SAFETY: syscache lookups by oid.
    let same = unsafe {
        let shell_name = pg_sys::get_rel_name(shell);
        !shell_name.is_null()
            && CStr::from_ptr(shell_name).to_bytes() == table.as_bytes()
            && pg_sys::get_rel_namespace(shell) == pg_sys::get_rel_namespace(relid)
    };
    same.then_some(shell)
}
