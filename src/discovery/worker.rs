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
        // every statement below is fully qualified; nothing else should be found on a path
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
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
        for job in BackgroundWorker::transaction(due) {
            let outcome = fetch::fetch(&fetch::Request {
                issuer: &job.issuer,
                configuration_url: &job.configuration_url,
                allowed_hosts: &job.allowed_hosts,
                ca_file: gucs::discovery_ca_file().as_deref(),
                timeout: Duration::from_secs(gucs::discovery_timeout()),
            });
            BackgroundWorker::transaction(move || store(&job.issuer, outcome));
        }
        sleep = Duration::from_secs_f64(BackgroundWorker::transaction(until_next));
    }
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
    Spi::run_with_args(
        "UPDATE tenant.issuer_discovery SET next_fetch = LEAST(next_fetch, \
                COALESCE(last_fetch, pg_catalog.now()) OPERATOR(pg_catalog.+) \
                pg_catalog.make_interval(secs => $1))",
        &[(min_refresh as f64).into()],
    )
    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not schedule an early fetch: {e}")));
}

/// The issuers to fetch now: those due and those asked for.
fn due() -> Vec<Job> {
    if !installed() {
        return Vec::new();
    }
    Spi::connect(|client| {
        client
            .select(
                "SELECT issuer, configuration_url, allowed_hosts FROM tenant.issuer_discovery \
                  WHERE refresh_requested OR next_fetch OPERATOR(pg_catalog.<=) pg_catalog.now() \
                  ORDER BY next_fetch",
                None,
                &[],
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
            .unwrap_or_default()
    })
}

/// Records a fetch: a good key set replaces the issuer's keys (only if they changed, so that unchanged keys cost
/// the backends nothing); a failure keeps them and is retried after the minimum interval.
fn store(issuer: &str, outcome: Result<Fetched, String>) {
    let (min_refresh, max_refresh) = gucs::discovery_refresh_bounds();
    // the row is locked first: an administrator registering keys by hand meanwhile (which ends the discovery) wins
    let still_discovered = Spi::get_one_with_args::<bool>(
        "SELECT true FROM tenant.issuer_discovery WHERE issuer OPERATOR(pg_catalog.=) $1 FOR UPDATE",
        &[issuer.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !still_discovered {
        return;
    }
    match outcome {
        Ok(fetched) => {
            let after = tenant_guard_core::discovery::refresh_after(fetched.max_age, (min_refresh, max_refresh));
            Spi::run_with_args(
                "UPDATE tenant.trusted_issuer SET jwks = $2, updated_at = pg_catalog.now() \
                  WHERE issuer OPERATOR(pg_catalog.=) $1 AND jwks OPERATOR(pg_catalog.<>) $2",
                &[issuer.into(), JsonB(fetched.jwks).into()],
            )
            .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not store a fetched key set: {e}")));
            Spi::run_with_args(
                "UPDATE tenant.issuer_discovery SET jwks_uri = $2, last_fetch = pg_catalog.now(), \
                        last_success = pg_catalog.now(), last_error = NULL, refresh_requested = false, \
                        next_fetch = pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3) \
                  WHERE issuer OPERATOR(pg_catalog.=) $1",
                &[issuer.into(), fetched.jwks_uri.into(), (after as f64).into()],
            )
            .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not record a fetch: {e}")));
            pgrx::debug1!("tenant_guard fetched {} keys of issuer \"{}\"", fetched.keys, issuer.escape_default());
        }
        Err(error) => {
            Spi::run_with_args(
                "UPDATE tenant.issuer_discovery SET last_fetch = pg_catalog.now(), last_error = $2, \
                        refresh_requested = false, \
                        next_fetch = pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3) \
                  WHERE issuer OPERATOR(pg_catalog.=) $1",
                &[issuer.into(), error.into(), (min_refresh as f64).into()],
            )
            .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not record a fetch: {e}")));
        }
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
