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
//! | 22P03    | invalid_binary_representation        | a ciphertext is truncated, of unknown format, or names a key version the tenant does not have |
//! | 22021    | character_not_in_repertoire          | tenant.decrypt() of bytes that are not valid text     |
//! | 25006    | read_only_sql_transaction            | a data key would be created, rotated or shredded in a read-only transaction or on a standby |
//! | 40001    | serialization_failure                | another transaction created the tenant's key first (REPEATABLE READ) |
//! | 0A000    | feature_not_supported                | CREATE EXTENSION in a database that is not UTF8; issuers or keys changed on a Citus worker |
//! | 53400    | configuration_limit_exceeded         | the replay table (tenant_guard.replay_cache_size) is full |
//! | 42P01    | undefined_table                      | an imported export holds a table this database does not protect |
//! | 55000    | object_not_in_prerequisite_state     | the library is not in shared_preload_libraries; the tenant's keys were destroyed; a Citus worker has no key for the tenant |
//! | 3D000    | invalid_catalog_name                 | a tenant is placed in a database this server does not have |
//! | 55P03    | lock_not_available                   | a move or binding waited in vain for a tenant's open transactions |
//! | 58000    | system_error                         | the master key is not configured or cannot be loaded; a tenant's own key provider fails |
//! | XX001    | data_corrupted                       | a ciphertext or a wrapped data key does not authenticate |
//! | XX000    | internal_error                       | the issuer table could not be read (a bug)            |
//!
//! Messages never contain a token, a key or a plaintext.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use tenant_guard_core::ciphertext::FormatError;
use tenant_guard_core::kek::{KekError, KekSlot};
use tenant_guard_core::token::jwk::JwksError;
use tenant_guard_core::token::Rejection;

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

/// 42501: the token comes from a stored default (set before tenant_guard refused them), which is never used.
pub fn no_context_stored_token() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        "no tenant context".into(),
        Some(
            "The token in tenant_guard.token is a stored default (a role or database setting, a function's SET \
             clause or the configuration file), which tenant_guard never uses."
                .into(),
        ),
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

/// Longest part of a user's input quoted back in a message, in characters.
const MAX_QUOTED_CHARS: usize = 64;

/// `text` cut to MAX_QUOTED_CHARS characters (with an ellipsis when cut), control characters shown as `?` and
/// double quotes escaped: messages stay small and readable whatever the input.
fn quoted(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_QUOTED_CHARS)
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            c if c.is_control() => vec!['?'],
            c => vec![c],
        })
        .collect();
    if text.chars().nth(MAX_QUOTED_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

/// 22023: a security label tenant_guard does not know.
pub fn invalid_label(text: &str, why: &tenant_guard_core::label::BadLabel) -> ! {
    invalid_parameter(format!("invalid tenant_guard security label \"{}\"", quoted(text)), Some(&format!("The {why}.")))
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

const ADMIN_HINT: &str = "Superusers and members of tenant_guard_admin are not refused: run it as one of them.";

/// 42501: the tamper guard refuses a change to a protected table.
pub fn tamper_refused(what: &str, table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{what} is refused: table {table} is protected by tenant_guard"),
        None,
        Some(ADMIN_HINT),
    )
}

/// 42501: a role that is not an administrator removes or changes a `tenant_scoped` label.
pub fn unprotect_refused(object: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("removing or changing the protection of {object} is refused"),
        Some("The owner of a protected table manages its shape, not who may read its rows.".into()),
        Some(ADMIN_HINT),
    )
}

/// 42501: a schema change that would read every tenant's rows (and tell the caller about them when it fails).
pub fn validation_refused(what: &str, table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "{what} is refused: it would read every tenant's rows of table {table}, which is protected by tenant_guard"
        ),
        Some(
            "Row-level security does not confine schema changes: a validation or rewrite reads every row, and its \
             failure (a duplicated or unconvertible value, a violated check) reveals other tenants' rows."
                .into(),
        ),
        Some("Run it as a superuser or a member of tenant_guard_admin; constraints can be added NOT VALID."),
    )
}

/// 42501: code that is not trusted with every tenant's rows would run over them.
pub fn untrusted_code_refused(what: &str, table: &str, code: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{what} is refused: {code} would run over every tenant's rows of table {table}"),
        Some(
            "Code on a protected table is trusted only when it is part of PostgreSQL or of an extension, or owned by a \
             superuser or a member of tenant_guard_admin."
                .into(),
        ),
        Some("Have an administrator own the function (ALTER FUNCTION ... OWNER TO), or run it as an administrator."),
    )
}

