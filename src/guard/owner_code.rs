//! Rules against code and validation that would run over every tenant's rows of a protected table, for confined
//! roles, the table owner included.
//!
//! Row-level security confines queries, not schema changes: a statement that validates or rewrites a table reads
//! every row, whoever runs it. Two kinds are refused:
//! - **validation or rewriting of existing rows**, whatever it calls, refused before the statement runs, because
//!   its failure tells the caller about other tenants' rows (a unique index that fails names the duplicated value, a
//!   retyping that fails names the value it could not convert, a CHECK that fails says some row matches), and code in
//!   it would see every row at once: validated CHECK, UNIQUE, PRIMARY KEY, EXCLUDE and FOREIGN KEY constraints,
//!   SET NOT NULL, VALIDATE CONSTRAINT, retyping a column (directly, or through the composite type a typed table is
//!   made of), generated columns, unique or expression or partial indexes, statistics on expressions, validated
//!   constraints added to a domain a protected table uses, tying a protected table to a type (`ALTER TABLE ... OF`);
//! - **code that is not trusted with every tenant's rows** (see `sql/trusted_code.sql`), checked once the statement
//!   has run, on the catalog (see `post_check`): triggers, NOT VALID constraints, defaults, domain constraints and
//!   defaults, anything that would later run in each tenant's own writes. A rule is refused outright.
//!
//! Administrators run those (migrations that need them run as a member of `tenant_guard_admin`). What stays allowed
//! to the owner: adding and dropping ordinary columns, defaults and NOT VALID constraints with trusted code, plain
//! indexes on columns, triggers with trusted functions, comments, grants, renames.

use super::{guarded, lookup, user_code, Guarded};
use crate::errors;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

/// ALTER TABLE subcommands that validate or rewrite every row, or tie the table to a type its owner can change.
///
/// # Safety
/// `stmt` is the statement's (writable) AlterTableStmt; `table` its resolved, locked relation.
/// ATTACH PARTITION of a protected table: PostgreSQL checks the partition bound against every row of the table
/// being attached, so a bound chosen by the caller (a LIST over an expression of another tenant's values) answers
/// yes or no about other tenants' rows. Refused whatever the parent, unless the table holds no rows from before this
/// transaction (see `citus::is_new_shard`: Citus attaching the shards of a new partition).
///
/// # Safety
/// `stmt` is the statement's AlterTableStmt.
pub unsafe fn attach_partition(stmt: *mut pg_sys::AlterTableStmt) {
    // SAFETY: the subcommands are AlterTableCmd nodes; an ATTACH's `def` is a PartitionCmd naming the table.
    unsafe {
        for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() {
            if (*cmd).subtype != pg_sys::AlterTableType::AT_AttachPartition || (*cmd).def.is_null() {
                continue;
            }
            let child = (*((*cmd).def as *mut pg_sys::PartitionCmd)).name;
            let relid = lookup::pin(child, pg_sys::ShareUpdateExclusiveLock);
            if let Some(table) = guarded(relid) {
                if !crate::citus::is_new_shard(relid) {
                    errors::validation_refused(
                        "ATTACH PARTITION (its bound is checked against every row)",
                        &table.name,
                    );
                }
            }
        }
    }
}

pub unsafe fn alter_table(table: &Guarded, stmt: *mut pg_sys::AlterTableStmt) {
    // SAFETY: the subcommands are AlterTableCmd nodes whose `def` has the type their subtype implies.
    for cmd in unsafe { PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() } {
        // SAFETY: `cmd` is a valid AlterTableCmd of the list; its `name` is NULL or NUL-terminated.
        unsafe {
            let name = super::cstr((*cmd).name);
            match (*cmd).subtype {
                pg_sys::AlterTableType::AT_AddColumn => add_column(table, (*cmd).def as *mut pg_sys::ColumnDef),
                pg_sys::AlterTableType::AT_AddConstraint => constraint(table, (*cmd).def as *mut pg_sys::Constraint),
                pg_sys::AlterTableType::AT_AlterColumnType => {
                    errors::validation_refused(&format!("changing the type of column \"{name}\""), &table.name)
                }
                pg_sys::AlterTableType::AT_SetNotNull => {
                    errors::validation_refused(&format!("SET NOT NULL on column \"{name}\""), &table.name)
                }
                pg_sys::AlterTableType::AT_ValidateConstraint => {
                    errors::validation_refused(&format!("VALIDATE CONSTRAINT \"{name}\""), &table.name)
                }
                pg_sys::AlterTableType::AT_AddOf => errors::validation_refused(
                    "ALTER TABLE ... OF (its columns would follow a type that ALTER TYPE rewrites)",
                    &table.name,
                ),
                #[cfg(not(any(feature = "pg15", feature = "pg16")))]
                pg_sys::AlterTableType::AT_SetExpression => errors::validation_refused(
                    &format!("changing the expression of generated column \"{name}\""),
                    &table.name,
                ),
                _ => {}
            }
        }
    }
}

