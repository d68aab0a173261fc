//! tenant_guard: multi-tenant isolation as a property of PostgreSQL.
//!
//! Modules, one per concern:
//! - [`token`]: token checking (pure Rust, no Postgres);
//! - [`ciphertext`]: the ciphertext and wrapped-key formats (pure Rust, no Postgres);
//! - [`kek`]: master-key providers (file, command);
//! - [`keys`]: per-tenant data keys, their cache and the key admin API; [`encryption`]: encrypt/decrypt;
//! - [`context`]: the tenant context, the only place that holds tenant state; [`client_cert`]: the connection's
//!   client certificate, for certificate-bound tokens;
//! - [`issuers`]: trusted issuers and their keys; [`revocations`]: revoked tokens and subjects, suspended tenants;
//!   [`placement`]: which tenants this database serves (silo, pool, hybrid);
//! - [`privileged`]: internal queries under a pinned search_path, as the bootstrap superuser where needed;
//! - [`labels`]: security labels and the policies they attach; [`guard`]: the tamper guard;
//! - [`audit`]: `tenant.audit()`, the isolation linter;
//! - [`citus`]: the same isolation on every node of a Citus cluster (found at run time, never linked);
//! - [`replay`]: the shared table of used `jti`s, for issuers that require each token once;
//! - [`shared_verifications`]: verified tokens shared by every backend (a signature is checked once per server);
//! - [`discovery`]: key sets fetched from identity providers by a background worker;
//! - [`transfer`]: one tenant's export, import into another database, and purge;
//! - [`tenant_stats`]: per-tenant statistics (`tenant.stats`), counted in shared memory;
//! - [`shmem`]: making the shared-memory structs of the modules above;
//! - [`redaction`]: keeps tokens out of the server log and other sessions' view of statement text;
//! - [`errors`]: every SQLSTATE tenant_guard raises;
//! - [`gucs`]: every `tenant_guard.*` setting;
//! - [`requirements`]: what tenant_guard needs of the server and of the database it is created in;
//! - [`pg_version`]: what differs between the PostgreSQL majors it supports.
//!
//! Unsafe code lives in the hooks and FFI calls only: every unsafe operation is its own block (also inside an
//! `unsafe fn`), and every block says why it is sound.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

// pgrx turns a Rust panic into a PostgreSQL ERROR by unwinding to the nearest #[pg_guard]; with panic = "abort"
// a panic would take the whole server down (the postmaster restarts every backend after a crash).
#[cfg(not(panic = "unwind"))]
compile_error!("tenant_guard must be built with panic = \"unwind\" (see [profile.*] in Cargo.toml)");

use pgrx::prelude::*;

pub mod audit;
pub mod citus;
pub mod client_cert;
pub use tenant_guard_core::{ciphertext, kek, token};
pub mod context;
pub mod discovery;
pub mod encryption;
pub mod errors;
pub mod guard;
pub mod gucs;
pub mod invalidation;
pub mod issuers;
pub mod keys;
pub mod labels;
pub mod pg_version;
pub mod placement;
pub mod privileged;
pub mod redaction;
pub mod replay;
pub mod requirements;
pub mod revocations;
pub mod shared_verifications;
pub mod shmem;
pub mod tenant_stats;
pub mod transfer;
pub mod uuids;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: plain read of a postmaster global.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        errors::not_preloaded();
    }
    no_backtraces();
    gucs::init();
    replay::init();
    shared_verifications::init();
    discovery::init();
    invalidation::init();
    context::init();
    keys::init();
    labels::init();
    labels::init_xact();
    guard::init();
    citus::init();
    citus::pruning::init();
    redaction::init();
    client_cert::init();
    // last: its executor and utility hooks run outermost, so that what the others run for a statement is part of it
    tenant_stats::init();
    requirements::check_server_version();
}

/// Internals never reach a client, whatever the server's environment: pgrx attaches a Rust backtrace to the DETAIL
/// of an error that crosses a hook when backtraces are enabled (RUST_BACKTRACE), so they are disabled for good
/// before anything can capture one. RUST_LIB_BACKTRACE takes precedence over RUST_BACKTRACE for
/// `Backtrace::capture`; panics still print nothing (pgrx's panic hook reports them as ordinary errors).
fn no_backtraces() {
    // SAFETY: _PG_init runs in the postmaster while it loads shared_preload_libraries, before it starts any
    // thread or process, so no other thread reads the environment meanwhile; backends inherit it.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
}

extension_sql_file!("../sql/bootstrap.sql", name = "schema_grants", bootstrap);
extension_sql_file!("../sql/admin_role.sql", name = "admin_role");
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// This module is required by `cargo pgrx test` invocations.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'tenant_guard'",
            "max_worker_processes = 16",
            "max_parallel_workers = 8",
            // a stand-in for a KMS: a command that prints the master key (a test key, never use it for data)
            "tenant_guard.kek_command = 'echo 5465737420717569636b206d6173746572206b65792c206e6f74207265616c21'",
        ]
    }
}
