//! Every `tenant_guard.*` setting, in one place.
//!
//! All settings except the token are `PGC_SUSET`: only a superuser (or a role a superuser granted `SET` on the
//! parameter to) can change them, in `postgresql.conf`, `ALTER SYSTEM`, `ALTER DATABASE/ROLE ... SET`, or a session.
//! A user who could widen the leeway or the lifetime could make expired tokens valid again.
//!
//! The master-key providers (`kek_file`, `kek_command` and their `kek_previous_*` twins) are `PGC_SIGHUP`: they can
//! be set only in `postgresql.conf` or with `ALTER SYSTEM` (both superuser-only) and take effect on reload. A command
//! line may carry a credential for the KMS, and a path leads to the key: they are hidden from `SHOW ALL` and
//! `pg_settings`, and a show hook gives their value to superusers only. (`GUC_SUPERUSER_ONLY` alone would let every
//! member of `pg_read_all_settings`, so every `pg_monitor` member, read them with `SHOW` or `current_setting()`.)
//!
//! The token is `PGC_USERSET`, because any client must be able to present one, and `GUC_SUPERUSER_ONLY`, so that
//! code running later in the session cannot read it back with `SHOW` or `current_setting()`. Setting it only stores
//! a string: the tenant is derived by verifying that string (see `context`). A token is accepted only from a
//! session (`SET [LOCAL]`, `set_config`, `tenant.authenticate`) or a connection option: a check hook refuses it as a
//! stored default (a role, role-in-database or database default, a function's `SET` clause, `postgresql.conf`,
//! `ALTER SYSTEM`, the server's command line), where it would hand every later session a tenant without a token of
//! its own, and where every role can read it. [`token_origin`] tells the context where the current value came from.

use crate::errors;
use pgrx::{pg_guard, pg_sys, GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::{CStr, CString};

/// Name of the token setting, as SQL sees it.
pub const TOKEN_NAME: &CStr = c"tenant_guard.token";
/// Name of the setting that carries the connection's client certificate to parallel workers (see `client_cert`).
pub const CLIENT_CERTIFICATE_NAME: &CStr = c"tenant_guard.client_certificate";

pub static TOKEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CLOCK_SKEW: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static MAX_TOKEN_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static ALLOW_SESSION_SCOPE: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static HIDE_STATISTICS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static ALLOW_EXPLAIN: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static HIDE_PLANNER_STATISTICS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static ALLOW_LARGE_OBJECTS: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static TENANT_CLAIM: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"tenant_id"));
pub static POOLER_STATEMENT_PREFIX: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CITUS_TICKET: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CLIENT_CERTIFICATE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static REPLAY_CACHE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(65536);
pub static VERIFICATION_CACHE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(16384);
pub static STATS_MAX_TENANTS: GucSetting<i32> = GucSetting::<i32>::new(10000);
pub static TRACK_TENANTS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static DISCOVERY_DATABASES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static DISCOVERY_CA_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static DISCOVERY_MIN_REFRESH: GucSetting<i32> = GucSetting::<i32>::new(300);
pub static DISCOVERY_MAX_REFRESH: GucSetting<i32> = GucSetting::<i32>::new(86400);
pub static DISCOVERY_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static KEK_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static KEK_COMMAND: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static KEK_PREVIOUS_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static KEK_PREVIOUS_COMMAND: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static TENANT_KEK_COMMAND: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static TENANT_KEY_CACHE_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(60);
/// The extensions whose SECURITY INVOKER functions an administrator's statement may run from the expressions of a
/// relation whose owner is not trusted (see `guard::admin_reach`): functions that only compute over their arguments.
pub static ADMIN_REACH_EXTENSIONS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"btree_gin,btree_gist,citext,cube,earthdistance,fuzzystrmatch,hstore,intarray,isn,ltree,pg_trgm,pgcrypto,unaccent,uuid-ossp"));