/// ADD COLUMN with a constraint or a generation expression that is computed or checked over every row.
unsafe fn add_column(table: &Guarded, def: *mut pg_sys::ColumnDef) {
    // SAFETY: `def` is the ColumnDef of ADD COLUMN; its constraints are Constraint nodes.
    unsafe {
        if def.is_null() {
            return;
        }
        let column = super::cstr((*def).colname);
        if crate::citus::shell_of(table.relid).is_some() && is_serial((*def).typeName) {
            errors::validation_refused(&format!("adding serial column \"{column}\" to a shard"), &table.name);
        }
        if (*def).generated != 0 {
            errors::validation_refused(&format!("adding generated column \"{column}\""), &table.name);
        }
        // NOT NULL is checked against every row, with the DEFAULT each gets: with no DEFAULT it says whether the
        // table (a shard: its few tenants) holds any row, with a DEFAULT that varies (random()) it estimates how many
        let constraints = PgList::<pg_sys::Constraint>::from_pg((*def).constraints);
        let not_null =
            (*def).is_not_null || constraints.iter_ptr().any(|c| (*c).contype == pg_sys::ConstrType::CONSTR_NOTNULL);
        if not_null {
            let default = constraints
                .iter_ptr()
                .find(|c| (**c).contype == pg_sys::ConstrType::CONSTR_DEFAULT)
                .map(|c| (*c).raw_expr)
                .unwrap_or((*def).raw_default);
            if !is_constant(default) {
                errors::validation_refused(
                    &format!("adding NOT NULL column \"{column}\" without a constant DEFAULT"),
                    &table.name,
                );
            }
        }
        for c in PgList::<pg_sys::Constraint>::from_pg((*def).constraints).iter_ptr() {
            match (*c).contype {
                pg_sys::ConstrType::CONSTR_GENERATED => {
                    errors::validation_refused(&format!("adding generated column \"{column}\""), &table.name)
                }
                pg_sys::ConstrType::CONSTR_CHECK
                | pg_sys::ConstrType::CONSTR_UNIQUE
                | pg_sys::ConstrType::CONSTR_PRIMARY
                | pg_sys::ConstrType::CONSTR_EXCLUSION
                | pg_sys::ConstrType::CONSTR_FOREIGN => errors::validation_refused(
                    &format!("adding column \"{column}\" with a {} constraint", constraint_kind((*c).contype)),
                    &table.name,
                ),
                // A Citus shard holds the rows of the few tenants hashed to it: a sequence that numbers its rows
                // (an identity, a DEFAULT that draws from one) counts them. Citus refuses both on a distributed
                // table, so only a direct change of the shard brings them.
                pg_sys::ConstrType::CONSTR_IDENTITY | pg_sys::ConstrType::CONSTR_DEFAULT
                    if crate::citus::shell_of(table.relid).is_some()
                        && ((*c).contype == pg_sys::ConstrType::CONSTR_IDENTITY
                            || draws_from_a_sequence((*c).raw_expr)) =>
                {
                    errors::validation_refused(
                        &format!("adding column \"{column}\" with an identity or a default to a shard"),
                        &table.name,
                    )
                }
                _ => {}
            }
        }
    }
}

/// Whether a raw expression is a constant (a literal, possibly cast): the same value for every row.
///
/// # Safety
/// `expr` is NULL or a raw expression tree.
unsafe fn is_constant(expr: *mut pg_sys::Node) -> bool {
    // SAFETY: the node's tag says its type; a TypeCast's `arg` is a raw expression too.
    unsafe {
        if expr.is_null() {
            return false;
        }
        match (*expr).type_ {
            pg_sys::NodeTag::T_A_Const => true,
            pg_sys::NodeTag::T_TypeCast => is_constant((*(expr as *mut pg_sys::TypeCast)).arg),
            _ => false,
        }
    }
}

/// Whether a column's type is one of the serial pseudo-types (a sequence DEFAULT, made during ALTER TABLE).
///
/// # Safety
/// `name` is NULL or a TypeName node.
unsafe fn is_serial(name: *mut pg_sys::TypeName) -> bool {
    // SAFETY: a TypeName's `names` list holds String nodes; only the last is read.
    unsafe {
        if name.is_null() {
            return false;
        }
        let names = PgList::<pg_sys::Node>::from_pg((*name).names);
        names.iter_ptr().last().is_some_and(|n| {
            let last = pg_sys::nodeToString(n.cast());
            let text = std::ffi::CStr::from_ptr(last).to_string_lossy().to_ascii_lowercase();
            ["serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"]
                .iter()
                .any(|s| text.contains(&format!("\"{s}\"")))
        })
    }
}

