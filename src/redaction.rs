//! Keeps tokens out of the server log and out of the statement text other sessions see, and keeps server LOG
//! messages away from confined clients.
//!
//! A token written into SQL text (`SELECT tenant.authenticate('eyJ...')`, `SET LOCAL tenant_guard.token = '...'`)
//! would otherwise reach the log through `log_statement`, `log_min_duration_statement`, the `STATEMENT:` line of an
//! error (`log_min_error_statement`), bind-parameter details (`log_parameter_max_length[_on_error]`) or the `CONTEXT:`
//! of an error inside a function. An `emit_log_hook` replaces every compact JWS in the message, detail, context and
//! internal query with [`REDACTED`], and points `debug_query_string` (what the `STATEMENT:` line and csvlog/jsonlog
//! print) at a redacted copy of the statement.
//!
//! **Statement text.** Every session of a role can read the statement text of the role's other sessions in
//! `pg_stat_activity`, and all tenants share the application role. When a statement's text holds a token, the text
//! reported for the session is replaced by its redacted copy as soon as the statement is parsed, again whenever it
//! is executed (a prepared statement reports its text anew at each execution), and when it fails (a statement that
//! fails to parse, or at Bind, would otherwise stay the session's reported text while it is idle). (Confined roles cannot read
//! `pg_stat_activity` at all while `tenant_guard.hide_statistics` is on; this protects the token from monitoring
//! roles and tools too.)
//!
//! **LOG messages.** With `client_min_messages = log`, a client receives messages meant for the server log:
//! `debug_print_plan` (the plan with its row estimates), `auto_explain` (actual row counts), `log_statement` echoes.
//! While `tenant_guard.hide_statistics` is on, no LOG message reaches the client of a role that is not a superuser
//! (it still reaches the server log). DEBUG messages go to the client only when the server does not log them, so
//! this hook never sees them; they describe the server's own work (transaction states), not rows.
//!
//! What counts as a token: see `tenant_guard_core::redact` (pure Rust, unit-tested).

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::ffi::{CStr, CString};
pub use tenant_guard_core::redact::{redact, REDACTED, UNCOPYABLE};

/// A C copy of a redacted text, allocated fallibly (the text of a statement may be hundreds of megabytes).
fn to_c(clean: String) -> CString {
    let mut bytes = clean.into_bytes();
    if bytes.try_reserve_exact(1).is_err() {
        return CString::new(UNCOPYABLE).expect("no NUL");
    }
    CString::new(bytes).unwrap_or_else(|_| CString::new(UNCOPYABLE).expect("no NUL"))
}

static mut PREV_EMIT_LOG: pg_sys::emit_log_hook_type = None;
static mut PREV_POST_PARSE_ANALYZE: pg_sys::post_parse_analyze_hook_type = None;

thread_local! {
    /// The redacted statement `debug_query_string` points at, kept alive until the next one replaces it.
    static REDACTED_STATEMENT: RefCell<Option<CString>> = const { RefCell::new(None) };
}

pub fn init() {
    // SAFETY: _PG_init runs once per process before any message; we chain to the hooks installed before.
    unsafe {
        PREV_EMIT_LOG = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(emit_log);
        PREV_POST_PARSE_ANALYZE = pg_sys::post_parse_analyze_hook;
        pg_sys::post_parse_analyze_hook = Some(post_parse_analyze);
    }
}

/// Reports the redacted copy of a statement's text as the session's activity, when the text holds a token and is
/// the statement the backend is running (`debug_query_string`: a cursor's FETCH runs the text of its DECLARE).
///
/// # Safety
/// `text` is NULL or a NUL-terminated statement text.
pub unsafe fn report_activity(text: *const std::ffi::c_char) {
    // SAFETY: plain read of a backend global.
    let current = unsafe { pg_sys::debug_query_string };
    if text.is_null() || current.is_null() {
        return;
    }
    // SAFETY: statement texts are NUL-terminated and outlive the call.
    let text = unsafe { CStr::from_ptr(text) };
    // pg_stat_activity keeps only track_activity_query_size bytes: redact that much, and a whole token beyond it
    // SAFETY: plain read of a setting's variable.
    let keep = unsafe { pg_sys::pgstat_track_activity_query_size } as usize + token_bytes_limit();
    let bytes = text.to_bytes();
    let prefix = String::from_utf8_lossy(&bytes[..bytes.len().min(keep)]);
    let Some(clean) = redact(&prefix) else { return };
    // SAFETY: as above.
    if text != unsafe { CStr::from_ptr(current) } {
        return;
    }
    let clean = to_c(clean);
    // SAFETY: pgstat_report_activity copies the text into the backend's shared-memory slot.
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, clean.as_ptr()) };
}

/// The longest token tenant_guard accepts: a token cut by pg_stat_activity's limit is still found whole.
fn token_bytes_limit() -> usize {
    crate::token::MAX_TOKEN_BYTES
}