/// Largest accepted `tenant_guard.clock_skew`, in seconds.
pub const MAX_CLOCK_SKEW: i32 = 300;
/// Largest accepted `tenant_guard.max_token_lifetime`, in seconds (7 days).
pub const MAX_LIFETIME_LIMIT: i32 = 7 * 24 * 3600;

pub fn init() {
    // SAFETY: check_token and assign_token are #[pg_guard] functions with the signatures PostgreSQL expects.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            TOKEN_NAME,
            c"Signed token (compact JWS) that sets the tenant context.",
            c"Only a token that verifies against a trusted issuer yields a tenant; anything else yields no context. \
              Use SET LOCAL in transaction-pooled connections. Not readable back by non-superusers, and never \
              accepted as a stored default.",
            &TOKEN,
            GucContext::Userset,
            GucFlags::NO_SHOW_ALL | GucFlags::SUPERUSER_ONLY,
            Some(check_token),
            Some(assign_token),
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"tenant_guard.clock_skew",
        c"Leeway in seconds for the exp, nbf and iat claims.",
        c"At most 300 seconds. Superuser only.",
        &CLOCK_SKEW,
        0,
        MAX_CLOCK_SKEW,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"tenant_guard.max_token_lifetime",
        c"Longest accepted token lifetime in seconds, from iat (or nbf) to exp.",
        c"Tokens that live longer are rejected even when their signature is valid. Superuser only.",
        &MAX_TOKEN_LIFETIME,
        1,
        MAX_LIFETIME_LIMIT,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"tenant_guard.allow_session_scope",
        c"Whether a tenant context may outlive its transaction (authenticate(token, 'session'), session-level SET).",
        c"Turn it off for roles that connect through a transaction-mode pooler (ALTER ROLE app SET \
          tenant_guard.allow_session_scope = off): a session context would pass to the next client. Superuser only.",
        &ALLOW_SESSION_SCOPE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"tenant_guard.hide_statistics",
        c"Whether confined roles are refused PostgreSQL's statistics functions and views, and server LOG messages.",
        c"When on, roles that are not superusers, tenant_guard_admin or pg_read_all_stats members get 42501 from \
          pg_stat_get_* (so pg_stat_user_tables, pg_stat_activity, ...), pg_stat_statements, relation sizes and \
          the page-inspection extensions in databases with tenant_guard, and no LOG or DEBUG message reaches their \
          client: these count other tenants' rows. Superuser only.",
        &HIDE_STATISTICS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"tenant_guard.hide_planner_statistics",
        c"Whether the planner plans confined roles' queries on protected tables without column statistics.",
        c"Statistics are gathered over every tenant's rows; the plan they choose decides the order of a confined \
          role's own rows and the time a query takes, which tell it whether a value is common among other tenants. \
          Off: better plans for skewed data, and that oracle. Superuser only.",
        &HIDE_PLANNER_STATISTICS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"tenant_guard.allow_explain",
        c"Whether confined roles may run plain EXPLAIN (without ANALYZE) over protected tables.",
        c"Its row estimates come from statistics over every tenant's rows, so it is off by default. EXPLAIN ANALYZE \
          stays refused. Turn it on for developer roles only (ALTER ROLE dev SET tenant_guard.allow_explain = on). \
          Superuser only.",
        &ALLOW_EXPLAIN,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"tenant_guard.allow_large_objects",
        c"Whether confined roles may use large objects in databases with tenant_guard.",
        c"Large objects are not tenant-scoped: one stored under one tenant's context can be listed and read under \
          any other. Off by default. Superuser only.",
        &ALLOW_LARGE_OBJECTS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.tenant_claim",
        c"Claim that carries the tenant id (a uuid), for issuers that do not name their own.",
        c"tenant.trust_issuer(..., tenant_claim => ...) overrides it per issuer. Superuser only.",
        &TENANT_CLAIM,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.admin_reach_extensions",
        c"Extensions whose functions an administrator's statement may run from the expressions of a table or view \
          whose owner is not an administrator (a default, a check, a view, a rule).",
        c"Comma-separated extension names. Functions of other extensions (dblink, Citus), and functions an \
          administrator wrote that are not SECURITY DEFINER, would run there with the administrator's rights: such \
          a statement is refused (42501). List only extensions whose functions compute over their arguments. \
          Superuser only.",
        &ADMIN_REACH_EXTENSIONS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.pooler_statement_prefix",
        c"Names of the prepared statements a transaction pooler manages (PGBOUNCER_ for pgbouncer 1.21 and later).",
        c"While allow_session_scope is off, a prepared statement runs only in the transaction that parsed it, \
          except statements named with this prefix, which the pooler prepares on each server connection for its \
          clients and which SQL PREPARE and DEALLOCATE may not touch. Empty by default. Superuser only.",
        &POOLER_STATEMENT_PREFIX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.citus_ticket",
        c"Set by a Citus coordinator in each remote transaction: proof that the session works for that distributed \
          transaction.",
        c"Made from the master key; a session without it may not read or write another distributed transaction's \
          intermediate results. Not for users to set.",
        &CITUS_TICKET,
        GucContext::Userset,
        GucFlags::NO_SHOW_ALL | GucFlags::SUPERUSER_ONLY,
    );
    // SAFETY: the check hook is a #[pg_guard] function with the signature PostgreSQL expects.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            CLIENT_CERTIFICATE_NAME,
            c"Set by tenant_guard when a client connects: whether the connection is TLS, and the SHA-256 thumbprint \
              of the client certificate the server verified.",
            c"Parallel workers receive it from their leader. Nobody else can set it.",
            &CLIENT_CERTIFICATE,
            GucContext::Suset,
            GucFlags::NO_SHOW_ALL | GucFlags::DISALLOW_IN_FILE | GucFlags::NO_RESET_ALL,
            Some(check_client_certificate),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"tenant_guard.replay_cache_size",
        c"How many used jti values the server remembers, for issuers that require a jti used once.",
        c"Entries are kept until their token expires; when every entry is in use, a new token of such an issuer is \
          refused (53400) rather than accepted unchecked. About 40 bytes each, in shared memory. Server start only.",
        &REPLAY_CACHE_SIZE,
        128,
        4 * 1024 * 1024,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"tenant_guard.verification_cache_size",
        c"How many verified tokens the server remembers for all its backends (0: none).",
        c"A token verified in one backend is then accepted by the others without checking its signature again; \
          every other check runs at each use. Entries hold a hash of the token, never the token. About 80 bytes \
          each, in shared memory. Server start only.",
        &VERIFICATION_CACHE_SIZE,
        0,
        4 * 1024 * 1024,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"tenant_guard.stats_max_tenants",
        c"How many tenants per-tenant statistics (tenant.stats) keep at once (0: no statistics).",
        c"When every entry is in use, the least recently active of the tenants a new one competes with is evicted \
          and counted. About 300 bytes each, in shared memory. Server start only.",
        &STATS_MAX_TENANTS,
        0,
        1024 * 1024,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"tenant_guard.track_tenants",
        c"Whether per-tenant statistics (tenant.stats) are collected.",
        c"Set in postgresql.conf or with ALTER SYSTEM: no session can stop its own activity from being counted.",
        &TRACK_TENANTS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.discovery_databases",
        c"Databases (comma-separated) in which a background worker fetches the key sets of discovered issuers.",
        c"tenant.trust_issuer_discovery() works only in these databases. One worker per database. Server start only.",
        &DISCOVERY_DATABASES,
        GucContext::Postmaster,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.discovery_ca_file",
        c"PEM file of the certificate authorities trusted for key-set discovery; empty: the system's store.",
        c"Read at each fetch. Only https is ever used.",
        &DISCOVERY_CA_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"tenant_guard.discovery_min_refresh",
        c"Shortest time between two fetches of an issuer's key set, in seconds.",
        c"Bounds the provider's cache lifetime from below, spaces the retries after a failed fetch, and limits the \
          early fetches that a token with an unknown kid asks for.",
        &DISCOVERY_MIN_REFRESH,
        1,
        86400,
        GucContext::Sighup,
        GucFlags::UNIT_S | GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"tenant_guard.discovery_max_refresh",
        c"Longest time between two fetches of an issuer's key set, in seconds.",
        c"Bounds the provider's cache lifetime from above; used when the provider states none.",
        &DISCOVERY_MAX_REFRESH,
        1,
        7 * 86400,
        GucContext::Sighup,
        GucFlags::UNIT_S | GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"tenant_guard.discovery_timeout",
        c"How long one key-set fetch may take in all, in seconds.",
        c"Only the discovery worker waits for it, never a query.",
        &DISCOVERY_TIMEOUT,
        1,
        300,
        GucContext::Sighup,
        GucFlags::UNIT_S | GucFlags::SUPERUSER_ONLY,
    );
    let kek_flags = GucFlags::NO_SHOW_ALL | GucFlags::SUPERUSER_ONLY;
    // SAFETY: the show hooks are #[pg_guard] functions with the signature PostgreSQL expects.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"tenant_guard.kek_file",
            c"File holding the master key (32 bytes as 64 hex digits or base64) that wraps every tenant data key.",
            c"Must be owned by the server's OS user with mode 0600 or stricter. Keep it outside the data directory. \
              Set this or tenant_guard.kek_command, not both. Shown to superusers only.",
            &KEK_FILE,
            GucContext::Sighup,
            kek_flags,
            None,
            None,
            Some(show_kek_file),
        );
        GucRegistry::define_string_guc_with_hooks(
            c"tenant_guard.kek_command",
            c"Command (run by /bin/sh) that prints the master key on standard output: the hook for a KMS or Vault.",
            c"Its standard error is discarded; a non-zero exit status is an error. Set this or tenant_guard.kek_file. \
              Shown to superusers only.",
            &KEK_COMMAND,
            GucContext::Sighup,
            kek_flags,
            None,
            None,
            Some(show_kek_command),
        );
        GucRegistry::define_string_guc_with_hooks(
            c"tenant_guard.kek_previous_file",
            c"File holding the previous master key, while tenant.rewrap_keys() moves data keys to the current one.",
            c"Data keys wrapped by it still unwrap meanwhile. Remove it once tenant.rewrap_keys() has run. \
              Shown to superusers only.",
            &KEK_PREVIOUS_FILE,
            GucContext::Sighup,
            kek_flags,
            None,
            None,
            Some(show_kek_previous_file),
        );
        GucRegistry::define_string_guc_with_hooks(
            c"tenant_guard.kek_previous_command",
            c"Command that prints the previous master key, while tenant.rewrap_keys() moves data keys to the current one.",
            c"Data keys wrapped by it still unwrap meanwhile. Remove it once tenant.rewrap_keys() has run. \
              Shown to superusers only.",
            &KEK_PREVIOUS_COMMAND,
            GucContext::Sighup,
            kek_flags,
            None,
            None,
            Some(show_kek_previous_command),
        );
        GucRegistry::define_string_guc_with_hooks(
            c"tenant_guard.tenant_kek_command",
            c"Command that prints a tenant's own master key (bring your own key), given the tenant id as $1 and the \
              key reference of tenant.set_key_provider() as $2.",
            c"Run by /bin/sh; the arguments are never parsed by the shell. A non-zero exit status means the key is \
              unavailable (revoked): that tenant's data cannot be decrypted. Shown to superusers only.",
            &TENANT_KEK_COMMAND,
            GucContext::Sighup,
            kek_flags,
            None,
            None,
            Some(show_tenant_kek_command),
        );
    }
    GucRegistry::define_int_guc(
        c"tenant_guard.tenant_key_cache_seconds",
        c"How long a backend keeps a tenant's own master key, and the data keys it unwrapped, before it asks the \
          tenant's key provider again.",
        c"A revoked customer key stops decryption in every backend within this time (0: at each use).",
        &TENANT_KEY_CACHE_SECONDS,
        0,
        86400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    // Reserve the prefix: after this, SET tenant_guard.<typo> is an error instead of a silent placeholder.
    // SAFETY: called once from _PG_init, with a static NUL-terminated string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"tenant_guard".as_ptr()) };
}