/// 42501: protecting a table that is a child of a parent not protected the same way.
pub fn protected_child_of_unprotected_parent(table: &str, parent: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("protecting {table} is refused: it is a child of {parent}, which is not protected the same way"),
        Some("A query on a parent reads its children's rows under the parent's row-level security only.".into()),
        Some(&format!("Protect {parent} with the same label first, or run it as an administrator.")),
    )
}

/// 42501: a table labelled otherwise would become a child of a protected table.
pub fn unprotected_child_refused(what: &str, table: &str, parent: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{what} is refused: {table} would become a child of protected table {parent} without its protection"),
        Some(
            "Rows written through the parent are routed into its children: a child labelled 'global' or protected by \
             another column would hold them unprotected."
                .into(),
        ),
        Some(ADMIN_HINT),
    )
}

/// 42501: a unique key on a protected table would not compare the tenant column for equality (a cross-tenant
/// existence oracle).
pub fn unique_key_refused(what: &str, table: &str, index: &str, column: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "{what} is refused: {index} on {table} is unique across tenants: its key does not compare the tenant \
             column {column} for equality"
        ),
        Some(
            "An insert or update that collides with another tenant's value would fail, which tells the caller that \
             the value exists."
                .into(),
        ),
        Some("Make it unique per tenant: put the tenant column first in the key, for example UNIQUE (tenant_id, ...)."),
    )
}

/// 42501: a foreign key would cross the tenant boundary.
pub fn crossing_foreign_key_refused(what: &str, table: &str, constraint: &str, other: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{what} is refused: foreign key {constraint} between {table} and {other} crosses the tenant boundary"),
        Some(
            "Foreign-key checks and actions run without row-level security: a key from a protected table lets the \
             other table's writer rewrite every tenant's rows (ON UPDATE CASCADE), and a key into one lets whoever \
             writes the other table probe every tenant's keys."
                .into(),
        ),
        Some(
            "Reference a table protected with the same label, with the tenant column matched to the tenant column: \
             FOREIGN KEY (tenant_id, ...) REFERENCES ... (tenant_id, ...).",
        ),
    )
}

/// 42501: a protected table would become a child of a relation that is not protected the same way.
pub fn unprotected_parent_refused(what: &str, table: &str, parent: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{what} is refused: protected table {table} would become a child of {parent}, which is not protected the same way"),
        Some("A query on a parent reads its children's rows under the parent's row-level security only.".into()),
        Some(&format!("Protect {parent} with the same label first, or run it as an administrator.")),
    )
}

/// 42501 (through the GUC machinery): a token stored as a default. Sets the check hook's message; returns.
pub fn token_default_refused() {
    guc_check_failure(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        "tenant_guard.token cannot be stored as a default",
        "A stored token would give every later session a tenant without presenting a token, and every role can \
         read stored settings.",
        "Present the token in each transaction: SELECT tenant.authenticate($1), or SET LOCAL tenant_guard.token.",
    )
}

/// Fills in the message of a failing GUC check hook (PostgreSQL raises it, at the level the source calls for).
fn guc_check_failure(code: PgSqlErrorCode, message: &str, detail: &str, hint: &str) {
    let dup = |s: &str| {
        let s = std::ffi::CString::new(s).expect("fixed messages have no NUL");
        // SAFETY: pstrdup copies a NUL-terminated string into the current memory context.
        unsafe { pgrx::pg_sys::pstrdup(s.as_ptr()) }
    };
    // SAFETY: the check-hook error fields are plain globals PostgreSQL reads when the hook returns false.
    unsafe {
        pgrx::pg_sys::GUC_check_errcode(code as i32);
        pgrx::pg_sys::GUC_check_errmsg_string = dup(message);
        pgrx::pg_sys::GUC_check_errdetail_string = dup(detail);
        pgrx::pg_sys::GUC_check_errhint_string = dup(hint);
    }
}

/// 42501: a session-scoped context while `tenant_guard.allow_session_scope` is off.
pub fn session_scope_disabled() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        "a session-scoped tenant context is not allowed here (tenant_guard.allow_session_scope is off)".into(),
        Some(
            "Behind a transaction-mode connection pooler, a context that outlives its transaction would pass to the \
             next client's transaction on the same server connection."
                .into(),
        ),
        Some("Authenticate in each transaction: tenant.authenticate($1), or SET LOCAL tenant_guard.token."),
    )
}

/// 42501: a session-level change of a setting that decides what later statements reach.
pub fn session_setting_refused(name: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("a session-level {name} is not allowed here (tenant_guard.allow_session_scope is off)"),
        Some(
            "Behind a transaction-mode connection pooler, the next client's transaction on the same server connection \
             would resolve its unqualified names, or run, with what this client chose."
                .into(),
        ),
        Some("Use SET LOCAL inside the transaction, or set it for the role: ALTER ROLE ... SET."),
    )
}

