//! The discovery worker: one background worker per database of `tenant_guard.discovery_databases`, which fetches
//! the key sets of that database's discovered issuers when they are due, asked for, or needed early (a token with
//! an unknown `kid`), and records each outcome. Network I/O happens outside any transaction; each outcome is stored
//! in a short transaction of its own.

use super::fetch::{self, Fetched};
use super::{slot, MAX_DATABASES};
use crate::errors;
use crate::gucs;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::JsonB;
use pgrx::PgTryBuilder;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Longest sleep between two looks at the schedule, in seconds (a wake-up lost in a restart costs at most this).
const MAX_SLEEP_SECS: f64 = 30.0;

/// Registers one worker per listed database. From `_PG_init`, in the postmaster.
pub fn register_all() {
    let databases = gucs::discovery_databases();
    if databases.len() > MAX_DATABASES {
        errors::warning(
            format!(
                "tenant_guard.discovery_databases lists {} databases; discovery runs in the first {MAX_DATABASES}",
                databases.len()
            ),
            "List fewer databases.",
        );
    }
    for (index, database) in databases.iter().enumerate().take(MAX_DATABASES) {
        BackgroundWorkerBuilder::new(&format!("tenant_guard key-set discovery ({database})"))
            .set_type("tenant_guard discovery")
            .set_library("tenant_guard")
            .set_function("tenant_guard_discovery_main")
            .set_argument(Some(pg_sys::Datum::from(index)))
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(Some(Duration::from_secs(10)))
            .load();
    }
}

/// One discovered issuer due for a fetch.
struct Job {
    issuer: String,
    configuration_url: String,
    allowed_hosts: Vec<String>,
}

/// The worker's entry point (named by `register_all`).
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn tenant_guard_discovery_main(arg: pg_sys::Datum) {
    let index = arg.value();
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let Some(database) = gucs::discovery_databases().get(index).cloned() else { return };
    let Some(slot) = slot(index) else { return };
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // SAFETY: this worker's database and latch, published for the backends of that database; both live as long as
    // the worker (a restarted worker publishes its own).
    unsafe {
        slot.latch.store(pg_sys::MyLatch, Ordering::Release);
        slot.database.store(pg_sys::MyDatabaseId.to_u32(), Ordering::Release);
    }
    override_settings();
    let mut sleep = Duration::ZERO;
    while BackgroundWorker::wait_latch(Some(sleep)) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: what every background worker does on SIGHUP, outside any transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        slot.requested.store(false, Ordering::Release);
        let unknown_key = slot.unknown_key.swap(false, Ordering::AcqRel);
        let (min_refresh, _) = gucs::discovery_refresh_bounds();
        if unknown_key {
            BackgroundWorker::transaction(move || fetch_early(min_refresh));
        }
        for job in BackgroundWorker::transaction(move || due(min_refresh)) {
            // a shutdown waits for one fetch at most (the others claimed are retried after the minimum interval)
            if BackgroundWorker::sigterm_received() {
                break;
            }
            let outcome = fetch::fetch(&fetch::Request {
                issuer: &job.issuer,
                configuration_url: &job.configuration_url,
                allowed_hosts: &job.allowed_hosts,
                ca_file: gucs::discovery_ca_file().as_deref(),
                timeout: Duration::from_secs(gucs::discovery_timeout()),
            });
            BackgroundWorker::transaction(move || store_or_record(&job.issuer, outcome));
        }
        sleep = Duration::from_secs_f64(BackgroundWorker::transaction(until_next));
    }
    // Asked to stop: at a server shutdown nothing restarts it; otherwise (pg_terminate_backend) it restarts after
    // its restart time, rather than leaving the database without discovery until the next server start (an exit
    // status of 0 would unregister it).
    // SAFETY: the normal way out of a background worker.
    unsafe { pg_sys::proc_exit(1) };
}