/// Whether a raw DEFAULT expression calls nextval (a sequence numbering the rows it fills).
///
/// # Safety
/// `expr` is NULL or a raw expression tree.
unsafe fn draws_from_a_sequence(expr: *mut pg_sys::Node) -> bool {
    // SAFETY: nodeToString of a valid tree (or NULL) returns a palloc'd NUL-terminated string.
    !expr.is_null()
        && unsafe { std::ffi::CStr::from_ptr(pg_sys::nodeToString(expr.cast())) }
            .to_string_lossy()
            .contains("\"nextval\"")
}

/// ADD CONSTRAINT: validated constraints read every row. NOT VALID CHECK and FOREIGN KEY constraints are checked on
/// new rows only, by the tenant that writes them: allowed here, judged on their code once they exist.
unsafe fn constraint(table: &Guarded, c: *mut pg_sys::Constraint) {
    // SAFETY: `c` is the Constraint node of ADD CONSTRAINT.
    unsafe {
        if c.is_null() {
            return;
        }
        let kind = (*c).contype;
        let not_valid = (*c).skip_validation;
        match kind {
            pg_sys::ConstrType::CONSTR_CHECK | pg_sys::ConstrType::CONSTR_FOREIGN if not_valid => {}
            pg_sys::ConstrType::CONSTR_CHECK
            | pg_sys::ConstrType::CONSTR_UNIQUE
            | pg_sys::ConstrType::CONSTR_PRIMARY
            | pg_sys::ConstrType::CONSTR_EXCLUSION
            | pg_sys::ConstrType::CONSTR_FOREIGN => {
                errors::validation_refused(&format!("adding a {} constraint", constraint_kind(kind)), &table.name)
            }
            _ => {}
        }
    }
}

fn constraint_kind(kind: pg_sys::ConstrType::Type) -> &'static str {
    match kind {
        pg_sys::ConstrType::CONSTR_CHECK => "CHECK",
        pg_sys::ConstrType::CONSTR_UNIQUE => "UNIQUE",
        pg_sys::ConstrType::CONSTR_PRIMARY => "PRIMARY KEY",
        pg_sys::ConstrType::CONSTR_EXCLUSION => "EXCLUDE",
        _ => "FOREIGN KEY",
    }
}

/// CREATE RULE: a rule's actions are statements that receive every row written by every tenant.
///
/// # Safety
/// `stmt` is the statement's (writable) RuleStmt.
pub unsafe fn rule(stmt: *mut pg_sys::RuleStmt) {
    // SAFETY: pins the table under the lock CREATE RULE takes.
    let relid = unsafe { lookup::pin((*stmt).relation, pg_sys::AccessExclusiveLock) };
    if let Some(table) = guarded(relid) {
        errors::tamper_refused("CREATE RULE", &table.name);
    }
}

/// CREATE INDEX: a unique index names a duplicated value when it fails; expressions and predicates are evaluated
/// over every row.
///
/// # Safety
/// `stmt` is the statement's (writable) IndexStmt.
pub unsafe fn index(stmt: *mut pg_sys::IndexStmt) {
    // SAFETY: pins the table under the lock CREATE INDEX takes; reads the statement.
    unsafe {
        let lockmode = if (*stmt).concurrent { pg_sys::ShareUpdateExclusiveLock } else { pg_sys::ShareLock };
        let relid = lookup::pin((*stmt).relation, lockmode);
        let Some(table) = guarded(relid) else { return };
        if crate::citus::is_new_shard(relid) {
            return; // see citus::is_new_shard
        }
        if (*stmt).unique {
            errors::validation_refused("CREATE UNIQUE INDEX", &table.name);
        }
        if !(*stmt).whereClause.is_null() {
            errors::validation_refused("CREATE INDEX ... WHERE", &table.name);
        }
        if !(*stmt).excludeOpNames.is_null() {
            errors::validation_refused("an exclusion index", &table.name);
        }
        if PgList::<pg_sys::IndexElem>::from_pg((*stmt).indexParams).iter_ptr().any(|e| !(*e).expr.is_null()) {
            errors::validation_refused("an index on an expression", &table.name);
        }
    }
}