/// 42501: a confined role behind a pooler changing stored defaults (its own, or its database's).
pub fn stored_setting_refused() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        "ALTER ROLE/DATABASE ... SET is not allowed here (tenant_guard.allow_session_scope is off)".into(),
        Some(
            "A stored default reaches every later connection of the role, those a transaction-mode pooler hands to \
             other clients included."
                .into(),
        ),
        Some(ADMIN_HINT),
    )
}

/// 42501: a prepared statement runs under a name that another statement had in this session.
pub fn prepared_statement_replaced(name: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "prepared statement \"{}\" was replaced since it first ran in this session \
             (tenant_guard.allow_session_scope is off)",
            quoted(name)
        ),
        Some(
            "Behind a transaction-mode connection pooler, a statement prepared under the name of another client's \
             statement would run that client's next transaction with its tenant context."
                .into(),
        ),
        Some(
            "Prepare a different statement under a new name. If no pooler shares this server connection, a superuser \
             can turn tenant_guard.allow_session_scope on for the role.",
        ),
    )
}

/// 42501: a prepared statement parsed in an earlier transaction, behind a pooler.
pub fn prepared_statement_from_earlier_transaction(name: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "prepared statement \"{}\" was prepared in an earlier transaction (tenant_guard.allow_session_scope is off)",
            quoted(name)
        ),
        Some(
            "Behind a transaction-mode connection pooler, a statement from an earlier transaction may be another \
             client's, or planted under this name by one: running it would run that client's statement here."
                .into(),
        ),
        Some(
            "Prepare the statement in the transaction that runs it (drivers: disable server-side prepared \
             statements), or let the pooler manage them and set tenant_guard.pooler_statement_prefix.",
        ),
    )
}

/// 42501: SQL PREPARE or DEALLOCATE of a name the pooler manages.
pub fn pooler_statement_refused(what: &str, name: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "{what} \"{}\" is refused: the connection pooler manages prepared statements with this name \
             (tenant_guard.pooler_statement_prefix)",
            quoted(name)
        ),
        None,
        Some("Use another name."),
    )
}

/// 42501: a Bind of the unnamed statement parsed in an earlier transaction.
pub fn unnamed_statement_from_earlier_transaction() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        "the unnamed prepared statement was parsed in an earlier transaction (tenant_guard.allow_session_scope is off)"
            .into(),
        Some(
            "Behind a transaction-mode connection pooler, it may be the previous client's statement: running it would \
             replay that client's statement, with its literals."
                .into(),
        ),
        Some("Send Parse and Bind in the same transaction (most drivers do), or use a named statement."),
    )
}

/// 42501: a named prepared statement holds a token in its text.
pub fn prepared_statement_holds_token(name: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "prepared statement \"{}\" holds a token in its text (tenant_guard.allow_session_scope is off)",
            quoted(name)
        ),
        Some(
            "A prepared statement outlives its transaction: behind a transaction-mode connection pooler, whoever runs \
             it next would become that token's tenant."
                .into(),
        ),
        Some("Pass the token as a parameter: tenant.authenticate($1)."),
    )
}

/// 42501: a function that reads what earlier clients of a pooled session left (prepared statements, cursors).
pub fn session_state_hidden(function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("function {function} is hidden while tenant_guard.allow_session_scope is off"),
        Some(
            "Behind a transaction-mode connection pooler, the session's prepared statements and cursors are those of \
             earlier clients, with their text."
                .into(),
        ),
        Some(ADMIN_HINT),
    )
}

/// 42501: plain EXPLAIN would show estimates from statistics over every tenant's rows.
pub fn explain_refused(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("EXPLAIN is refused: table {table} is protected by tenant_guard"),
        Some("Its row estimates come from statistics over every tenant's rows.".into()),
        Some(
            "Run it as a superuser or a member of tenant_guard_admin, or have a superuser allow it for your role: \
             ALTER ROLE ... SET tenant_guard.allow_explain = on.",
        ),
    )
}

/// 42501: EXPLAIN ANALYZE would count other tenants' rows.
pub fn explain_analyze_refused(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("EXPLAIN ANALYZE is refused: table {table} is protected by tenant_guard"),
        Some("Its actual row counts (for example Rows Removed by Filter) would include other tenants' rows.".into()),
        Some("Use EXPLAIN without ANALYZE, or run it as a superuser or a member of tenant_guard_admin."),
    )
}

/// 42501: at COMMIT, a holdable cursor's query (through a function) read a protected table.
pub fn hold_cursor_kept_refused(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("a holdable cursor cannot keep rows of table {table} past COMMIT: it is protected by tenant_guard"),
        Some(
            "At COMMIT a holdable cursor runs its query to the end and keeps the rows; this one reached a protected \
             table (through a function), whose rows the next transaction on this connection could fetch."
                .into(),
        ),
        Some("Declare the cursor WITHOUT HOLD inside the transaction that reads it."),
    )
}

