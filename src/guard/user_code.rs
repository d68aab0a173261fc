//! Finding code that is not trusted with every tenant's rows, in a statement before it runs and on a table that
//! exists (see `sql/trusted_code.sql` for what "trusted" means).
//!
//! A statement's expressions are raw parse trees at the time the tamper guard sees them: function and operator names
//! are not resolved yet. [`raw_callees`] collects, conservatively, every function a raw expression could call: every
//! candidate of every function name, the function of every operator candidate, and the types it casts to (whose
//! domain constraints run too). A subquery is noted, as anything can run in it. The catalog query decides which of
//! those are trusted.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::c_void;

/// What a raw expression could call.
#[derive(Default, Debug)]
pub struct Callees {
    pub functions: Vec<pg_sys::Oid>,
    pub types: Vec<pg_sys::Oid>,
    pub subquery: bool,
}

/// Every function candidate, operator function and cast type in a raw (untransformed) expression.
///
/// # Safety
/// `node` is NULL or a raw parse tree of the statement being checked.
pub unsafe fn raw_callees(node: *mut pg_sys::Node) -> Callees {
    let mut callees = Callees::default();
    // SAFETY: as the caller promises; the walker only reads the tree and calls catalog lookups that do not error
    // (missing_ok).
    unsafe { collect(node, &mut callees as *mut Callees as *mut c_void) };
    callees
}

/// Adds the function of a trigger (trigger functions take no arguments).
///
/// # Safety
/// `funcname` is a qualified-name list (String nodes) of the statement being checked.
pub unsafe fn trigger_function(funcname: *mut pg_sys::List, callees: &mut Callees) {
    // SAFETY: as the caller promises; missing_ok, so a missing function is left to the statement.
    let oid = unsafe { pg_sys::LookupFuncName(funcname, 0, std::ptr::null(), true) };
    if oid != pg_sys::InvalidOid {
        callees.functions.push(oid);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn collect(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: `context` is the `Callees` passed by raw_callees; each node is cast to the type its tag names.
    unsafe {
        let callees = &mut *(context as *mut Callees);
        match (*node).type_ {
            pg_sys::NodeTag::T_FuncCall => {
                let call = node as *mut pg_sys::FuncCall;
                let mut candidate = pg_sys::FuncnameGetCandidates(
                    (*call).funcname,
                    -1,
                    std::ptr::null_mut(),
                    false,
                    false,
                    false,
                    true,
                );
                while !candidate.is_null() {
                    callees.functions.push((*candidate).oid);
                    candidate = (*candidate).next;
                }
            }
            pg_sys::NodeTag::T_A_Expr => {
                let expr = node as *mut pg_sys::A_Expr;
                // BETWEEN and friends name no operator of their own; the rest name one
                if !matches!(
                    (*expr).kind,
                    pg_sys::A_Expr_Kind::AEXPR_BETWEEN
                        | pg_sys::A_Expr_Kind::AEXPR_NOT_BETWEEN
                        | pg_sys::A_Expr_Kind::AEXPR_BETWEEN_SYM
                        | pg_sys::A_Expr_Kind::AEXPR_NOT_BETWEEN_SYM
                ) {
                    let mut candidate = pg_sys::OpernameGetCandidates((*expr).name, 0, true);
                    while !candidate.is_null() {
                        let function = pg_sys::get_opcode((*candidate).oid);
                        if function != pg_sys::InvalidOid {
                            callees.functions.push(function);
                        }
                        candidate = (*candidate).next;
                    }
                }
            }
            pg_sys::NodeTag::T_TypeCast => {
                let cast = node as *mut pg_sys::TypeCast;
                let oid = pg_sys::LookupTypeNameOid(std::ptr::null_mut(), (*cast).typeName, true);
                if oid != pg_sys::InvalidOid {
                    callees.types.push(oid);
                }
            }
            pg_sys::NodeTag::T_SubLink => callees.subquery = true,
            _ => {}
        }
        pg_sys::raw_expression_tree_walker(node, Some(collect), context)
    }
}

/// The first of `callees` that is not trusted with every tenant's rows (as `name(argtypes)`), if any.
pub fn first_untrusted(callees: &Callees) -> Option<String> {
    if callees.functions.is_empty() && callees.types.is_empty() {
        return None;
    }
    crate::privileged::with_pinned_search_path(|| {
        Spi::get_one_with_args::<String>(
            "SELECT tenant._first_untrusted($1, $2)",
            &[callees.functions.clone().into(), callees.types.clone().into()],
        )
        .unwrap_or_else(|e| crate::errors::internal(format!("tenant_guard could not check a function: {e}")))
    })
}

/// The first trigger, rule, policy, index, constraint, generated column, statistics object or column domain of a
/// table that runs code not trusted with every tenant's rows: (object, function), the function absent for a rule.
pub fn untrusted_code_on(relid: pg_sys::Oid) -> Option<(String, Option<String>)> {
    crate::privileged::with_pinned_search_path(|| {
        Spi::connect(|client| {
            let rows = client
                .select(
                    "SELECT object, callee FROM tenant._untrusted_code($1) ORDER BY 1, 2 LIMIT 1",
                    None,
                    &[relid.into()],
                )
                .unwrap_or_else(|e| crate::errors::internal(format!("tenant_guard could not check a table: {e}")));
            rows.into_iter().next().map(|row| {
                (row.get::<String>(1).ok().flatten().unwrap_or_default(), row.get::<String>(2).ok().flatten())
            })
        })
    })
}

/// PostgreSQL's FirstNormalObjectId: objects with a lower oid are PostgreSQL's own (created by initdb).
#[pg_extern(immutable, parallel_safe, name = "_first_normal_oid")]
fn first_normal_oid() -> i64 {
    pg_sys::FirstNormalObjectId as i64
}

extension_sql_file!(
    "../../sql/trusted_code.sql",
    name = "trusted_code",
    requires = [first_normal_oid, "labels_schema"]
);