/// CREATE STATISTICS on expressions: ANALYZE evaluates them over sampled rows of every tenant.
///
/// # Safety
/// `stmt` is the statement's (writable) CreateStatsStmt.
pub unsafe fn statistics(stmt: *mut pg_sys::CreateStatsStmt) {
    // SAFETY: the relations are RangeVars; the elements are StatsElem nodes.
    unsafe {
        let has_expressions =
            PgList::<pg_sys::StatsElem>::from_pg((*stmt).exprs).iter_ptr().any(|e| !(*e).expr.is_null());
        for rv in PgList::<pg_sys::RangeVar>::from_pg((*stmt).relations).iter_ptr() {
            let relid = lookup::pin(rv, pg_sys::ShareUpdateExclusiveLock);
            if let (Some(table), true) = (guarded(relid), has_expressions) {
                errors::validation_refused("CREATE STATISTICS on expressions", &table.name);
            }
        }
    }
}

/// ALTER DOMAIN: a validated constraint (ADD CONSTRAINT, SET NOT NULL, VALIDATE CONSTRAINT) checks every value of
/// the domain, in every table that uses it. (A NOT VALID constraint or a default runs in each tenant's later
/// writes: the owner line judges its code once the statement has run.)
///
/// # Safety
/// `stmt` is the statement's AlterDomainStmt.
pub unsafe fn domain(stmt: *mut pg_sys::AlterDomainStmt) {
    // SAFETY: reads the statement; the type lookup does not error (missing_ok).
    let (validates, domain) = unsafe {
        let validates = match (*stmt).subtype as u8 {
            b'C' => {
                let c = (*stmt).def as *mut pg_sys::Constraint;
                !c.is_null() && !(*c).skip_validation
            }
            b'O' | b'V' => true,
            _ => false,
        };
        let domain =
            pg_sys::LookupTypeNameOid(std::ptr::null_mut(), pg_sys::makeTypeNameFromNameList((*stmt).typeName), true);
        (validates, domain)
    };
    if !validates {
        return;
    }
    if let Some(table) = user_code::type_users(domain).into_iter().find_map(guarded) {
        errors::validation_refused("validating a domain constraint", &table.name);
    }
}

/// ALTER TYPE ... ADD/DROP/ALTER/RENAME ATTRIBUTE on a composite type that protected tables are typed by: with
/// CASCADE it rewrites, renames or drops their columns (the tenant column too), and runs casts over every row.
///
/// # Safety
/// `rv` names the composite type (the statement's relation).
pub unsafe fn alter_type(rv: *mut pg_sys::RangeVar) {
    // SAFETY: resolves the type's relation without a lock (typed tables are checked, not the type itself).
    let relid = unsafe {
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as _,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    if relid == pg_sys::InvalidOid {
        return;
    }
    // SAFETY: a syscache lookup of an existing relation.
    let type_oid = unsafe { pg_sys::get_rel_type_id(relid) };
    if let Some(table) = user_code::typed_tables(type_oid).into_iter().find_map(guarded) {
        errors::validation_refused("ALTER TYPE on the type of a typed table", &table.name);
    }
}

/// Raises 42501 if the partition key of `relid` or of one of its ancestors calls code not trusted with every
/// tenant's rows: `what` (ATTACH PARTITION, CREATE TABLE ... PARTITION OF) would run it over existing rows before any
/// check after the statement, and every tenant's routed rows after.
pub fn refuse_untrusted_partition_key(relid: pg_sys::Oid, what: &str) {
    let found = crate::privileged::with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT relid, object, callee::regprocedure::text FROM tenant._untrusted_partition_keys($1) \
                     ORDER BY 2, 3 LIMIT 1",
                    None,
                    &[relid.into()],
                )
                .map(|rows| {
                    rows.into_iter().next().map(|r| {
                        (
                            r.get::<pg_sys::Oid>(1).ok().flatten().unwrap_or(relid),
                            r.get::<String>(2).ok().flatten().unwrap_or_default(),
                            r.get::<String>(3).ok().flatten().unwrap_or_default(),
                        )
                    })
                })
                .unwrap_or_else(|e| errors::internal(format!("tenant_guard could not check a partition key: {e}")))
        })
    });
    if let Some((table, object, function)) = found {
        errors::untrusted_code_refused(
            what,
            &super::display_name(table),
            &format!("{object}, which calls function {function}"),
        );
    }
}

/// Raises 42501 if the table carries code not trusted with every tenant's rows (it is about to be protected, or
/// to receive rows of every tenant, by `what`).
pub fn refuse_untrusted_code_on(relid: pg_sys::Oid, what: &str) {
    if let Some((object, function)) = user_code::untrusted_code_on(relid) {
        let code = match function {
            Some(f) => format!("{object}, which calls function {f}"),
            None => object,
        };
        errors::untrusted_code_refused(what, &super::display_name(relid), &code);
    }
}