/// 42501: a statistics function would count other tenants' rows.
pub fn statistics_hidden(function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("function {function} is hidden from roles confined by tenant_guard"),
        Some("PostgreSQL's statistics count every tenant's rows of protected tables and their indexes.".into()),
        Some(
            "Monitor with a role that has pg_read_all_stats (pg_monitor), or ask a superuser to turn \
             tenant_guard.hide_statistics off and accept the leak.",
        ),
    )
}

/// 42501: a statement would read row locations (`ctid`) of a protected table.
pub fn row_location_hidden(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("the ctid of table {table} is hidden from roles confined by tenant_guard"),
        Some(
            "Every tenant's rows share the table's pages: where a row lands counts the rows other tenants put before it."
                .into(),
        ),
        Some("Identify rows by their key. To accept the leak, ask a superuser to turn tenant_guard.hide_statistics off."),
    )
}

/// 42501: TABLESAMPLE of a protected table (the sample depends on where rows are).
pub fn table_sample_refused(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("TABLESAMPLE of table {table} is refused to roles confined by tenant_guard"),
        Some(
            "Which rows a sample picks depends on where they are in the table's pages, which every tenant's rows share."
                .into(),
        ),
        Some("Sample with ORDER BY random() LIMIT n, or ask a superuser to turn tenant_guard.hide_statistics off."),
    )
}

/// 42501: a function that runs a query, called inside a foreign-key check or action.
pub fn query_in_foreign_key_action(function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("function {function} cannot run inside a foreign-key check or action (tenant_guard)"),
        Some(
            "PostgreSQL runs foreign-key checks and actions with row-level security off for the tables' owner: a \
             query run there would see every tenant's rows."
                .into(),
        ),
        Some("Run the query outside the foreign-key action, for example from the statement that changed the key."),
    )
}

/// 42501: large objects are not tenant-scoped.
pub fn large_objects_refused(function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("function {function} is refused: large objects are not tenant-scoped"),
        Some(
            "A large object written under one tenant's context can be listed and read under any other: it is not a \
             row of a protected table."
                .into(),
        ),
        Some(
            "Store the bytes in a bytea column of a protected table (tenant.encrypt_bytea() encrypts them per tenant), \
             or ask a superuser to turn tenant_guard.allow_large_objects on and accept the risk.",
        ),
    )
}

/// 42501: a publication would stream every tenant's rows of a protected table.
pub fn publication_refused(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("publishing table {table} is refused: it is protected by tenant_guard"),
        Some("Logical replication ignores row-level security: a subscriber would receive every tenant's rows.".into()),
        Some(ADMIN_HINT),
    )
}

/// 42501: a temporary object that would outlive COMMIT while session scope is off.
pub fn temp_object_refused(what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{what} that outlives its transaction is not allowed here (tenant_guard.allow_session_scope is off)"),
        Some(
            "Behind a transaction-mode connection pooler, the next client's transaction on the same server connection \
             would find it: rows it holds, and names it shadows (the temporary schema is searched first)."
                .into(),
        ),
        Some("Use CREATE TEMP TABLE ... ON COMMIT DROP inside the transaction that needs it."),
    )
}

/// 42501: a holdable cursor would carry a tenant's rows past COMMIT.
pub fn hold_cursor_refused(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("DECLARE ... WITH HOLD is refused: table {table} is protected by tenant_guard"),
        Some(
            "A holdable cursor keeps its rows after COMMIT, where the next transaction on this connection (another \
             tenant's, behind a connection pooler) could fetch them."
                .into(),
        ),
        Some("Declare the cursor WITHOUT HOLD inside the transaction that reads it."),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Encryption and keys. No message carries a plaintext, a key, key-file contents or key-command output.

/// 22P03 or XX001: a ciphertext that cannot be opened.
pub fn bad_ciphertext(why: &FormatError) -> ! {
    match why {
        FormatError::NotAuthentic => raise(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!("{why}"),
            None,
            Some(
                "Decrypt with the same tenant context and the same context argument that encrypted it. \
                 A value copied from another row, column or tenant never decrypts.",
            ),
        ),
        _ => raise(
            PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION,
            format!("{why}"),
            None,
            Some("Pass a value returned by tenant.encrypt() or tenant.encrypt_bytea(), unchanged."),
        ),
    }
}

/// 22P03: the ciphertext names a key version the current tenant does not have.
pub fn unknown_key_version(version: u32) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION,
        format!("ciphertext names data key version {version}, which the current tenant does not have"),
        None,
        Some("It was encrypted for another tenant, or it is not a tenant_guard ciphertext."),
    )
}