#[pg_guard]
unsafe extern "C-unwind" fn post_parse_analyze(
    pstate: *mut pg_sys::ParseState,
    query: *mut pg_sys::Query,
    jstate: *mut pg_sys::JumbleState,
) {
    // SAFETY: PostgreSQL passes the parse state of the statement just analyzed.
    unsafe {
        if !pstate.is_null() && (*pstate).p_sourcetext == pg_sys::debug_query_string {
            report_activity((*pstate).p_sourcetext);
            crate::guard::statement_parsed((*pstate).p_sourcetext);
        }
        crate::guard::query_analyzed(query);
        if let Some(prev) = PREV_POST_PARSE_ANALYZE {
            pg_sys::ffi::pg_guard_ffi_boundary(|| prev(pstate, query, jstate));
        }
    }
}

/// Whether a LOG or DEBUG message may go to this client (see the module notes).
unsafe fn log_message_for_client() -> bool {
    if !crate::gucs::statistics_hidden() {
        return true;
    }
    // The client's role is the outer user (tenant_guard's internal queries run as the bootstrap superuser).
    // SAFETY: superuser_arg may read the catalog: only inside a valid transaction and outside a critical section;
    // elsewhere the client is treated as confined.
    unsafe {
        pg_sys::IsTransactionState() && pg_sys::CritSectionCount == 0 && pg_sys::superuser_arg(pg_sys::GetOuterUserId())
    }
}

/// Replaces a palloc'd message field with its redacted copy (allocated in the current memory context, which is
/// ErrorContext while a message is emitted).
unsafe fn redact_field(field: &mut *mut std::ffi::c_char) {
    if field.is_null() {
        return;
    }
    // SAFETY: message fields are NUL-terminated strings owned by the error data.
    let text = unsafe { CStr::from_ptr(*field) }.to_string_lossy();
    if let Some(clean) = redact(&text) {
        let clean = to_c(clean);
        // SAFETY: pstrdup copies into the current memory context; the old string is left to ErrorContext's reset.
        *field = unsafe { pg_sys::pstrdup(clean.as_ptr()) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn emit_log(edata: *mut pg_sys::ErrorData) {
    // SAFETY: PostgreSQL passes the ErrorData being emitted; we only replace its strings with redacted copies.
    unsafe {
        let e = &mut *edata;
        if (pg_sys::LOG as i32..pg_sys::INFO as i32).contains(&e.elevel)
            && e.output_to_client
            && !log_message_for_client()
        {
            e.output_to_client = false;
        }
        if e.elevel >= pgrx::PgLogLevel::ERROR as i32 {
            // a statement that fails before its parse analysis or at Bind keeps its raw text as the session's
            // activity: redact it now, while its text is still the current statement
            report_activity(pg_sys::debug_query_string);
        }
        hide_secret_setting_change(&mut e.message);
        redact_field(&mut e.message);
        redact_field(&mut e.detail);
        redact_field(&mut e.detail_log);
        redact_field(&mut e.context);
        redact_field(&mut e.internalquery);
        redact_statement();
        if let Some(prev) = PREV_EMIT_LOG {
            pg_sys::ffi::pg_guard_ffi_boundary(|| prev(edata));
        }
    }
}

/// PostgreSQL logs `parameter "x" changed to "value"` when a reload changes a setting: for the master-key settings,
/// the value (a key command line, a key file's path) is replaced.
unsafe fn hide_secret_setting_change(field: &mut *mut std::ffi::c_char) {
    if field.is_null() {
        return;
    }
    // SAFETY: message fields are NUL-terminated strings owned by the error data.
    let text = unsafe { CStr::from_ptr(*field) }.to_string_lossy();
    let Some(rest) = text.strip_prefix("parameter \"tenant_guard.kek_") else { return };
    let Some((name, _)) = rest.split_once("\" changed to ") else { return };
    let clean =
        CString::new(format!("parameter \"tenant_guard.kek_{name}\" changed (its value is hidden by tenant_guard)"))
            .expect("setting names have no NUL");
    // SAFETY: pstrdup copies into the current memory context (ErrorContext while a message is emitted).
    *field = unsafe { pg_sys::pstrdup(clean.as_ptr()) };
}

/// Points `debug_query_string` at a redacted copy when the statement holds a token.
unsafe fn redact_statement() {
    // SAFETY: debug_query_string is the backend's current statement text (or NULL); we only read it here.
    let current = unsafe { pg_sys::debug_query_string };
    if current.is_null() {
        return;
    }
    let ours = REDACTED_STATEMENT.with_borrow(|s| s.as_ref().map(|s| s.as_ptr()));
    if ours == Some(current) {
        return; // already redacted
    }
    // SAFETY: as above.
    let Some(clean) = redact(&unsafe { CStr::from_ptr(current) }.to_string_lossy()) else { return };
    let clean = to_c(clean);
    let ptr = clean.as_ptr();
    // The previous copy is no longer pointed at (PostgreSQL has moved on to this statement), so it may go.
    REDACTED_STATEMENT.with_borrow_mut(|s| *s = Some(clean));
    // SAFETY: the string lives in REDACTED_STATEMENT until a later statement replaces it; PostgreSQL reassigns
    // debug_query_string for each statement and never frees what it points at.
    unsafe { pg_sys::debug_query_string = ptr };
}
