//! Every `tenant_guard.*` setting, in one place.
//!
//! All settings except the token are `PGC_SUSET`: only a superuser (or a role a superuser granted `SET` on the
//! parameter to) can change them, in `postgresql.conf`, `ALTER SYSTEM`, `ALTER DATABASE/ROLE ... SET`, or a session.
//! A user who could widen the leeway or the lifetime could make expired tokens valid again.
//!
//! The master-key providers (`kek_file`, `kek_command` and their `kek_previous_*` twins) are `PGC_SIGHUP`: they can
//! be set only in `postgresql.conf` or with `ALTER SYSTEM` (both superuser-only) and take effect on reload. They are
//! also `GUC_SUPERUSER_ONLY`, because a command line may carry a credential for the KMS.
//!
//! The token is `PGC_USERSET`, because any client must be able to present one, and `GUC_SUPERUSER_ONLY`, so that
//! code running later in the session cannot read it back with `SHOW` or `current_setting()`. Setting it only stores
//! a string: the tenant is derived by verifying that string (see `context`).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::{CStr, CString};

/// Name of the token setting, as SQL sees it.
pub const TOKEN_NAME: &CStr = c"tenant_guard.token";

pub static TOKEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CLOCK_SKEW: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static MAX_TOKEN_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static ALLOW_SESSION_SCOPE: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static TENANT_CLAIM: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"tenant_id"));
pub static KEK_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static KEK_COMMAND: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static KEK_PREVIOUS_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static KEK_PREVIOUS_COMMAND: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Largest accepted `tenant_guard.clock_skew`, in seconds.
pub const MAX_CLOCK_SKEW: i32 = 300;
/// Largest accepted `tenant_guard.max_token_lifetime`, in seconds (7 days).
pub const MAX_LIFETIME_LIMIT: i32 = 7 * 24 * 3600;

pub fn init() {
    GucRegistry::define_string_guc(
        TOKEN_NAME,
        c"Signed token (compact JWS) that sets the tenant context.",
        c"Only a token that verifies against a trusted issuer yields a tenant; anything else yields no context. \
          Use SET LOCAL in transaction-pooled connections. Not readable back by non-superusers.",
        &TOKEN,
        GucContext::Userset,
        GucFlags::NO_SHOW_ALL | GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"tenant_guard.clock_skew",
        c"Leeway in seconds for the exp, nbf and iat claims.",
        c"At most 300 seconds. Superuser only.",
        &CLOCK_SKEW,
        0,
        MAX_CLOCK_SKEW,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"tenant_guard.max_token_lifetime",
        c"Longest accepted token lifetime in seconds, from iat (or nbf) to exp.",
        c"Tokens that live longer are rejected even when their signature is valid. Superuser only.",
        &MAX_TOKEN_LIFETIME,
        1,
        MAX_LIFETIME_LIMIT,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"tenant_guard.allow_session_scope",
        c"Whether a tenant context may outlive its transaction (authenticate(token, 'session'), session-level SET).",
        c"Turn it off for roles that connect through a transaction-mode pooler (ALTER ROLE app SET \
          tenant_guard.allow_session_scope = off): a session context would pass to the next client. Superuser only.",
        &ALLOW_SESSION_SCOPE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.tenant_claim",
        c"Claim that carries the tenant id (a uuid), for issuers that do not name their own.",
        c"tenant.trust_issuer(..., tenant_claim => ...) overrides it per issuer. Superuser only.",
        &TENANT_CLAIM,
        GucContext::Suset,
        GucFlags::default(),
    );
    let kek_flags = GucFlags::NO_SHOW_ALL | GucFlags::SUPERUSER_ONLY;
    GucRegistry::define_string_guc(
        c"tenant_guard.kek_file",
        c"File holding the master key (32 bytes as 64 hex digits or base64) that wraps every tenant data key.",
        c"Must be owned by the server's OS user with mode 0600 or stricter. Keep it outside the data directory. \
          Set this or tenant_guard.kek_command, not both.",
        &KEK_FILE,
        GucContext::Sighup,
        kek_flags,
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.kek_command",
        c"Command (run by /bin/sh) that prints the master key on standard output: the hook for a KMS or Vault.",
        c"Its standard error is discarded; a non-zero exit status is an error. Set this or tenant_guard.kek_file.",
        &KEK_COMMAND,
        GucContext::Sighup,
        kek_flags,
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.kek_previous_file",
        c"File holding the previous master key, while tenant.rewrap_keys() moves data keys to the current one.",
        c"Data keys wrapped by it still unwrap meanwhile. Remove it once tenant.rewrap_keys() has run.",
        &KEK_PREVIOUS_FILE,
        GucContext::Sighup,
        kek_flags,
    );
    GucRegistry::define_string_guc(
        c"tenant_guard.kek_previous_command",
        c"Command that prints the previous master key, while tenant.rewrap_keys() moves data keys to the current one.",
        c"Data keys wrapped by it still unwrap meanwhile. Remove it once tenant.rewrap_keys() has run.",
        &KEK_PREVIOUS_COMMAND,
        GucContext::Sighup,
        kek_flags,
    );
    // Reserve the prefix: after this, SET tenant_guard.<typo> is an error instead of a silent placeholder.
    // SAFETY: called once from _PG_init, with a static NUL-terminated string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"tenant_guard".as_ptr()) };
}