/// The raw token bytes currently set, without copying. Empty when unset.
///
/// The returned slice borrows GUC-owned memory: it must be dropped before any setting can change (that is, before
/// running SQL or setting a GUC).
pub fn token_bytes<'a>() -> &'a [u8] {
    // SAFETY: the pointer is either NULL or a NUL-terminated string owned by the GUC machinery; we only read it.
    unsafe {
        let ptr = *TOKEN.as_ptr();
        if ptr.is_null() {
            &[]
        } else {
            CStr::from_ptr(ptr).to_bytes()
        }
    }
}

pub fn session_scope_allowed() -> bool {
    ALLOW_SESSION_SCOPE.get()
}

/// `tenant_guard.citus_ticket`, if set (same lifetime rule as [`token_bytes`]).
pub fn citus_ticket<'a>() -> Option<&'a str> {
    // SAFETY: as for token_bytes: the setting's value lives until it is next set.
    unsafe {
        let ptr = *CITUS_TICKET.as_ptr();
        if ptr.is_null() {
            return None;
        }
        CStr::from_ptr(ptr).to_str().ok().filter(|t| !t.is_empty())
    }
}

/// `tenant_guard.replay_cache_size`, in entries.
pub fn replay_cache_size() -> usize {
    REPLAY_CACHE_SIZE.get().max(128) as usize
}