/// The worker's own settings, whatever the database's or a role's defaults say (a database owner may set any
/// user-level setting for their database, and the worker connects to it): nothing found on a path, the bootstrap
/// superuser's own role, transactions that can write and are not cut short, and lock waits bounded (a lock an
/// administrator holds delays one issuer's fetch, recorded as its error, never all of them).
fn override_settings() {
    const SETTINGS: &[(&std::ffi::CStr, &std::ffi::CStr)] = &[
        (c"search_path", c"pg_catalog, pg_temp"),
        (c"role", c"none"),
        (c"default_transaction_read_only", c"off"),
        (c"default_transaction_isolation", c"read committed"),
        (c"statement_timeout", c"0"),
        (c"idle_in_transaction_session_timeout", c"0"),
        (c"lock_timeout", c"1s"),
        (c"standard_conforming_strings", c"on"),
        #[cfg(any(feature = "pg17", feature = "pg18"))]
        (c"transaction_timeout", c"0"),
    ];
    for (name, value) in SETTINGS {
        // SAFETY: both strings are NUL-terminated and static; an override source beats every default.
        unsafe {
            pg_sys::SetConfigOption(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_OVERRIDE,
            )
        };
    }
    BackgroundWorker::transaction(|| {
        // SAFETY: a catalog lookup of the current role, inside a transaction.
        if !unsafe { pg_sys::superuser() } {
            errors::internal("tenant_guard's discovery worker does not run as a superuser".into());
        }
    });
}

