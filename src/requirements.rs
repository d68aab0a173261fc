//! What tenant_guard needs of the server and of the database it is created in.

use crate::errors;
use pgrx::prelude::*;

/// The oldest supported minor release of each major (as `server_version_num`): the first that fixes
/// CVE-2025-8713 (optimizer statistics leaking rows hidden by row-level security) and the RLS fixes released with
/// it. 18.0 was released with them.
const MIN_SERVER_VERSION_NUM: [(i32, i32); 4] = [(15, 150014), (16, 160010), (17, 170006), (18, 180000)];

/// The oldest supported `server_version_num` of a major release, if tenant_guard knows the major.
pub fn minimum_server_version(major: i32) -> Option<i32> {
    MIN_SERVER_VERSION_NUM.iter().find(|(m, _)| *m == major).map(|(_, min)| *min)
}

/// `version_num` as PostgreSQL prints it (150014 is 15.14).
fn display(version_num: i32) -> String {
    format!("{}.{}", version_num / 10000, version_num % 10000)
}

/// `tenant._minimum_server_version(major)`: the same table, for `tenant.audit()`.
#[pg_extern(immutable, parallel_safe, strict, name = "_minimum_server_version")]
pub fn minimum_server_version_sql(major: i32) -> Option<i32> {
    minimum_server_version(major)
}

/// Warns (once, at server start) when the server is older than its major's minimum (see
/// [`MIN_SERVER_VERSION_NUM`]).
pub fn check_server_version() {
    // SAFETY: GetConfigOption returns a pointer to a static GUC string or NULL; we copy it at once.
    let num = unsafe {
        let ptr = pg_sys::GetConfigOption(c"server_version_num".as_ptr(), true, false);
        if ptr.is_null() {
            return;
        }
        std::ffi::CStr::from_ptr(ptr).to_str().ok().and_then(|s| s.parse::<i32>().ok())
    };
    let Some(num) = num else { return };
    if let Some(min) = minimum_server_version(num / 10000).filter(|min| num < *min) {
        errors::warning(
            format!("tenant_guard supports PostgreSQL {} or later; this server is {}", display(min), display(num)),
            "Upgrade the server: older minor releases leak rows hidden by row-level security (CVE-2025-8713 and others).",
        );
    }
}

/// Refuses `CREATE EXTENSION` in a database whose encoding is not UTF8: tokens, claims and issuer keys are UTF-8
/// JSON, and a text argument in another encoding (SQL_ASCII takes any bytes) would not be the text it claims to be.
/// A database keeps its encoding for life, and a copy of it (CREATE DATABASE ... TEMPLATE) keeps it too, so the
/// check at creation holds for good. Called once by the install script, which then drops the function.
#[pg_extern(volatile, parallel_unsafe, name = "_require_utf8_database")]
fn require_utf8_database() {
    // SAFETY: plain reads of the backend's database encoding and its static name.
    let (encoding, name) = unsafe {
        let encoding = pg_sys::GetDatabaseEncoding();
        (encoding, std::ffi::CStr::from_ptr(pg_sys::GetDatabaseEncodingName()).to_string_lossy().into_owned())
    };
    if encoding != pg_sys::pg_enc::PG_UTF8 as i32 {
        errors::database_not_utf8(&name);
    }
}

extension_sql_file!("../sql/requirements.sql", name = "requirements", requires = [require_utf8_database]);