/// 0A000: CREATE EXTENSION in a database whose encoding is not UTF8.
pub fn database_not_utf8(encoding: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("tenant_guard needs a UTF8 database; this database's encoding is {encoding}"),
        Some(
            "Tokens, claims and keys are UTF-8 JSON; text in another encoding would not be the text it claims to be."
                .into(),
        ),
        Some(
            "Create the extension in a database created WITH ENCODING 'UTF8' (a database cannot change its encoding).",
        ),
    )
}

/// 22021: decrypted bytes that are not text.
pub fn not_text() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
        "decrypted value is not valid UTF-8 text".into(),
        None,
        Some("It was encrypted with tenant.encrypt_bytea(); decrypt it with tenant.decrypt_bytea()."),
    )
}

/// 3D000: `tenant.place_tenant` names a database this server does not have (and no other server).
pub fn unknown_database(name: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_CATALOG_NAME,
        format!("database \"{}\" does not exist on this server", name.escape_default()),
        None,
        Some(
            "Create the database first, or name the server that has it: tenant.place_tenant(tenant, database, server).",
        ),
    )
}

/// 55000: `tenant.bind_database` while the database is bound to another tenant.
pub fn already_bound() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "this database is already bound to another tenant; call tenant.unbind_database() first".into(),
        None,
        None,
    )
}

/// 55000: `tenant.bind_database` while a protected table holds other tenants' rows.
pub fn bind_other_tenants_rows(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("{table} holds rows of other tenants than the one this database would be bound to"),
        None,
        Some("A silo holds one tenant's rows: move the others out first (tenant.export, tenant.purge)."),
    )
}

/// 22023: `tenant.import` was given something that is not an export.
pub fn bad_export(what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("not a tenant export: {what}"),
        None,
        Some("Pass the document tenant.export() returned, unchanged."),
    )
}

/// 42P01: the export holds a table this database does not have (or does not protect).
pub fn import_table_missing(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
        format!("the export holds rows of table {table}, which this database does not have or does not protect"),
        None,
        Some("Import into a database with the same schema and the same security labels."),
    )
}

/// 42804: a table has other stored columns here than in the export.
pub fn import_columns_differ(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
        format!("table {table} has other columns or another tenant column here than in the export"),
        None,
        Some("Import into a database with the same schema."),
    )
}

/// XX001: what the import wrote does not match the export's count or checksum.
pub fn import_mismatch(table: &str, expected: i64, found: i64) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
        format!(
            "the rows imported into {table} do not match the export ({expected} expected, {found} found, or their \
             checksum differs): nothing was imported"
        ),
        None,
        None,
    )
}

/// 55000: `tenant.import` for a tenant that has other data keys here.
pub fn import_keys_exist(tenant: &uuid::Uuid) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("tenant {tenant} already has other data keys in this database"),
        None,
        Some("A tenant is imported once into a database; purge it there first to import it again."),
    )
}

/// 58000: a tenant's own key provider failed (a revoked customer key): its data cannot be decrypted.
pub fn tenant_kek_unavailable(tenant: &uuid::Uuid, why: &KekError) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_SYSTEM_ERROR,
        format!("the key of tenant {tenant} is unavailable: its key provider failed ({why})"),
        Some(
            "The tenant's data keys are wrapped by its own master key (tenant.set_key_provider): until its provider \
              returns that key again, the tenant's data can be neither decrypted nor encrypted. Other tenants are not \
              affected."
                .into(),
        ),
        Some("Restore the tenant's key in its KMS, or check tenant_guard.tenant_kek_command."),
    )
}

/// 58000: a tenant has its own key reference but no tenant key command is configured.
pub fn tenant_kek_not_configured(tenant: &uuid::Uuid) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_SYSTEM_ERROR,
        format!("the key of tenant {tenant} is unavailable: tenant_guard.tenant_kek_command is not set"),
        None,
        Some("Set tenant_guard.tenant_kek_command in postgresql.conf (or with ALTER SYSTEM) and reload."),
    )
}

/// 58000: a tenant's provider returns another key than the one that wrapped its data keys.
pub fn tenant_kek_changed(tenant: &uuid::Uuid) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_SYSTEM_ERROR,
        format!(
            "the key of tenant {tenant} is unavailable: its key provider returns another key than the one that \
                 wrapped its data keys"
        ),
        None,
        Some(
            "Restore the tenant's original key in its KMS; to change it, use tenant.set_key_provider() with the new \
              key while the old one still works.",
        ),
    )
}

/// 55000: a table holding other tenants' rows would be protected in a database bound to one tenant.
pub fn bound_table_other_rows(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("{table} holds rows of other tenants than the one this database is bound to"),
        None,
        Some("A silo holds one tenant's rows: remove the others before protecting the table."),
    )
}

