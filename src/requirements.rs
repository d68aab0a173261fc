//! What tenant_guard needs of the server and of the database it is created in.

use crate::errors;
use pgrx::prelude::*;

/// Oldest supported server: 15.14 fixes CVE-2025-8713 (optimizer statistics leaking rows hidden by RLS).
const MIN_SERVER_VERSION_NUM: i64 = 150014;

/// Warns (once, at server start) when the server is older than [`MIN_SERVER_VERSION_NUM`].
pub fn check_server_version() {
    // SAFETY: GetConfigOption returns a pointer to a static GUC string or NULL; we copy it at once.
    let num = unsafe {
        let ptr = pg_sys::GetConfigOption(c"server_version_num".as_ptr(), true, false);
        if ptr.is_null() {
            return;
        }
        std::ffi::CStr::from_ptr(ptr).to_str().ok().and_then(|s| s.parse::<i64>().ok())
    };
    if num.is_some_and(|n| n < MIN_SERVER_VERSION_NUM) {
        errors::warning(
            "tenant_guard supports PostgreSQL 15.14 or later; this server is older".into(),
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
