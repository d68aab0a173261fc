//! Trusted issuers and their keys: the admin API, where keys are stored, and how every backend learns of changes.
//!
//! Key sets live in `tenant.trusted_issuer`, readable by superusers only, and scopes in `tenant.issuer_tenant`. A
//! change of either reaches every backend through `invalidation`: each drops its parsed keys and its verification
//! cache at its next transaction, so a removed key stops verifying there without a restart.

use crate::errors;
use crate::privileged::{as_bootstrap_superuser, select_latest};
use crate::token::jwk;
use crate::token::{Issuer, KeyStore};
use pgrx::prelude::*;
use pgrx::JsonB;

/// Longest issuer (`iss`) accepted, in bytes.
pub const MAX_ISSUER_BYTES: usize = 1024;
/// Longest audience or claim name accepted, in bytes.
const MAX_NAME_BYTES: usize = 256;

/// Reads every trusted issuer and its scope.
///
/// The caller may be any role, including one with no rights on the table, so the query runs as the bootstrap
/// superuser. The query text is fixed and fully qualified, and takes no input. It reads with the latest snapshot:
/// a REPEATABLE READ transaction (or one that imported an old snapshot) would otherwise cache issuers or scopes an
/// administrator has since removed, until the next change.
pub fn load() -> KeyStore {
    as_bootstrap_superuser(|| {
        Spi::connect(|_client| {
            let rows = select_latest(
                c"SELECT i.issuer, i.jwks::pg_catalog.text, i.audience, i.tenant_claim, \
                         (SELECT pg_catalog.array_agg(t.tenant) FROM tenant.issuer_tenant t \
                           WHERE t.issuer OPERATOR(pg_catalog.=) i.issuer), i.require_cert_binding, i.require_jti \
                    FROM tenant.trusted_issuer i",
                &[],
                |row| {
                    (
                        row.get::<String>(1),
                        row.get::<String>(2),
                        row.get::<String>(3),
                        row.get::<String>(4),
                        row.get::<Vec<pgrx::Uuid>>(5),
                        row.get::<bool>(6),
                        row.get::<bool>(7),
                    )
                },
            )
            .unwrap_or_else(|_| errors::internal("tenant_guard could not read tenant.trusted_issuer".into()));
            let mut store = KeyStore::default();
            store.revocations = crate::revocations::load();
            store.placement = crate::placement::load();
            for (name, jwks, audience, tenant_claim, tenants, binding, once) in rows {
                let (Some(name), Some(jwks)) = (name, jwks) else {
                    continue;
                };
                // An issuer whose keys cannot be used is still registered, without keys: it verifies nothing, and
                // the tenants it lists stay reserved to it (another issuer must not speak for them meanwhile).
                let keys = match jwk::parse_jwks(&jwks) {
                    Ok(set) => set.keys,
                    // a discovered issuer whose first fetch has not succeeded yet: nothing to say
                    Err(jwk::JwksError::Empty) => Vec::new(),
                    // only reachable if the table was edited by hand: say so, and name no key
                    Err(e) => {
                        errors::warning(
                            format!("tenant_guard ignores the keys of issuer \"{}\": {e}", name.escape_default()),
                            "Register it again with tenant.trust_issuer().",
                        );
                        Vec::new()
                    }
                };
                store.insert(
                    name,
                    Issuer {
                        audience,
                        tenant_claim,
                        keys,
                        tenants: tenants.map(|list| list.iter().map(crate::uuids::from_pg).collect()),
                        require_cert_binding: binding.unwrap_or(false),
                        require_jti: once.unwrap_or(false),
                    },
                );
            }
            store
        })
    })
}

pub(crate) fn check_text(what: &str, value: &str, max: usize) {
    if value.is_empty() || value.len() > max {
        errors::invalid_parameter(format!("{what} must be between 1 and {max} bytes long"), None);
    }
}

/// Registers or replaces an issuer's key set. Returns the number of keys registered. `tenants`, when not NULL,
/// replaces the list of tenants the issuer may speak for (see [`scope_issuer`]); NULL keeps it.
/// `require_cert_binding`, when not NULL, says whether the issuer's tokens must be bound to a client certificate
/// (`cnf` with `x5t#S256`); NULL keeps it (false for a new issuer). `require_jti` likewise says whether each of
/// its tokens must carry a `jti` and be used in one transaction only (see `replay`).
///
/// SQL: `tenant.trust_issuer(issuer text, jwks jsonb, audience text, tenant_claim text, tenants uuid[])` is a
/// SECURITY DEFINER SQL wrapper (sql/issuers.sql) that passes the key set as text: converting a jsonb argument to
/// Rust would go through serde_json, whose recursion limit turns a deeply nested document into an internal error
/// instead of a clean 22023.
#[pg_extern(volatile, parallel_unsafe, name = "_trust_issuer")]
fn trust_issuer(
    issuer: Option<&str>,
    jwks: Option<&str>,
    audience: Option<&str>,
    tenant_claim: Option<&str>,
    tenants: Option<Vec<Option<pgrx::Uuid>>>,
    require_cert_binding: Option<bool>,
    require_jti: Option<bool>,
) -> i32 {
    let Some(issuer) = issuer else { errors::invalid_parameter("issuer must not be NULL".into(), None) };
    let Some(text) = jwks else {
        errors::invalid_parameter("jwks must not be NULL".into(), Some("Pass a JWKS document: {\"keys\": [...]}."))
    };
    check_text("issuer", issuer, MAX_ISSUER_BYTES);
    let set = jwk::parse_jwks(text).unwrap_or_else(|e| errors::invalid_key_set(&e));
    let count = set.keys.len() as i32;
    register(issuer, Some(set.normalized), audience, tenant_claim, tenants, require_cert_binding, require_jti);
    // keys registered by hand end the issuer's discovery, if it had one
    Spi::run_with_args("DELETE FROM tenant.issuer_discovery WHERE issuer = $1", &[issuer.into()])
        .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not store the issuer: {e}")));
    count
}