/// Whether tenant_guard is installed in this database (its tables exist).
fn installed() -> bool {
    Spi::get_one::<bool>("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'tenant_guard')")
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// A token named an unknown `kid`: every discovered issuer is due as soon as its minimum interval since the last
/// fetch has passed (now, for most; the request is kept in the schedule, never dropped).
fn fetch_early(min_refresh: i64) {
    if !installed() {
        return;
    }
    // rows an administrator has locked are skipped, not waited for (their next scheduled fetch stands)
    Spi::run_with_args(
        "UPDATE tenant.issuer_discovery d SET next_fetch = LEAST(d.next_fetch, \
                COALESCE(d.last_fetch, pg_catalog.now()) OPERATOR(pg_catalog.+) \
                pg_catalog.make_interval(secs => $1)) \
          WHERE d.issuer OPERATOR(pg_catalog.=) ANY (SELECT l.issuer FROM tenant.issuer_discovery l \
                                                     FOR UPDATE SKIP LOCKED)",
        &[(min_refresh as f64).into()],
    )
    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not schedule an early fetch: {e}")));
}

/// The issuers to fetch now (those due and those asked for), claimed: their next fetch is set `min_refresh` ahead
/// before anything is fetched, so that an issuer whose fetch or storing fails, however it fails, is retried after the
/// minimum interval and never holds up the others.
fn due(min_refresh: i64) -> Vec<Job> {
    if !installed() {
        return Vec::new();
    }
    Spi::connect_mut(|client| {
        client
            .update(
                "UPDATE tenant.issuer_discovery d SET last_fetch = pg_catalog.now(), refresh_requested = false, \
                        next_fetch = pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $1) \
                  WHERE d.issuer OPERATOR(pg_catalog.=) ANY ( \
                        SELECT l.issuer FROM tenant.issuer_discovery l \
                         WHERE l.refresh_requested OR l.next_fetch OPERATOR(pg_catalog.<=) pg_catalog.now() \
                           FOR UPDATE SKIP LOCKED) \
                 RETURNING d.issuer, d.configuration_url, d.allowed_hosts",
                None,
                &[(min_refresh as f64).into()],
            )
            .map(|rows| {
                rows.filter_map(|row| {
                    Some(Job {
                        issuer: row.get::<String>(1).ok()??,
                        configuration_url: row.get::<String>(2).ok()??,
                        allowed_hosts: row.get::<Vec<String>>(3).ok()?.unwrap_or_default(),
                    })
                })
                .collect()
            })
            .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not read the discovered issuers: {e}")))
    })
}

/// Records a fetch ([`store`]) in a subtransaction: if storing fails anyway (a lock conflict, a key set PostgreSQL
/// refuses), that failure is recorded as the fetch's error instead, and the worker goes on with the other issuers.
fn store_or_record(issuer: &str, outcome: Result<Fetched, String>) {
    // SAFETY: the subtransaction pattern of PL/pgSQL's exception blocks: begin, then release on success or roll back
    // on error, restoring the memory context and resource owner of the enclosing transaction either way.
    let (context, owner) = unsafe {
        let saved = (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner);
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        saved
    };
    let restore = move || {
        // SAFETY: as above; `context` and `owner` belong to the enclosing transaction, which is still open.
        unsafe {
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
        }
    };
    let failure = PgTryBuilder::new(|| {
        store(issuer, outcome);
        // SAFETY: the subtransaction begun above, still the current one.
        unsafe { pg_sys::ReleaseCurrentSubTransaction() };
        restore();
        None
    })
    .catch_others(|error| {
        // SAFETY: the subtransaction begun above, whose error has been caught.
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
        Some(match error {
            pg_sys::panic::CaughtError::PostgresError(report)
            | pg_sys::panic::CaughtError::ErrorReport(report)
            | pg_sys::panic::CaughtError::RustPanic { ereport: report, .. } => report.message().to_owned(),
        })
    })
    .execute();
    if let Some(message) = failure {
        record_error(issuer, &format!("the fetched key set could not be stored: {message}"));
    }
}

fn record_error(issuer: &str, error: &str) {
    // the retry is scheduled already (see `due`)
    Spi::run_with_args(
        "UPDATE tenant.issuer_discovery SET last_error = $2 WHERE issuer OPERATOR(pg_catalog.=) $1",
        &[issuer.into(), error.replace('\0', "\\0").into()],
    )
    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not record a fetch: {e}")));
}

/// Records a fetch: a good key set replaces the issuer's keys (only if they changed: an unchanged set changes no
/// row and fires no trigger, so it costs the backends nothing); a failure keeps them. Locks the issuer's rows in
/// the order the administrators' functions do (the issuer, then its discovery).
fn store(issuer: &str, outcome: Result<Fetched, String>) {
    let stored = Spi::get_one_with_args::<JsonB>(
        "SELECT i.jwks FROM tenant.trusted_issuer i WHERE i.issuer OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
        &[issuer.into()],
    )
    .ok()
    .flatten();
    let allowed = Spi::get_one_with_args::<Vec<String>>(
        "SELECT allowed_hosts FROM tenant.issuer_discovery WHERE issuer OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
        &[issuer.into()],
    )
    .ok()
    .flatten();
    // untrusted, or registered by hand, meanwhile: the administrator's word stands
    let (Some(JsonB(stored)), Some(allowed)) = (stored, allowed) else { return };
    // the allowed hosts may have changed while the fetch was under way: what they no longer allow is not stored
    let outcome = outcome.and_then(|fetched| {
        match tenant_guard_core::discovery::check_host(&fetched.jwks_uri, issuer, &allowed) {
            Ok(()) => Ok(fetched),
            Err(e) => Err(e.to_string()),
        }
    });
    let (min_refresh, max_refresh) = gucs::discovery_refresh_bounds();
    match outcome {
        Ok(fetched) => {
            let after = tenant_guard_core::discovery::refresh_after(fetched.max_age, (min_refresh, max_refresh));
            if stored != fetched.jwks {
                Spi::run_with_args(
                    "UPDATE tenant.trusted_issuer SET jwks = $2, updated_at = pg_catalog.now() \
                      WHERE issuer OPERATOR(pg_catalog.=) $1",
                    &[issuer.into(), JsonB(fetched.jwks).into()],
                )
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not store a fetched key set: {e}")));
            }
            Spi::run_with_args(
                "UPDATE tenant.issuer_discovery SET jwks_uri = $2, last_success = last_fetch, last_error = NULL, \
                        next_fetch = pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3) \
                  WHERE issuer OPERATOR(pg_catalog.=) $1",
                &[issuer.into(), fetched.jwks_uri.into(), (after as f64).into()],
            )
            .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not record a fetch: {e}")));
            pgrx::debug1!("tenant_guard fetched {} keys of issuer \"{}\"", fetched.keys, issuer.escape_default());
        }
        Err(error) => record_error(issuer, &error),
    }
}

/// Seconds until the next issuer is due (0 when one is asked for), at most [`MAX_SLEEP_SECS`].
fn until_next() -> f64 {
    if !installed() {
        return MAX_SLEEP_SECS;
    }
    Spi::get_one::<f64>(
        "SELECT pg_catalog.min(CASE WHEN refresh_requested THEN 0 ELSE \
                pg_catalog.date_part('epoch', next_fetch OPERATOR(pg_catalog.-) pg_catalog.now()) END) \
           FROM tenant.issuer_discovery",
    )
    .ok()
    .flatten()
    .unwrap_or(MAX_SLEEP_SECS)
    .clamp(0.05, MAX_SLEEP_SECS)
}
