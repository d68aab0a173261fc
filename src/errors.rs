//! Every error tenant_guard raises, with its exact SQLSTATE. No other module picks a SQLSTATE.
//!
//! | SQLSTATE | name                                 | raised when                                           |
//! |----------|--------------------------------------|-------------------------------------------------------|
//! | 28000    | invalid_authorization_specification  | a token is rejected; a sealed context would change    |
//! | 42501    | insufficient_privilege               | no valid tenant context; the tamper guard refuses DDL |
//! | 22023    | invalid_parameter_value              | a bad argument or security label                      |
//! | 42703    | undefined_column                     | a labelled table has no such tenant column            |
//! | 42804    | datatype_mismatch                    | the tenant column is not uuid                         |
//! | 42809    | wrong_object_type                    | a label on something that is not a table or schema    |
//! | 42P16    | invalid_table_definition             | a table in a tenant_scoped schema has no tenant column|
//! | 55000    | object_not_in_prerequisite_state     | the library is not in shared_preload_libraries        |
//! | XX000    | internal_error                       | the issuer table could not be read (a bug)            |
//!
//! Messages never contain a token, a key or a plaintext.

use crate::token::jwk::JwksError;
use crate::token::Rejection;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

fn raise(code: PgSqlErrorCode, message: String, detail: Option<String>, hint: Option<&str>) -> ! {
    let mut report = ErrorReport::new(code, message, "tenant_guard");
    if let Some(detail) = detail {
        report = report.set_detail(detail);
    }
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

const AUTH_HINT: &str = "Call tenant.authenticate(token) at the start of each transaction, \
     or SET LOCAL tenant_guard.token = '<token>'.";

/// 28000: a presented token failed the check named in the message.
pub fn token_rejected(why: &Rejection) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        format!("token rejected: {why}"),
        None,
        Some("Present a token signed by a trusted issuer (see tenant.issuers) that has not expired."),
    )
}

/// 28000: the transaction already holds another tenant.
pub fn sealed() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        "tenant context is sealed: this transaction already belongs to another tenant".into(),
        None,
        Some("A transaction can hold one tenant only. COMMIT or ROLLBACK, then authenticate as the other tenant."),
    )
}

/// 42501: there is no valid tenant context. `why` says what was found instead, if anything.
pub fn no_context(why: Option<&Rejection>) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        "no tenant context".into(),
        why.map(|r| format!("The token in tenant_guard.token was rejected: {r}.")),
        Some(AUTH_HINT),
    )
}

/// 22023: an argument is not acceptable.
pub fn invalid_parameter(message: String, hint: Option<&str>) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message, None, hint)
}

/// 22023: a key set passed to tenant.trust_issuer is not acceptable.
pub fn invalid_key_set(why: &JwksError) -> ! {
    invalid_parameter(
        format!("invalid key set: {why}"),
        Some("Pass a JWKS {\"keys\": [...]} of oct (HS256), OKP Ed25519, EC P-256 or RSA (2048-4096 bit) public keys."),
    )
}

/// 55000: the library was loaded without shared_preload_libraries.
pub fn not_preloaded() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "tenant_guard must be loaded through shared_preload_libraries".into(),
        None,
        Some(
            "Add tenant_guard to shared_preload_libraries in postgresql.conf (or ALTER SYSTEM SET \
              shared_preload_libraries = 'tenant_guard'), restart PostgreSQL, then run CREATE EXTENSION tenant_guard.",
        ),
    )
}

/// XX000: something that cannot happen did.
pub fn internal(message: String) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, message, None, None)
}

/// WARNING with no SQLSTATE of interest (load-time notices).
pub fn warning(message: String, hint: &str) {
    ErrorReport::new(PgSqlErrorCode::ERRCODE_WARNING, message, "tenant_guard")
        .set_hint(hint)
        .report(PgLogLevel::WARNING);
}

/// 22023: a security label tenant_guard does not know.
pub fn invalid_label(text: &str, why: &crate::labels::grammar::BadLabel) -> ! {
    invalid_parameter(
        format!("invalid tenant_guard security label \"{}\"", text.escape_default()),
        Some(&format!("The {why}.")),
    )
}

/// 42809: a label on an object that cannot carry one.
pub fn wrong_object_type(message: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, message.into(), None, None)
}

/// 42703: the tenant column named by a label does not exist.
pub fn missing_tenant_column(table: &str, column: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
        format!("table {table} has no column \"{}\" to hold the tenant", column.escape_default()),
        None,
        Some("Add a uuid tenant column, or name it: SECURITY LABEL FOR tenant_guard ON TABLE ... IS 'tenant_scoped column=<name>'."),
    )
}

/// 42804: the tenant column is not a uuid.
pub fn tenant_column_not_uuid(table: &str, column: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
        format!("tenant column \"{}\" of table {table} must be of type uuid", column.escape_default()),
        None,
        Some("Tenant ids are uuids, as tenant.current_id() returns them."),
    )
}

/// 42P16: a table created in a tenant_scoped schema has no tenant column and no 'global' label.
pub fn unscoped_table_in_scoped_schema(table: &str, column: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
        format!("table {table} is in a tenant_scoped schema but has no column \"{}\"", column.escape_default()),
        None,
        Some(&format!(
            "Add the tenant column (uuid), or declare the table shared by all tenants in the same transaction: \
             SECURITY LABEL FOR tenant_guard ON TABLE {table} IS 'global'."
        )),
    )
}

/// 42501: the tamper guard refuses a change to a protected table.
pub fn tamper_refused(what: &str, table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{what} is refused: table {table} is protected by tenant_guard"),
        None,
        Some(&format!(
            "To unprotect it, its owner runs SECURITY LABEL FOR tenant_guard ON TABLE {table} IS NULL. \
             Superusers and members of tenant_guard_admin are not refused."
        )),
    )
}
