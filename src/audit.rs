//! `tenant.audit()`: an isolation linter over the catalogs, for what the engine cannot enforce by itself.
//!
//! Every check is one branch of the query below and is documented in the README ("Auditing"). A row has a
//! severity (`critical`: tenants' rows can reach another tenant now; `warning`: a weakness or an oracle; `info`:
//! worth knowing), the check's name, the object, what is wrong, and the statement or step that fixes it.
//!
//! "Bypasses RLS" means SUPERUSER or BYPASSRLS. tenant_guard's policies depend on the token, not on the role, so code
//! that runs with its owner's rights (views, SECURITY DEFINER functions) still sees only the caller's tenant unless
//! that owner bypasses row-level security: that decides between `critical` and `warning` for those checks.
//!
//! The audit is written in SQL because it is a set of catalog queries; it runs with the caller's rights (it reads
//! only catalogs readable by everyone) and is executable by `tenant_guard_admin` and superusers.

use pgrx::prelude::*;

extension_sql_file!("../sql/audit.sql", name = "audit", requires = ["labels_schema", "trusted_code"]);