/// 42501: the owner's code, run on an administrator's behalf, would change a setting or take a session lock.
/// The owner's code, run on an administrator's behalf, reading the administrator's session (see
/// `guard::function_rights`).
pub fn session_read_in_owner_code(what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "{what} is refused: code of a table owner, run on an administrator's behalf, reads nothing of the \
             administrator's session"
        ),
        Some(
            "A table owner's function reached by an administrator's statement runs with its owner's rights; the \
             administrator's statement, settings, prepared statements and cursors are not the owner's to read."
                .into(),
        ),
        Some("Have an administrator own the function, or run the statement as the table owner."),
    )
}

pub fn setting_in_owner_code(what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "{what} is refused: code of a table owner, run on an administrator's behalf, leaves nothing in the \
             administrator's session"
        ),
        Some(
            "A table owner's function reached by an administrator's statement runs with its owner's rights; a \
             setting it changed could outlive it in the administrator's session (a search_path that picks the \
             owner's operators)."
                .into(),
        ),
        Some("Give the function a SET clause for what it needs, or have an administrator own it."),
    )
}

/// 55P03: transactions holding a tenant's context (any tenant's: None) did not end in time for a move or a binding.
pub fn contexts_busy(tenant: Option<&uuid::Uuid>) -> ! {
    let whose = match tenant {
        Some(t) => format!("tenant {t}"),
        None => "a tenant".into(),
    };
    raise(
        PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
        format!("transactions of {whose} are still open: the change waits for them to end, and they did not"),
        Some(
            "Nothing was changed. Transactions that hold a tenant's context must end before it is moved or the \
              database bound, so that what they write is not lost or left behind."
                .into(),
        ),
        Some("Retry, set a longer lock_timeout, or end the open transactions (pg_stat_activity)."),
    )
}

/// 42501: an administrator's statement reaches an expression of an untrusted owner that calls a function it must
/// not run with an administrator's rights.
/// An administrator's statement reaching a relation that would read or write other relations with the
/// administrator's rights (see `guard::admin_reach`).
pub fn admin_reaches_owner_relation(relation: &str, what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "an administrator's statement is refused: {relation}, of a role that is not an administrator, is {what}"
        ),
        Some(
            "Its owner chose which relations it reads or writes (or which sequence it advances), and they would be \
             read or written with the rights of whoever runs the statement."
                .into(),
        ),
        Some(
            "Have an administrator review and own the relation, or remove what reads with the caller's rights; or run \
             the statement as its owner.",
        ),
    )
}

/// A domain of a role that is not an administrator whose code calls a function an administrator may not run from
/// it (see `guard::admin_reach`).
pub fn domain_code_refused(statement: &str, domain: &str, function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "{statement} is refused: domain {domain} calls {function}, which would run with the rights of whoever \
             converts a value to it"
        ),
        Some(
            "A domain's checks and default run wherever a value is converted to it, with the rights of whoever runs \
             the statement (an administrator too); this function would run a query, read or change a setting, take \
             a lock or act with those rights."
                .into(),
        ),
        Some("Call a function of your own from the check instead, or have an administrator create the domain."),
    )
}

/// A table owner detaching an administrator's partition (see `guard::admin_reach`).
pub fn detach_administrators_partition(partition: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("DETACH PARTITION is refused: {partition} belongs to an administrator"),
        Some(
            "The partition carries the defaults and checks it inherited from this table; detached, they would be an \
             administrator's table's, run with the rights of whoever writes it."
                .into(),
        ),
        Some("Have an administrator detach it."),
    )
}

pub fn admin_reaches_owner_call(relation: &str, function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "an administrator's statement is refused: {relation}, of a role that is not an administrator, calls \
             {function} in its expressions"
        ),
        Some(
            "A default, check, view, rule or column domain written by the relation's owner runs with the rights of \
             whoever runs the statement; this function would run a query, change a setting, take a session lock or \
             do what only superusers may, with an administrator's rights."
                .into(),
        ),
        Some(
            "Have an administrator review and own the relation, or remove the call; or run the statement as its owner.",
        ),
    )
}

/// 55000: the tenant was crypto-shredded.
pub fn keys_destroyed(tenant: Option<&uuid::Uuid>) -> ! {
    let whose = match tenant {
        Some(t) => format!("tenant {t}"),
        None => "the current tenant".into(),
    };
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("keys destroyed: the data keys of {whose} were shredded"),
        Some(
            "tenant.shred() destroyed every data key version of this tenant; its ciphertexts can never be decrypted, \
              and no new key is created for it."
                .into(),
        ),
        None,
    )
}