/// `tenant_guard.verification_cache_size`, in entries (0: no shared cache).
pub fn verification_cache_size() -> usize {
    VERIFICATION_CACHE_SIZE.get().max(0) as usize
}

/// `tenant_guard.stats_max_tenants`, in entries (0: no statistics).
pub fn stats_max_tenants() -> usize {
    STATS_MAX_TENANTS.get().max(0) as usize
}

/// `tenant_guard.track_tenants`.
pub fn track_tenants() -> bool {
    TRACK_TENANTS.get()
}

/// `tenant_guard.discovery_databases`, split at commas and trimmed.
pub fn discovery_databases() -> Vec<String> {
    string_setting(&DISCOVERY_DATABASES)
        .unwrap_or_default()
        .split(',')
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect()
}

/// `tenant_guard.discovery_ca_file`; None: the system's store.
pub fn discovery_ca_file() -> Option<String> {
    string_setting(&DISCOVERY_CA_FILE)
}

/// (`tenant_guard.discovery_min_refresh`, `discovery_max_refresh`), in seconds; the maximum is never below the
/// minimum.
pub fn discovery_refresh_bounds() -> (i64, i64) {
    let min = i64::from(DISCOVERY_MIN_REFRESH.get().max(1));
    (min, i64::from(DISCOVERY_MAX_REFRESH.get()).max(min))
}

