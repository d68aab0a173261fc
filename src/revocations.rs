//! Revocation and suspension: single tokens by `jti`, a subject's tokens issued before a time, whole tenants.
//!
//! They live in `tenant.revoked_token`, `tenant.revoked_subject` and `tenant.suspended_tenant` (sql/revocations.sql),
//! so they survive restarts and dump/restore, and are read with the trusted issuers into the key store every
//! backend caches ([`crate::issuers::load`]): a change reaches every backend through `invalidation` like an issuer
//! change, which drops each backend's verified tokens. `context` accepts invalidations at every statement, so a
//! revocation takes effect from the next statement on, for tokens already verified and cached too. The checks
//! themselves are pure Rust (`tenant_guard_core::token::Revocations`).

use crate::errors;
use crate::privileged::select_latest;
use crate::token::Revocations;
use pgrx::prelude::*;

/// Longest jti, issuer or subject accepted, in bytes (the tables' CHECKs say the same): what a token may carry.
const MAX_BYTES: usize = crate::token::MAX_REVOCABLE_BYTES;

fn fail<T>(_status: i32) -> T {
    errors::internal("tenant_guard could not read the revocations".into())
}

/// Reads every revocation and suspension. The caller is inside `Spi::connect`, as the bootstrap superuser.
pub fn load() -> Revocations {
    let mut out = Revocations::default();
    for jti in select_latest(c"SELECT jti FROM tenant.revoked_token", &[], |r| r.get::<String>(1)).unwrap_or_else(fail)
    {
        out.tokens.extend(jti);
    }
    // a token issued within the second of the cut counts as issued before it
    let subjects = select_latest(
        c"SELECT issuer, subject, \
                 pg_catalog.ceil(pg_catalog.date_part('epoch', issued_before))::pg_catalog.int8 \
            FROM tenant.revoked_subject",
        &[],
        |r| (r.get::<String>(1), r.get::<String>(2), r.get::<i64>(3)),
    )
    .unwrap_or_else(fail);
    for (issuer, subject, before) in subjects {
        if let (Some(issuer), Some(subject), Some(before)) = (issuer, subject, before) {
            out.subjects.insert((issuer, subject), before);
        }
    }
    for tenant in select_latest(c"SELECT tenant FROM tenant.suspended_tenant", &[], |r| r.get::<pgrx::Uuid>(1))
        .unwrap_or_else(fail)
        .into_iter()
        .flatten()
    {
        out.suspended.insert(crate::uuids::from_pg(&tenant));
    }
    out
}

fn required<'a>(what: &str, value: Option<&'a str>) -> &'a str {
    let Some(v) = value else { errors::invalid_parameter(format!("{what} must not be NULL"), None) };
    crate::issuers::check_text(what, v, MAX_BYTES);
    v
}

fn tenant_required(tenant: Option<pgrx::Uuid>) -> pgrx::Uuid {
    tenant.unwrap_or_else(|| errors::invalid_parameter("tenant must not be NULL".into(), None))
}

fn changed(sql: &str, args: &[pgrx::datum::DatumWithOid<'_>]) -> bool {
    Spi::get_one_with_args::<bool>(sql, args)
        .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not store the revocation: {e}")))
        .unwrap_or(false)
}

/// Revokes every token with this `jti`. Returns whether it was not revoked yet.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn revoke_token(jti: Option<&str>) -> bool {
    let jti = required("jti", jti);
    changed(
        "WITH i AS (INSERT INTO tenant.revoked_token (jti) VALUES ($1) ON CONFLICT (jti) DO NOTHING RETURNING 1) \
         SELECT count(*) > 0 FROM i",
        &[jti.into()],
    )
}

/// Revokes the tokens of `issuer` and `subject` issued before `issued_before` (and those without `iat`).
/// Returns whether the subject was not revoked yet; an existing revocation takes the new time.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn revoke_subject(
    issuer: Option<&str>,
    subject: Option<&str>,
    issued_before: default!(Option<pgrx::datum::TimestampWithTimeZone>, "now()"),
) -> bool {
    let issuer = required("issuer", issuer);
    let subject = required("subject", subject);
    let Some(issued_before) = issued_before else {
        errors::invalid_parameter(
            "issued_before must not be NULL".into(),
            Some("Pass the time before which the subject's tokens are refused, or omit it for now()."),
        )
    };
    if !issued_before.is_finite() {
        errors::invalid_parameter("issued_before must be a finite time".into(), None);
    }
    let trusted = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM tenant.trusted_issuer WHERE issuer = $1)",
        &[issuer.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !trusted {
        // allowed (an issuer about to be trusted), but most often a misspelling that revokes nothing
        errors::warning(
            "the subject is revoked for an issuer that is not trusted: no token matches it until one is".into(),
            "Issuers are matched byte for byte: see tenant.issuers for their exact names.",
        );
    }
    changed(
        "WITH i AS (INSERT INTO tenant.revoked_subject AS r (issuer, subject, issued_before) VALUES ($1, $2, $3) \
                    ON CONFLICT (issuer, subject) DO UPDATE SET issued_before = EXCLUDED.issued_before, \
                    revoked_at = now() RETURNING (xmax = 0) AS inserted) \
         SELECT bool_or(inserted) FROM i",
        &[issuer.into(), subject.into(), issued_before.into()],
    )
}

/// Suspends a tenant. Returns whether it was not suspended yet.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn suspend_tenant(tenant: Option<pgrx::Uuid>) -> bool {
    // no waiting for the tenant's transactions in flight: a suspension cuts them off at their next statement
    let tenant = tenant_required(tenant);
    changed(
        "WITH i AS (INSERT INTO tenant.suspended_tenant (tenant) VALUES ($1) ON CONFLICT (tenant) DO NOTHING \
                    RETURNING 1) SELECT count(*) > 0 FROM i",
        &[tenant.into()],
    )
}

/// Lifts a tenant's suspension. Returns whether it was suspended.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn resume_tenant(tenant: Option<pgrx::Uuid>) -> bool {
    changed(
        "WITH d AS (DELETE FROM tenant.suspended_tenant WHERE tenant = $1 RETURNING 1) SELECT count(*) > 0 FROM d",
        &[tenant_required(tenant).into()],
    )
}

extension_sql_file!(
    "../sql/revocations.sql",
    name = "revocations_schema",
    requires = ["admin_role", revoke_token, revoke_subject, suspend_tenant, resume_tenant],
);