/// The raw token bytes currently set, without copying. Empty when unset.
///
/// The returned slice borrows GUC-owned memory: it must be dropped before any setting can change (that is, before
/// running SQL or setting a GUC).
pub fn token_bytes<'a>() -> &'a [u8] {
    // SAFETY: the pointer is either NULL or a NUL-terminated string owned by the GUC machinery; we only read it.
    unsafe {
        let ptr = *TOKEN.as_ptr();
        if ptr.is_null() {
            &[]
        } else {
            CStr::from_ptr(ptr).to_bytes()
        }
    }
}

pub fn session_scope_allowed() -> bool {
    ALLOW_SESSION_SCOPE.get()
}

pub fn clock_skew() -> i64 {
    CLOCK_SKEW.get() as i64
}

pub fn max_token_lifetime() -> i64 {
    MAX_TOKEN_LIFETIME.get() as i64
}

/// The global tenant claim name, without copying (same lifetime rule as [`token_bytes`]).
pub fn tenant_claim<'a>() -> &'a str {
    // SAFETY: as for token_bytes.
    unsafe {
        let ptr = *TENANT_CLAIM.as_ptr();
        if ptr.is_null() {
            "tenant_id"
        } else {
            match CStr::from_ptr(ptr).to_str() {
                Ok(name) if !name.is_empty() => name,
                _ => "tenant_id",
            }
        }
    }
}

fn string_setting(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().and_then(|v| v.into_string().ok()).filter(|v| !v.trim().is_empty())
}

/// A configured master-key provider (see `keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    File(String),
    Command(String),
}

/// Which master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekSlot {
    Current,
    Previous,
}

impl KekSlot {
    pub fn settings(self) -> (&'static str, &'static str) {
        match self {
            KekSlot::Current => ("tenant_guard.kek_file", "tenant_guard.kek_command"),
            KekSlot::Previous => ("tenant_guard.kek_previous_file", "tenant_guard.kek_previous_command"),
        }
    }
}

/// Both providers of one slot are set.
#[derive(Debug)]
pub struct AmbiguousKek;

/// The provider configured for `slot`: `Ok(None)` when neither setting is set, an error when both are.
pub fn kek_source(slot: KekSlot) -> Result<Option<KekSource>, AmbiguousKek> {
    let (file, command) = match slot {
        KekSlot::Current => (string_setting(&KEK_FILE), string_setting(&KEK_COMMAND)),
        KekSlot::Previous => (string_setting(&KEK_PREVIOUS_FILE), string_setting(&KEK_PREVIOUS_COMMAND)),
    };
    match (file, command) {
        (Some(_), Some(_)) => Err(AmbiguousKek),
        (Some(f), None) => Ok(Some(KekSource::File(f))),
        (None, Some(c)) => Ok(Some(KekSource::Command(c))),
        (None, None) => Ok(None),
    }
}