/// `tenant_guard.discovery_timeout`, in seconds.
pub fn discovery_timeout() -> u64 {
    DISCOVERY_TIMEOUT.get().max(1) as u64
}

/// `tenant_guard.client_certificate` (see `client_cert`): empty unless tenant_guard set it.
pub fn client_certificate<'a>() -> &'a str {
    // SAFETY: as for token_bytes: the setting's value lives until it is next set.
    unsafe {
        let ptr = *CLIENT_CERTIFICATE.as_ptr();
        if ptr.is_null() {
            return "";
        }
        CStr::from_ptr(ptr).to_str().unwrap_or("")
    }
}

/// `tenant_guard.pooler_statement_prefix`, if set (same lifetime rule as [`token_bytes`]).
pub fn pooler_statement_prefix<'a>() -> Option<&'a str> {
    // SAFETY: as for token_bytes: the setting's value lives until it is next set.
    unsafe {
        let ptr = *POOLER_STATEMENT_PREFIX.as_ptr();
        if ptr.is_null() {
            return None;
        }
        CStr::from_ptr(ptr).to_str().ok().filter(|p| !p.is_empty())
    }
}

pub fn statistics_hidden() -> bool {
    HIDE_STATISTICS.get()
}

pub fn planner_statistics_hidden() -> bool {
    HIDE_PLANNER_STATISTICS.get()
}

