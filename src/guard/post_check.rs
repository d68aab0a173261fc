//! The owner line, checked on what a statement did: code that is not trusted with every tenant's rows, and foreign
//! keys that cross the tenant boundary, must not appear on a protected table through a statement of a role that is
//! not an administrator.
//!
//! Such code runs later, in each tenant's own writes (a trigger, a NOT VALID constraint, a default, a domain's check
//! or default), so it is enough to refuse it before the transaction commits: the statement has run, PostgreSQL has
//! resolved every name, operator, cast and domain and recorded the functions it calls in `pg_depend`, and the
//! catalog says exactly what the statement added. What was there before (made by an administrator, or before
//! tenant_guard refused it) is reported by the audit, not held against the next statement.

use super::user_code;
use crate::errors;
use pgrx::pg_sys;
use std::collections::HashSet;

/// A statement's relations and what the owner line found on them before it ran.
pub struct PostCheck {
    what: String,
    relids: Vec<pg_sys::Oid>,
    /// A relation the statement creates, resolved once it exists.
    created: Option<*mut pg_sys::RangeVar>,
    before: HashSet<(pg_sys::Oid, String, String, String)>,
}

impl PostCheck {
    /// Records the findings on `relids` before `node` runs.
    ///
    /// # Safety
    /// `node` is the statement's parse tree; `created` is NULL or a RangeVar of it (schema-qualified).
    pub unsafe fn before(
        node: *mut pg_sys::Node,
        relids: Vec<pg_sys::Oid>,
        created: Option<*mut pg_sys::RangeVar>,
    ) -> Option<PostCheck> {
        if relids.is_empty() && created.is_none() || !super::functions::installed_here() {
            return None;
        }
        // SAFETY: CreateCommandName reads the node tag and returns a static string.
        let what = unsafe { super::cstr(pg_sys::CreateCommandName(node)) };
        let before = user_code::findings(&relids).into_iter().collect();
        Some(PostCheck { what, relids, created, before })
    }

    /// Raises 42501 for the first finding the statement added.
    pub fn verify(self) {
        let mut relids = self.relids;
        if let Some(rv) = self.created {
            // SAFETY: the statement has created the relation; a lookup without a lock, missing_ok.
            let relid = unsafe {
                pg_sys::RangeVarGetRelidExtended(
                    rv,
                    pg_sys::NoLock as _,
                    pg_sys::RVROption::RVR_MISSING_OK,
                    None,
                    std::ptr::null_mut(),
                )
            };
            if relid != pg_sys::InvalidOid {
                relids.push(relid);
            }
        }
        let mut after = user_code::findings(&relids);
        after.sort_by_key(|(relid, kind, object, detail)| {
            (relid.to_u32(), kind.clone(), object.clone(), detail.clone())
        });
        if let Some((relid, kind, object, detail)) = after.into_iter().find(|f| !self.before.contains(f)) {
            let table = super::display_name(relid);
            match kind.as_str() {
                "foreign_key" => errors::crossing_foreign_key_refused(&self.what, &table, &object, &detail),
                _ => {
                    let code =
                        if detail.is_empty() { object } else { format!("{object}, which calls function {detail}") };
                    errors::untrusted_code_refused(&self.what, &table, &code)
                }
            }
        }
    }
}
