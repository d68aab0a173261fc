//! Running tenant_guard's own fixed queries safely, whoever called.
//!
//! Two guarantees, for every internal query (catalog lookups, the DDL that protects a table, the key tables):
//! - **A pinned `search_path`** (`pg_catalog, pg_temp`): no object the caller created, an operator `=` or a function
//!   named like a built-in one in a schema put first on the path, can be picked up by an internal query. The queries
//!   also qualify what they name (`OPERATOR(pg_catalog.=)`, `tenant.current_id()`).
//! - **Raised rights where they are needed**: the key tables (`tenant.trusted_issuer`, `tenant.data_key`, ...) are
//!   readable by superusers only, yet any role with a tenant context must be able to verify a token or decrypt. Those
//!   reads run as the bootstrap superuser, the way a SECURITY DEFINER function with `SET search_path` would: the user
//!   switch is marked `SECURITY_LOCAL_USERID_CHANGE` (so `SET ROLE` is refused meanwhile).
//!
//! The DDL that protects a table runs with the caller's rights (PostgreSQL checks that the caller owns the table),
//! under the pinned search path only.

use pgrx::pg_sys;

/// Restores the GUC nest level (and the user id, when it was switched) however the closure ends.
struct Restore {
    user: Option<(pg_sys::Oid, i32)>,
    nest: i32,
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: pops the GUC nest level pushed by `pin` and restores exactly what GetUserIdAndSecContext returned.
        // While unwinding from an ERROR the GUC level is left to (sub)transaction abort, which pops it; the user id
        // is restored either way (abort would restore the same values).
        unsafe {
            if !std::thread::panicking() {
                pg_sys::AtEOXact_GUC(true, self.nest);
            }
            if let Some((user, sec)) = self.user {
                pg_sys::SetUserIdAndSecContext(user, sec);
            }
        }
    }
}

/// Pushes a GUC nest level with `search_path = pg_catalog, pg_temp` (and `jit = off`), optionally as the bootstrap
/// superuser.
fn pin(as_superuser: bool) -> Restore {
    // SAFETY: plain FFI getters/setters of backend-local state, paired by `Restore`. set_config_option with
    // GUC_ACTION_SAVE inside a new nest level is what fmgr_security_definer does for `SET search_path`.
    unsafe {
        let user = if as_superuser {
            let mut user = pg_sys::InvalidOid;
            let mut sec = 0;
            pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
            Some((user, sec))
        } else {
            None
        };
        let nest = pg_sys::NewGUCNestLevel();
        let restore = Restore { user, nest };
        if let Some((_, sec)) = user {
            pg_sys::SetUserIdAndSecContext(
                pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
                sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            );
        }
        // jit off too: internal catalog queries are cheap, but JIT compiling them would cost tens of milliseconds
        for (name, value) in [(c"search_path", c"pg_catalog, pg_temp"), (c"jit", c"off")] {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        restore
    }
}

/// Runs `f` with `search_path = pg_catalog, pg_temp`, with the caller's rights.
pub fn with_pinned_search_path<R>(f: impl FnOnce() -> R) -> R {
    let _restore = pin(false);
    f()
}

/// Runs `f` as the bootstrap superuser with `search_path = pg_catalog, pg_temp`.
pub fn as_bootstrap_superuser<R>(f: impl FnOnce() -> R) -> R {
    let _restore = pin(true);
    f()
}
