//! PostgreSQL functions that count or read other tenants' rows of protected tables, refused to confined roles in a
//! database with tenant_guard. Checked when the executor (or the fast-path protocol) sets up a call, through the
//! object-access hook, so every way of calling one is covered: directly, through a view (`pg_stat_user_tables`,
//! `pg_stat_activity`), an inlined SQL function, PL/pgSQL or dynamic SQL.
//!
//! **Statistics** (`tenant_guard.hide_statistics`, on by default): the cumulative and per-transaction counters
//! (`pg_stat_get_*`: tuples returned and fetched by index and table scans, inserted, updated, deleted, live, dead,
//! scans, blocks, and the activity and progress of other sessions), relation sizes, and every function of
//! `pg_stat_statements` (other sessions' statements and row counts) and of the extensions that read pages
//! (`pgstattuple`, `pg_visibility`, `pg_freespacemap`, `pg_buffercache`, `pageinspect`, `pg_walinspect`,
//! `pgrowlocks`, `pg_prewarm`), database and tablespace sizes and `currtid2` (which follows another tenant's updated
//! row). An index that does not lead with the tenant column counts every tenant's entries it scans, so a tenant
//! could rebuild another tenant's values from these counters. The counters and `pg_stat_activity` cover the whole
//! cluster, so they are refused in **every** database, not only where tenant_guard is installed (a database without
//! it shows the same counters of the tenant database); set `tenant_guard.hide_statistics = off` per database or role
//! where that is not wanted. Exempt: superusers, `tenant_guard_admin` and `pg_read_all_stats` members (grant
//! `pg_monitor` to monitoring roles, never to the application role).
//!
//! **Session state** (while `tenant_guard.allow_session_scope` is off): `pg_prepared_statement()` and `pg_cursor()`
//! (the views `pg_prepared_statements` and `pg_cursors`), whose statement texts behind a transaction pooler are
//! earlier clients' (a token written into the text, the names and texts a replaced statement would imitate).
//! Exempt: superusers and `tenant_guard_admin` members.
//!
//! **Queries inside foreign-key actions** (always): PostgreSQL runs foreign-key checks and actions with row-level
//! security off for the tables' owner; the functions that run a query given as text (the `*_to_xml` family,
//! `ts_stat`, `ts_rewrite`, tablefunc's `crosstab` and `connectby`, xml2's `xpath_table`, dblink) are refused there,
//! for every role (see `function_rights` for the other functions).
//!
//! **Large objects** (`tenant_guard.allow_large_objects`, off by default): every `lo_*` function, `loread` and
//! `lowrite` (also through libpq's large-object API, which calls them over the fast-path protocol), and the
//! functions of the `lo` extension. A large object is not a row of any table: one written under tenant A's context
//! can be listed and read under tenant B's, and all tenants share the application role, so large-object privileges
//! cannot separate them. Exempt: superusers and `tenant_guard_admin` members.

use super::{has_privs_of, ADMIN_ROLE};
use crate::errors;
use crate::gucs;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

/// What a function is, for these rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Statistics,
    LargeObject,
    SessionState,
    /// `set_config` and the session-level advisory locks: refused to the owner's code run on an administrator's
    /// behalf (they would outlive it in the administrator's session).
    SettingWriter,
    /// `current_query`, `current_setting`, `pg_show_all_settings` (`pg_settings`), `current_schemas` and
    /// `pg_listening_channels`: refused to the owner's code run
    /// on an administrator's behalf (the administrator's statement, and what it set, are not the owner's to read).
    SessionReader,
    QueryRunner,
    Other,
}

/// Functions that run a query given as text (or read a whole table or schema), PostgreSQL's and extensions'.
const QUERY_RUNNERS: [&str; 8] =
    ["_to_xml", "_to_xmlschema", "ts_stat", "ts_rewrite", "crosstab", "connectby", "xpath_table", "dblink"];

fn runs_queries(name: &str) -> bool {
    QUERY_RUNNERS.iter().any(|q| if q.starts_with('_') { name.contains(q) } else { name.starts_with(q) })
}

/// Extensions whose every function is a statistics function for these rules.
const STATISTICS_EXTENSIONS: [&str; 9] = [
    "pg_stat_statements",
    "pgstattuple",
    "pg_visibility",
    "pg_freespacemap",
    "pg_buffercache",
    "pageinspect",
    "pg_walinspect",
    "pgrowlocks",
    "pg_prewarm",
];

