//! `tenant.audit()`: an isolation linter over the catalogs, for what the engine cannot enforce by itself.
//!
//! Every check is one branch of the query below and is documented in docs/protecting-tables.md ("Auditing"). A row has a
//! severity (`critical`: tenants' rows can reach another tenant now; `warning`: a weakness or an oracle; `info`:
//! worth knowing), the check's name, the object, what is wrong, and the statement or step that fixes it.
//!
//! "Bypasses RLS" means SUPERUSER or BYPASSRLS. tenant_guard's policies depend on the token, not on the role, so code
//! that runs with its owner's rights (views, SECURITY DEFINER functions) still sees only the caller's tenant unless
//! that owner bypasses row-level security: that decides between `critical` and `warning` for those checks.
//!
//! The audit is written in SQL because it is a set of catalog queries; it runs with the caller's rights (it reads
//! only catalogs readable by everyone) and is executable by `tenant_guard_admin` and superusers. It and its helper
//! functions (`sql/trusted_code.sql`) run with `jit = off`: their recursive catalog queries are cheap, but their cost
//! estimates are high enough for JIT compilation, which made one call 40 times slower.

use pgrx::prelude::*;

/// The master-key settings whose value looks like it carries a credential (names only, never values), for the
/// audit's `credential_in_key_setting` check: their values are shown to superusers only, but a credential belongs in
/// the key command's environment or a file it reads, not on its command line.
#[pg_extern(stable, parallel_safe, name = "_settings_with_credentials")]
fn settings_with_credentials() -> SetOfIterator<'static, String> {
    SetOfIterator::new(
        crate::gucs::secret_settings()
            .into_iter()
            .filter(|(_, value)| value.as_deref().is_some_and(crate::kek::looks_like_credential))
            .map(|(name, _)| name.to_owned()),
    )
}

extension_sql_file!(
    "../sql/audit.sql",
    name = "audit",
    requires = ["labels_schema", "trusted_code", "citus", settings_with_credentials, minimum_server_version_sql]
);