/// 25006: key changes need a writable transaction on the primary.
pub fn keys_read_only(what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
        format!("cannot {what} in a read-only transaction"),
        None,
        Some(
            "Data keys are created, rotated and shredded on the primary, in a read-write transaction. \
             On a hot standby, encrypt and decrypt work with keys that already exist: create them on the primary \
             first with tenant.create_key(tenant).",
        ),
    )
}

/// 40001: a concurrent transaction created the key this one was about to create.
pub fn key_creation_conflict() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        "could not create the tenant's data key: a concurrent transaction created it".into(),
        None,
        Some("Retry the transaction."),
    )
}

/// 58000: the master key of `slot` is not configured or cannot be loaded.
pub fn kek_unavailable(slot: KekSlot, why: Option<&KekError>) -> ! {
    let (file, command) = slot.settings();
    let (message, hint) = match why {
        None => (
            "no master key is configured".to_string(),
            format!(
                "Set {file} (a 0600 file owned by the server's OS user) or {command} in postgresql.conf \
                 or with ALTER SYSTEM, then SELECT pg_reload_conf()."
            ),
        ),
        Some(e) => (format!("the master key cannot be loaded: {e}"), format!("Check {file} or {command}.")),
    };
    raise(PgSqlErrorCode::ERRCODE_SYSTEM_ERROR, message, None, Some(&hint))
}

/// 58000: both providers of one slot are set.
pub fn kek_ambiguous(slot: KekSlot) -> ! {
    let (file, command) = slot.settings();
    raise(
        PgSqlErrorCode::ERRCODE_SYSTEM_ERROR,
        format!("both {file} and {command} are set"),
        None,
        Some("Set only one master-key provider, then SELECT pg_reload_conf()."),
    )
}

/// 58000: a data key is wrapped by a master key that is neither the current nor the previous one.
pub fn kek_unknown(count: Option<i64>) -> ! {
    let message = match count {
        None => "the data key was wrapped by a master key that is not configured".to_string(),
        Some(n) => {
            format!("{n} data keys are wrapped by a master key that is neither the current nor the previous one")
        }
    };
    raise(
        PgSqlErrorCode::ERRCODE_SYSTEM_ERROR,
        message,
        None,
        Some(
            "After changing the master key, set tenant_guard.kek_previous_file (or kek_previous_command) to the old \
             key, reload, and run tenant.rewrap_keys().",
        ),
    )
}

/// XX001: a stored wrapped data key does not authenticate under the master key its id names.
pub fn wrapped_key_corrupt(version: u32) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
        format!("the stored data key version {version} does not unwrap: tenant.data_key was altered or damaged"),
        None,
        Some("Restore tenant.data_key from a backup; a data key cannot be recovered otherwise."),
    )
}

/// 0A000: issuers and keys change on a Citus coordinator only, which applies the change on every node.
pub fn citus_worker_refused(what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("cannot {what} on a Citus worker"),
        None,
        Some("Run it on the coordinator: tenant_guard applies it on every node of the cluster in one transaction."),
    )
}

/// 0A000: the functions that apply a coordinator's change run on Citus workers only.
pub fn citus_replica_refused() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "this function applies a Citus coordinator's change on a worker, and runs on workers only".into(),
        None,
        Some("It is internal to tenant_guard."),
    )
}

/// 55000: a Citus worker has no data key for the tenant and never creates one by itself.
pub fn key_missing_on_worker(tenant: &uuid::Uuid) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("tenant {tenant} has no data key on this Citus worker, and workers do not create keys"),
        None,
        Some(
            "Create the key on the coordinator with tenant.create_key(tenant) (it reaches every node), or encrypt \
             where the coordinator evaluates the call (INSERT ... VALUES).",
        ),
    )
}

/// 0A000: Citus would copy a restrictive policy to the shards as a permissive one.
pub fn citus_restrictive_policy_refused(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("a restrictive policy on {table} is refused: Citus copies it to the shards as a permissive policy"),
        Some("A permissive policy on the shards would widen what the other policies allow.".into()),
        Some("Express the restriction in the queries or a view, or keep the table local."),
    )
}

/// 0A000: COPY FROM into a table that row-level security confines for this role.
pub fn copy_from_refused(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("COPY FROM into {table} is refused: the table is protected by tenant_guard"),
        Some("PostgreSQL does not check row-level security policies during COPY FROM.".into()),
        Some(
            "Load the tenant's rows with INSERT ... VALUES (many rows per statement), or COPY into a staging table \
             and INSERT ... SELECT from it, in a transaction with the tenant's context.",
        ),
    )
}