/// PostgreSQL's functions that report sizes (which grow with every tenant's rows), follow row versions regardless
/// of row-level security (`currtid2`: where another tenant's updated row went), or show what other sessions lock
/// and wait for (`pg_locks`: which sessions work on which table or tenant's keys right now).
const STATISTICS_FUNCTIONS: [&str; 10] = [
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_database_size",
    "pg_tablespace_size",
    "currtid2",
    "pg_lock_status",
    "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids",
];

thread_local! {
    /// Function oid -> kind; emptied whenever pg_proc changes.
    static KINDS: RefCell<HashMap<pg_sys::Oid, Kind>> = RefCell::new(HashMap::new());
}

pub fn init() {
    // SAFETY: registers a backend-lifetime syscache callback with a static function and no argument.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::PROCOID as _,
            Some(forget_kinds),
            pg_sys::Datum::from(0),
        )
    };
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_kinds(_arg: pg_sys::Datum, _cache: std::ffi::c_int, _hash: u32) {
    KINDS.with_borrow_mut(HashMap::clear);
}

use pgrx::pg_guard;

fn kind(function: pg_sys::Oid) -> Kind {
    if let Some(kind) = KINDS.with_borrow(|k| k.get(&function).copied()) {
        return kind;
    }
    let kind = classify(function);
    KINDS.with_borrow_mut(|k| k.insert(function, kind));
    kind
}

/// PostgreSQL's functions that leave something in the session past the statement (see `Kind::SettingWriter`).
const SESSION_WRITERS: [&str; 13] = [
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "setseed",
];

/// PostgreSQL's functions that read what the session runs or has set (see `Kind::SessionReader`).
const SESSION_READERS: [&str; 5] =
    ["current_query", "current_setting", "pg_show_all_settings", "current_schemas", "pg_listening_channels"];

/// PostgreSQL's volatile functions that compute from their arguments, the clock or a random source, or take a
/// sequence's number (an administrator's sequence named in the owner's code is refused apart: see `admin_reach`).
/// Its other volatile functions change something beyond their result (`setval`, the replication slot and logical
/// decoding functions, `pg_notify`, `brin_summarize_new_values`, ...).
const COMPUTE_ONLY: [&str; 11] = [
    "random",
    "random_normal",
    "gen_random_uuid",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "currval",
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
];

/// Whether one of PostgreSQL's volatile functions only computes (see `COMPUTE_ONLY`).
pub fn computes_only(function: pg_sys::Oid) -> bool {
    // SAFETY: a syscache lookup of an existing function; NULL or a NUL-terminated copy.
    let name = unsafe { super::cstr(pg_sys::get_func_name(function)) };
    COMPUTE_ONLY.contains(&name.as_str())
}

fn classify(function: pg_sys::Oid) -> Kind {
    // SAFETY: syscache lookups of an existing function; palloc'd names are copied at once.
    unsafe {
        let extension = pg_sys::getExtensionOfObject(pg_sys::ProcedureRelationId, function);
        if extension != pg_sys::InvalidOid {
            let name = super::cstr(pg_sys::get_extension_name(extension));
            let function_name = super::cstr(pg_sys::get_func_name(function));
            return if STATISTICS_EXTENSIONS.contains(&name.as_str()) {
                Kind::Statistics
            } else if name == "lo" {
                Kind::LargeObject
            } else if runs_queries(&function_name) {
                Kind::QueryRunner
            } else {
                Kind::Other
            };
        }
        if pg_sys::get_func_namespace(function) != pg_sys::PG_CATALOG_NAMESPACE.into() {
            return Kind::Other;
        }
        let name = pg_sys::get_func_name(function);
        if name.is_null() {
            return Kind::Other;
        }
        let name = CStr::from_ptr(name).to_string_lossy();
        if name.starts_with("pg_stat_get_") || STATISTICS_FUNCTIONS.contains(&name.as_ref()) {
            Kind::Statistics
        } else if name.starts_with("lo_") || name == "loread" || name == "lowrite" {
            Kind::LargeObject
        } else if name == "pg_prepared_statement" || name == "pg_cursor" {
            Kind::SessionState
        } else if SESSION_WRITERS.contains(&name.as_ref()) {
            Kind::SettingWriter
        } else if SESSION_READERS.contains(&name.as_ref()) {
            Kind::SessionReader
        } else if runs_queries(&name) {
            Kind::QueryRunner
        } else {
            Kind::Other
        }
    }
}