pub fn explain_allowed() -> bool {
    ALLOW_EXPLAIN.get()
}

pub fn large_objects_allowed() -> bool {
    ALLOW_LARGE_OBJECTS.get()
}

/// What a role that is not a superuser sees of a secret-bearing setting.
const HIDDEN: &CStr = c"(hidden: shown to superusers only)";

/// The displayed value of a secret-bearing setting: its value for a superuser, [`HIDDEN`] for anyone else (members
/// of `pg_read_all_settings` included). The string is palloc'd: PostgreSQL copies it and frees its context.
fn show_secret(setting: &GucSetting<Option<CString>>) -> *const std::ffi::c_char {
    // SAFETY: show hooks run inside a transaction (SHOW, current_setting()), where superuser() may read the catalog;
    // pstrdup copies a NUL-terminated string into the current memory context.
    unsafe {
        if !pg_sys::superuser() {
            return pg_sys::pstrdup(HIDDEN.as_ptr());
        }
        match setting.get() {
            Some(value) => pg_sys::pstrdup(value.as_ptr()),
            None => pg_sys::pstrdup(c"".as_ptr()),
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn show_kek_file() -> *const std::ffi::c_char {
    show_secret(&KEK_FILE)
}

#[pg_guard]
unsafe extern "C-unwind" fn show_kek_command() -> *const std::ffi::c_char {
    show_secret(&KEK_COMMAND)
}

#[pg_guard]
unsafe extern "C-unwind" fn show_kek_previous_file() -> *const std::ffi::c_char {
    show_secret(&KEK_PREVIOUS_FILE)
}

#[pg_guard]
unsafe extern "C-unwind" fn show_kek_previous_command() -> *const std::ffi::c_char {
    show_secret(&KEK_PREVIOUS_COMMAND)
}

#[pg_guard]
unsafe extern "C-unwind" fn show_tenant_kek_command() -> *const std::ffi::c_char {
    show_secret(&TENANT_KEK_COMMAND)
}

/// The secret-bearing settings, by name, with their values (for the audit's credential check).
pub fn secret_settings() -> [(&'static str, Option<String>); 5] {
    [
        ("tenant_guard.kek_file", string_setting(&KEK_FILE)),
        ("tenant_guard.kek_command", string_setting(&KEK_COMMAND)),
        ("tenant_guard.kek_previous_file", string_setting(&KEK_PREVIOUS_FILE)),
        ("tenant_guard.kek_previous_command", string_setting(&KEK_PREVIOUS_COMMAND)),
        ("tenant_guard.tenant_kek_command", string_setting(&TENANT_KEK_COMMAND)),
    ]
}

/// Refuses a non-empty token from any source but a session or a connection option (see the module notes).
#[pg_guard]
unsafe extern "C-unwind" fn check_token(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL passes a pointer to the candidate value, which is NULL or a NUL-terminated string.
    let empty = unsafe { newval.is_null() || (*newval).is_null() || **newval == 0 };
    if empty || matches!(source, pg_sys::GucSource::PGC_S_SESSION | pg_sys::GucSource::PGC_S_CLIENT) {
        return true;
    }
    errors::token_default_refused();
    false
}

/// `tenant_guard.client_certificate` takes a value only from tenant_guard (when a client connects) and from a
/// parallel worker's leader; the empty value (no TLS: certificate-bound tokens are refused) from anyone.
#[pg_guard]
unsafe extern "C-unwind" fn check_client_certificate(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL passes a pointer to the candidate value, which is NULL or a NUL-terminated string.
    let empty = unsafe { newval.is_null() || (*newval).is_null() || **newval == 0 };
    // SAFETY: plain read of a backend global.
    empty || crate::client_cert::setting_it() || unsafe { pg_sys::InitializingParallelWorker }
}

/// A new token (set, or reverted at the end of a transaction or savepoint): plans made for another tenant's shards
/// must be made again (see `citus::pruning`). Reads nothing; may not fail.
#[pg_guard]
unsafe extern "C-unwind" fn assign_token(_newval: *const std::ffi::c_char, _extra: *mut std::ffi::c_void) {
    crate::citus::pruning::token_changed();
}

/// Where the current value of `tenant_guard.token` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOrigin {
    /// `SET LOCAL`, `set_config(..., true)`, `tenant.authenticate(token)`: it ends with the transaction.
    Transaction,
    /// A session-level `SET`, `set_config(..., false)` or `tenant.authenticate(token, 'session')`.
    Session,
    /// The connection's startup options (`options='-c tenant_guard.token=...'`, `PGOPTIONS`).
    ConnectionOption,
    /// Anything else: a stored default or a function's `SET` clause (stored before the check hook refused them).
    Stored,
}

/// The setting's own record in PostgreSQL's GUC tables (looked up once per process; records never move).
fn token_record() -> *mut pg_sys::config_generic {
    thread_local! {
        static RECORD: std::cell::Cell<*mut pg_sys::config_generic> = const { std::cell::Cell::new(std::ptr::null_mut()) };
    }
    let cached = RECORD.get();
    if !cached.is_null() {
        return cached;
    }
    // SAFETY: the setting was defined in _PG_init, so it exists; the lookups only read the GUC tables.
    let found = unsafe { find_record(TOKEN_NAME) };
    RECORD.set(found);
    found
}

#[cfg(feature = "pg15")]
unsafe fn find_record(name: &CStr) -> *mut pg_sys::config_generic {
    // SAFETY: get_guc_variables returns the array of GetNumConfigOptions() records, each with a NUL-terminated name.
    unsafe {
        let vars = pg_sys::get_guc_variables();
        (0..pg_sys::GetNumConfigOptions() as usize)
            .map(|i| *vars.add(i))
            .find(|v| CStr::from_ptr((**v).name).to_bytes().eq_ignore_ascii_case(name.to_bytes()))
            .unwrap_or(std::ptr::null_mut())
    }
}

#[cfg(not(feature = "pg15"))]
unsafe fn find_record(name: &CStr) -> *mut pg_sys::config_generic {
    // SAFETY: find_option (exported since PostgreSQL 16) returns the record or NULL with skip_errors.
    unsafe { pg_sys::find_option(name.as_ptr(), false, true, pgrx::PgLogLevel::ERROR as i32) }
}

/// Where the current token came from, read from the setting's source and its stack of pending changes.
///
/// In a parallel worker the leader's values were restored as session values (with the leader's source), so a
/// worker sees `Session` for a `SET LOCAL` of the leader: the leader, which evaluates every policy's InitPlan and
/// every key operation, has already applied the scope rules.
pub fn token_origin() -> TokenOrigin {
    let record = token_record();
    if record.is_null() {
        return TokenOrigin::Stored;
    }
    // SAFETY: a valid GUC record; its stack is NULL or a list owned by the GUC machinery, read only.
    unsafe {
        match (*record).source {
            pg_sys::GucSource::PGC_S_CLIENT => TokenOrigin::ConnectionOption,
            pg_sys::GucSource::PGC_S_SESSION => {
                let stack = (*record).stack;
                if stack.is_null() {
                    return TokenOrigin::Session;
                }
                match (*stack).state {
                    pg_sys::GucStackState::GUC_LOCAL | pg_sys::GucStackState::GUC_SET_LOCAL => TokenOrigin::Transaction,
                    pg_sys::GucStackState::GUC_SET => TokenOrigin::Session,
                    _ => TokenOrigin::Stored, // GUC_SAVE: a function's SET clause
                }
            }
            _ => TokenOrigin::Stored,
        }
    }
}

/// Whether the current transaction changed PostgreSQL's string setting `name` for the rest of the session (a `SET`
/// or `set_config(..., false)` that COMMIT would keep, also under a later `SET LOCAL` that masks it) to something
/// other than the session's default (what `RESET` and `DISCARD ALL` restore: the role's and database's defaults and
/// the connection's options). Read from the setting's stack of pending changes: the value COMMIT keeps is the
/// current one after a `SET`, and the masked one under a `SET LOCAL`.
pub fn set_for_session_here(name: &CStr) -> bool {
    // SAFETY: the lookups only read the GUC tables; a record's stack is NULL or a list owned by the GUC machinery,
    // and a string setting's values are NULL or NUL-terminated.
    unsafe {
        let record = find_record(name);
        if record.is_null() || (*record).vartype != pg_sys::config_type::PGC_STRING {
            return false;
        }
        let mut kept: Option<*const std::ffi::c_char> = None;
        let mut entry = (*record).stack;
        while !entry.is_null() && kept.is_none() {
            match (*entry).state {
                pg_sys::GucStackState::GUC_SET => {
                    kept = Some(pg_sys::GetConfigOption(name.as_ptr(), true, false));
                }
                pg_sys::GucStackState::GUC_SET_LOCAL => kept = Some((*entry).masked.val.stringval),
                _ => {}
            }
            entry = (*entry).prev;
        }
        let Some(kept) = kept else { return false };
        let reset = pg_sys::GetConfigOptionResetString(name.as_ptr());
        match (kept.is_null(), reset.is_null()) {
            (false, false) => CStr::from_ptr(kept) != CStr::from_ptr(reset),
            (a, b) => a != b,
        }
    }
}

pub fn clock_skew() -> i64 {
    CLOCK_SKEW.get() as i64
}

pub fn max_token_lifetime() -> i64 {
    MAX_TOKEN_LIFETIME.get() as i64
}

/// The global tenant claim name, without copying (same lifetime rule as [`token_bytes`]).
pub fn tenant_claim<'a>() -> &'a str {
    // SAFETY: as for token_bytes.
    unsafe {
        let ptr = *TENANT_CLAIM.as_ptr();
        if ptr.is_null() {
            "tenant_id"
        } else {
            match CStr::from_ptr(ptr).to_str() {
                Ok(name) if !name.is_empty() => name,
                _ => "tenant_id",
            }
        }
    }
}

fn string_setting(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().and_then(|v| v.into_string().ok()).filter(|v| !v.trim().is_empty())
}

/// Whether `extension` is listed in `tenant_guard.admin_reach_extensions`.
pub fn admin_reach_extension(extension: &str) -> bool {
    string_setting(&ADMIN_REACH_EXTENSIONS).is_some_and(|list| list.split(',').any(|name| name.trim() == extension))
}

/// A configured master-key provider (see `keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    File(String),
    Command(String),
}

pub use tenant_guard_core::kek::KekSlot;

/// `tenant_guard.tenant_kek_command`: the provider of tenants' own master keys; None when not set.
pub fn tenant_kek_command() -> Option<String> {
    string_setting(&TENANT_KEK_COMMAND)
}

/// `tenant_guard.tenant_key_cache_seconds`.
pub fn tenant_key_cache_seconds() -> u64 {
    TENANT_KEY_CACHE_SECONDS.get().max(0) as u64
}

/// Both providers of one slot are set.
#[derive(Debug)]
pub struct AmbiguousKek;

/// The provider configured for `slot`: `Ok(None)` when neither setting is set, an error when both are.
pub fn kek_source(slot: KekSlot) -> Result<Option<KekSource>, AmbiguousKek> {
    let (file, command) = match slot {
        KekSlot::Current => (string_setting(&KEK_FILE), string_setting(&KEK_COMMAND)),
        KekSlot::Previous => (string_setting(&KEK_PREVIOUS_FILE), string_setting(&KEK_PREVIOUS_COMMAND)),
    };
    match (file, command) {
        (Some(_), Some(_)) => Err(AmbiguousKek),
        (Some(f), None) => Ok(Some(KekSource::File(f))),
        (None, Some(c)) => Ok(Some(KekSource::Command(c))),
        (None, None) => Ok(None),
    }
}