/// Stores an issuer: its key set (`None`: keep the one it has; a new issuer gets an empty one, which verifies
/// nothing until discovery fills it), audience, tenant claim, and the options and scope when not NULL (see
/// [`trust_issuer`]). The caller has checked `issuer`.
pub(crate) fn register(
    issuer: &str,
    jwks: Option<serde_json::Value>,
    audience: Option<&str>,
    tenant_claim: Option<&str>,
    tenants: Option<Vec<Option<pgrx::Uuid>>>,
    require_cert_binding: Option<bool>,
    require_jti: Option<bool>,
) {
    if let Some(a) = audience {
        check_text("audience", a, MAX_NAME_BYTES);
    }
    if let Some(c) = tenant_claim {
        check_text("tenant_claim", c, MAX_NAME_BYTES);
    }
    Spi::run_with_args(
        "INSERT INTO tenant.trusted_issuer AS t (issuer, jwks, audience, tenant_claim, require_cert_binding, \
                                                 require_jti) \
         VALUES ($1, coalesce($2, '{\"keys\": []}'), $3, $4, coalesce($5, false), coalesce($6, false)) \
         ON CONFLICT (issuer) DO UPDATE SET jwks = coalesce($2, t.jwks), audience = EXCLUDED.audience, \
         tenant_claim = EXCLUDED.tenant_claim, require_cert_binding = coalesce($5, t.require_cert_binding), \
         require_jti = coalesce($6, t.require_jti), updated_at = pg_catalog.now()",
        &[
            issuer.into(),
            jwks.map(JsonB).into(),
            audience.into(),
            tenant_claim.into(),
            require_cert_binding.into(),
            require_jti.into(),
        ],
    )
    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not store the issuer: {e}")));
    if let Some(tenants) = tenants {
        if tenants.is_empty() {
            errors::invalid_parameter(
                "tenants must list at least one tenant".into(),
                Some("Pass NULL to keep the issuer's tenants, or untrust the issuer to stop trusting it."),
            );
        }
        scope(issuer, Some(tenants));
    }
}

/// Replaces the tenants an issuer may speak for; NULL or an empty array makes it speak for every tenant that no
/// issuer lists. Returns how many tenants it now lists.
#[pg_extern(volatile, parallel_unsafe, security_definer, name = "scope_issuer")]
#[search_path(pg_catalog, pg_temp)]
fn scope_issuer(issuer: Option<&str>, tenants: Option<Vec<Option<pgrx::Uuid>>>) -> i64 {
    let Some(issuer) = issuer else { errors::invalid_parameter("issuer must not be NULL".into(), None) };
    let known = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM tenant.trusted_issuer WHERE issuer = $1)",
        &[issuer.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !known {
        errors::invalid_parameter(
            "issuer is not trusted".into(),
            Some("Trust it first with tenant.trust_issuer(); tenant.issuers lists the trusted issuers."),
        );
    }
    scope(issuer, tenants.filter(|t| !t.is_empty()))
}

fn scope(issuer: &str, tenants: Option<Vec<Option<pgrx::Uuid>>>) -> i64 {
    let tenants: Option<Vec<pgrx::Uuid>> = tenants.map(|list| {
        list.into_iter()
            .map(|t| t.unwrap_or_else(|| errors::invalid_parameter("tenants must not contain NULL".into(), None)))
            .collect()
    });
    Spi::run_with_args("DELETE FROM tenant.issuer_tenant WHERE issuer = $1", &[issuer.into()])
        .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not scope the issuer: {e}")));
    let Some(tenants) = tenants else { return 0 };
    Spi::get_one_with_args::<i64>(
        "WITH i AS (INSERT INTO tenant.issuer_tenant (issuer, tenant) \
                    SELECT DISTINCT $1, t FROM pg_catalog.unnest($2::pg_catalog.uuid[]) t RETURNING 1) \
         SELECT pg_catalog.count(*) FROM i",
        &[issuer.into(), tenants.into()],
    )
    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not scope the issuer: {e}")))
    .unwrap_or(0)
}

/// Removes an issuer and all its keys. Returns whether it existed.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn untrust_issuer(issuer: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "WITH d AS (DELETE FROM tenant.trusted_issuer WHERE issuer = $1 RETURNING 1) SELECT count(*) > 0 FROM d",
        &[issuer.into()],
    )
    .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not remove the issuer: {e}")))
    .unwrap_or(false)
}

extension_sql_file!(
    "../sql/issuers.sql",
    name = "issuers_schema",
    requires = ["admin_role", trust_issuer, untrust_issuer, scope_issuer],
);