/// Whether a function runs a query given as text, changes or reads a setting, takes a session lock, reads statistics
/// or large objects, signals other sessions or answers by the caller's privileges: what an owner's expression may not
/// make an administrator's statement do (see `admin_reach`).
pub fn acts_on_session(function: pg_sys::Oid) -> bool {
    if matches!(
        kind(function),
        Kind::QueryRunner
            | Kind::SettingWriter
            | Kind::SessionReader
            | Kind::Statistics
            | Kind::LargeObject
            | Kind::SessionState
    ) {
        return true;
    }
    // what an administrator's rights reach further: other sessions, and settings only superusers may read
    // SAFETY: a syscache lookup of an existing function; NULL or a NUL-terminated copy.
    let name = unsafe { super::cstr(pg_sys::get_func_name(function)) };
    ADMIN_REACH.contains(&name.as_str()) || (name.starts_with("has_") && name.ends_with("_privilege"))
}

/// PostgreSQL's functions whose effect depends on the caller's rights beyond the session: refused in an owner's
/// expressions reached by an administrator (see `admin_reach`).
/// The privilege inquiry functions (`has_*_privilege`, `pg_has_role`) are among them: the catalog views that show
/// each caller only what it may see (`pg_stats`' sampled values, `pg_user_mappings`' options) filter with them.
const ADMIN_REACH: [&str; 5] =
    ["pg_terminate_backend", "pg_cancel_backend", "pg_signal_backend", "pg_has_role", "row_security_active"];

/// Whether tenant_guard is installed in the current database.
pub fn installed_here() -> bool {
    // SAFETY: a catalog lookup by name, missing_ok.
    unsafe { pg_sys::get_extension_oid(c"tenant_guard".as_ptr(), true) != pg_sys::InvalidOid }
}

/// Whether the current user is confined: not a superuser, not an administrator.
fn confined() -> bool {
    // SAFETY: a catalog lookup for the current user.
    !unsafe { pg_sys::superuser() } && !has_privs_of(ADMIN_ROLE)
}

/// Called when a call of `function` is set up. Raises 42501 for a function a confined role may not call.
pub fn executing(function: pg_sys::Oid) {
    let refused = match kind(function) {
        // cluster-wide counters: refused in every database
        Kind::Statistics => gucs::statistics_hidden() && !has_privs_of(c"pg_read_all_stats") && confined(),
        // large objects belong to one database
        Kind::LargeObject => !gucs::large_objects_allowed() && confined() && installed_here(),
        // behind a pooler, the session's prepared statements and cursors are earlier clients'
        // and the owner's code run for an administrator reads nothing of the administrator's session
        Kind::SessionState => {
            (!gucs::session_scope_allowed() && confined() && installed_here())
                || super::function_rights::owner_code_for_administrator()
        }
        Kind::SessionReader => super::function_rights::owner_code_for_administrator(),
        // inside a foreign-key check or action, row-level security is off for the tables' owner: a query run there
        // would see every tenant's rows of every table that owner owns
        // SAFETY: reads the backend's security context.
        Kind::QueryRunner => unsafe { pg_sys::InNoForceRLSOperation() },
        Kind::SettingWriter => super::function_rights::owner_code_for_administrator(),
        Kind::Other => return,
    };
    if refused {
        // SAFETY: a syscache lookup of an existing function; NULL or a NUL-terminated copy.
        let name = unsafe { super::cstr(pg_sys::get_func_name(function)) };
        match kind(function) {
            Kind::LargeObject => errors::large_objects_refused(&name),
            Kind::SessionState if super::function_rights::owner_code_for_administrator() => {
                errors::session_read_in_owner_code(&format!("{name}()"))
            }
            Kind::SessionState => errors::session_state_hidden(&name),
            Kind::SessionReader => errors::session_read_in_owner_code(&format!("{name}()")),
            Kind::QueryRunner => errors::query_in_foreign_key_action(&name),
            Kind::SettingWriter => errors::setting_in_owner_code(&format!("{name}()")),
            _ => errors::statistics_hidden(&name),
        }
    }
}