/// 0A000: an UPDATE of a protected Citus table computes a value with a VOLATILE function (tenant.encrypt()).
pub fn citus_volatile_update(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!(
            "UPDATE of {table} with a VOLATILE function (such as tenant.encrypt()) is refused: Citus runs the \
                 UPDATE on the workers, where it does not allow VOLATILE functions"
        ),
        None,
        Some(
            "Compute the value first (SELECT tenant.encrypt(...)) and pass it as a parameter \
             (UPDATE ... SET col = $1), or write new rows with INSERT ... VALUES, where the coordinator evaluates it.",
        ),
    )
}

/// 42501: Citus's internal functions that delete or change shard metadata, called by a confined role.
pub fn citus_metadata_refused() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        "changing Citus's shard metadata is refused: it could detach a shard from its table's protection".into(),
        None,
        Some("Move, split or drop shards of protected tables as a superuser or a member of tenant_guard_admin."),
    )
}

/// 53400: the replay table is full (every remembered jti is still valid).
pub fn replay_table_full(size: usize) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        format!("tenant_guard's replay table is full: {size} unexpired jti values are remembered"),
        Some("A token of an issuer that requires a jti used once is refused rather than accepted unchecked.".into()),
        Some("Raise tenant_guard.replay_cache_size (server restart), or shorten the lifetime of that issuer's tokens."),
    )
}

/// 53400: one issuer's share of the replay table is full.
pub fn replay_share_full(issuer: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        format!("issuer \"{}\" has used its share of tenant_guard's replay table", quoted(issuer)),
        Some(
            "Each issuer that requires a jti once may hold an equal share of tenant_guard.replay_cache_size \
             unexpired entries; its new tokens are refused rather than accepted unchecked."
                .into(),
        ),
        Some("Raise tenant_guard.replay_cache_size (server restart), or shorten the lifetime of that issuer's tokens."),
    )
}

/// 42501: a Citus function that runs a query under EXPLAIN ANALYZE for a confined role.
pub fn citus_explain_refused(function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("function {function} is refused to roles confined by tenant_guard"),
        Some("It runs a query under EXPLAIN ANALYZE, whose actual row counts include other tenants' rows.".into()),
        Some("Run it as a superuser or a member of tenant_guard_admin."),
    )
}

/// 42501: a VACUUM or ANALYZE without a table list that would report (VERBOSE, or a DEBUG client_min_messages).
pub fn vacuum_report_refused_unnamed(what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{what} of every table is refused to roles confined by tenant_guard"),
        Some("Its report counts the rows of every tenant of the protected tables it reaches.".into()),
        Some(
            "Name the tables, run it without VERBOSE and with client_min_messages at LOG or above, or run it as a \
              superuser or a member of tenant_guard_admin.",
        ),
    )
}

/// 0A000: an outer join that Citus 13 crashes on under row-level security.
pub fn citus_outer_join_refused(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("an outer join from a table that is not distributed to the distributed table {table} is refused"),
        Some("Citus 13 crashes the server process planning such a join under row-level security.".into()),
        Some("Put the distributed table on the preserved side of the join, or use an inner join."),
    )
}

/// 42501: a Citus function that rewrites, moves or drops shards, called by a confined role where tables are protected.
pub fn citus_shard_rewrite_refused(function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{function}() is refused: it rewrites or drops shards, and this database has tables protected by tenant_guard"),
        Some("Citus copies the rows as its caller, whom the tenant policies confine, before it drops the old shards.".into()),
        Some("Run it as a superuser or a member of tenant_guard_admin."),
    )
}

/// 42501: intermediate results of a distributed transaction this session has no ticket for.
pub fn citus_ticket_missing(no_master_key: bool) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        "reading or writing Citus intermediate results is refused: this session does not belong to their \
         distributed transaction"
            .into(),
        no_master_key.then(|| "No master key is configured on this node, so no ticket can be checked.".into()),
        Some(if no_master_key {
            "Configure the same master key (tenant_guard.kek_file or kek_command) on every node of the cluster."
        } else {
            "Intermediate results are read only by the distributed transaction that made them."
        }),
    )
}

/// 55000: key-set discovery was asked for in a database where no discovery worker runs.
pub fn discovery_not_enabled(database: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("key-set discovery does not run in database \"{}\"", quoted(database)),
        Some(
            "A background worker fetches discovered key sets, in the databases tenant_guard.discovery_databases \
              lists."
                .into(),
        ),
        Some(
            "Add this database to tenant_guard.discovery_databases and restart the server, or register the keys \
              with tenant.trust_issuer().",
        ),
    )
}

/// 22023: an issuer given to tenant.refresh_issuer has no discovery.
pub fn not_discovered(issuer: &str) -> ! {
    invalid_parameter(
        format!("issuer \"{}\" is not a discovered issuer", quoted(issuer)),
        Some("tenant.issuers lists the issuers; those registered with tenant.trust_issuer_discovery() have a discovery_url."),
    )
}
