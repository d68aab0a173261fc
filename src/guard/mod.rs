//! The tamper guard: PostgreSQL hooks that refuse what row-level security cannot stop by itself.
//!
//! Who is confined: every role except superusers and members of `tenant_guard_admin` ([`is_admin`]). The rules,
//! one file each, one small function per refused statement:
//! - [`tamper`]: weakening a protected table's protection (RLS off, its policies, its tenant column, TRUNCATE);
//! - [`owner_code`]: code or validation that would run over every tenant's rows (triggers, rules, policies,
//!   validated constraints, expression and unique indexes, retyping, domains, statistics expressions);
//! - [`reach`]: reaching a protected table through another relation (an unprotected parent, an attached or
//!   inheriting table that carries untrusted code, a publication);
//! - [`session`]: state that would outlive a transaction behind a pooler (session-level tokens, temporary tables
//!   that keep rows);
//! - [`executor`]: statements whose output counts or carries other tenants' rows (EXPLAIN, holdable cursors);
//! - [`functions`]: PostgreSQL functions that count other tenants' rows (statistics) or store bytes outside any
//!   table (large objects);
//! - [`planner`]: planner statistics over every tenant's rows, which decide plans a confined role can observe;
//! - [`row_location`]: the `ctid` of protected rows, which counts other tenants' rows on the same page;
//! - [`function_rights`]: code run inside foreign-key actions, or reached by an administrator, keeps only its own
//!   owner's rights.
//!
//! Names are resolved under the statement's own lock and qualified in the statement ([`lookup`]), so the guard
//! decides on the object the statement will alter. tenant_guard's own DDL (protecting a table) is let through.

mod admin_reach;
pub mod executor;
mod function_rights;
pub mod functions;
mod lookup;
mod owner_code;
mod planner;
mod post_check;
mod prepared;
mod reach;
mod row_location;
mod session;
mod tamper;
pub mod user_code;

pub use owner_code::refuse_untrusted_code_on;

use crate::errors;
use crate::labels;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CStr;

/// Members of this role may change protected tables like a superuser.
pub const ADMIN_ROLE: &CStr = c"tenant_guard_admin";

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREV_OBJECT_ACCESS: pg_sys::object_access_hook_type = None;

thread_local! {
    /// Set while a DROP of unprotected tables only runs (see `tamper::drops_only_unprotected_tables`).
    static DROPPING_UNPROTECTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The Citus functions its drop trigger calls for every dropped table.
const CITUS_DROP_FUNCTIONS: [&str; 4] =
    ["citus_drop_all_shards", "master_drop_all_shards", "worker_drop_distributed_table", "worker_drop_shell_table"];

pub fn init() {
    // SAFETY: _PG_init runs once per process before any statement; we chain to whatever hooks were installed before.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        PREV_OBJECT_ACCESS = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(object_access);
    }
    executor::init();
    function_rights::init();
    functions::init();
    planner::init();
    row_location::init();
    session::init();
}

/// PostgreSQL calls this when it sets up a function call (OAT_FUNCTION_EXECUTE) and for each relation TRUNCATE is
/// about to empty (OAT_TRUNCATE), among other events that tenant_guard passes on untouched.
#[pg_guard]
unsafe extern "C-unwind" fn object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: std::ffi::c_int,
    arg: *mut std::ffi::c_void,
) {
    match access {
        pg_sys::ObjectAccessType::OAT_POST_CREATE => {
            session::object_created(class_id, object_id, sub_id);
            if class_id == pg_sys::RelationRelationId && sub_id == 0 {
                crate::citus::relation_created(object_id);
                labels::relation_created(object_id);
            }
        }
        pg_sys::ObjectAccessType::OAT_FUNCTION_EXECUTE => {
            functions::executing(object_id);
            use crate::citus::CitusFunction;
            match crate::citus::classify(object_id) {
                Some(CitusFunction::ChangesShardMetadata) if !is_admin() => errors::citus_metadata_refused(),
                Some(CitusFunction::IntermediateResults) if !is_admin() => crate::citus::ticket::check(),
                Some(CitusFunction::AssignsTransactionId) => crate::citus::calls::transaction_id_assigned(),
                Some(CitusFunction::ExplainsTasks) if !is_admin() => {
                    // SAFETY: a syscache lookup of the function being called; NULL or a NUL-terminated name.
                    errors::citus_explain_refused(&unsafe { cstr(pg_sys::get_func_name(object_id)) })
                }
                Some(CitusFunction::RewritesShards) if !is_admin() && crate::citus::has_protected_tables() => {
                    // SAFETY: a syscache lookup of the function being called; NULL or a NUL-terminated name.
                    let name = unsafe { cstr(pg_sys::get_func_name(object_id)) };
                    // dropping unprotected tables is not for administrators only
                    if !(DROPPING_UNPROTECTED.get() && CITUS_DROP_FUNCTIONS.contains(&name.as_str())) {
                        errors::citus_shard_rewrite_refused(&name)
                    }
                }
                Some(CitusFunction::ConvertsTables) => {
                    // (in this order: what prepare_for_citus runs ends like a statement, and would end the
                    // conversion)
                    labels::prepare_for_citus();
                    if is_admin() {
                        crate::citus::set_converting(true);
                    }
                }
                _ => {}
            }
        }
        pg_sys::ObjectAccessType::OAT_TRUNCATE => tamper::truncated(object_id),
        pg_sys::ObjectAccessType::OAT_DROP if class_id == pg_sys::RelationRelationId && sub_id == 0 => {
            tamper::shard_dropped(object_id)
        }
        _ => {}
    }
    // SAFETY: passes the arguments on unchanged to the previous hook.
    unsafe {
        if let Some(prev) = PREV_OBJECT_ACCESS {
            pg_sys::ffi::pg_guard_ffi_boundary(|| prev(access, class_id, object_id, sub_id, arg));
        }
    }
}

/// Whether the current user is a superuser or has the privileges of `tenant_guard_admin`.
///
/// False outside a running transaction (an aborted block's ROLLBACK): the catalog may not be read there (PostgreSQL
/// 17 refuses the resource owner a released transaction keeps), and false is the confining answer.
pub fn is_admin() -> bool {
    // SAFETY: IsTransactionState reads the transaction state; the rest are plain catalog lookups for the current
    // user, inside a running transaction.
    unsafe { pg_sys::IsTransactionState() && (pg_sys::superuser() || has_privs_of(ADMIN_ROLE)) }
}

/// Whether the current user has the privileges of the named role (false when it does not exist).
pub fn has_privs_of(role: &CStr) -> bool {
    // SAFETY: catalog lookups by name and oid; missing_ok.
    unsafe {
        let oid = pg_sys::get_role_oid(role.as_ptr(), true);
        oid != pg_sys::InvalidOid && pg_sys::has_privs_of_role(pg_sys::GetUserId(), oid)
    }
}

/// What the guard decided for a statement.
#[derive(PartialEq, Eq)]
pub enum Verdict {
    Run,
    /// Skip it silently (a managed policy a restore re-creates).
    Skip,
    /// Run it, then check that the policy it created is exactly tenant_guard's (Citus creating a managed policy on
    /// a shard as the table's owner).
    VerifyManagedPolicy(pg_sys::Oid, String),
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let mut pstmt = pstmt;
    let mut read_only_tree = read_only_tree;
    if context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL {
        // SAFETY: the statement's source text, NUL-terminated.
        unsafe { crate::redaction::report_activity(query_string) };
    }
    // SAFETY: query_string is the statement's NUL-terminated text.
    unsafe { prepared_statement_of(query_string) };
    // SAFETY: reads the node tag only.
    if unsafe { (*pstmt).utilityStmt.as_ref() }.is_some_and(|n| n.type_ == pg_sys::NodeTag::T_VariableSetStmt)
        && function_rights::owner_code_for_administrator()
    {
        errors::setting_in_owner_code("SET");
    }
    // SAFETY: reads the node tag only.
    let reads_session = match unsafe { (*pstmt).utilityStmt.as_ref() }.map(|n| n.type_) {
        Some(pg_sys::NodeTag::T_VariableShowStmt) => Some("SHOW"),
        // EXPLAIN (SETTINGS) shows the settings the session changed
        Some(pg_sys::NodeTag::T_ExplainStmt) => Some("EXPLAIN"),
        _ => None,
    };
    if let Some(what) = reads_session.filter(|_| function_rights::owner_code_for_administrator()) {
        errors::session_read_in_owner_code(what);
    }
    // nor close the administrator's cursors (FETCH and MOVE are refused when they run: see function_rights)
    // SAFETY: reads the node tag only.
    if unsafe { (*pstmt).utilityStmt.as_ref() }.is_some_and(|n| n.type_ == pg_sys::NodeTag::T_ClosePortalStmt)
        && function_rights::owner_code_for_administrator()
    {
        errors::session_read_in_owner_code("CLOSE");
    }
    // ALTER TABLE checks the relation's constraints and computes values when it changes a column's type, validates,
    // adds or attaches, and ALTER DOMAIN checks every stored value, with the rights of whoever runs it, without a plan
    // SAFETY: reads the statement's node: an AlterTableStmt's relation is a RangeVar, an AlterDomainStmt's typeName
    // a list of names.
    unsafe {
        let node = (*pstmt).utilityStmt;
        // what PostgreSQL runs on behalf of a statement (a partition's ALTER TABLE steps) and tenant_guard's own DDL
        // evaluate nothing the statement did not
        let own = context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_SUBCOMMAND || labels::in_internal_ddl();
        if !own && !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_AlterTableStmt && !is_admin() {
            // an administrator's partition keeps the defaults and checks it inherited: detached by the table's
            // owner, it would carry that owner's code as an administrator's table
            let alter = node as *mut pg_sys::AlterTableStmt;
            for cmd in pgrx::PgList::<pg_sys::AlterTableCmd>::from_pg((*alter).cmds).iter_ptr() {
                if matches!(
                    (*cmd).subtype,
                    pg_sys::AlterTableType::AT_DetachPartition | pg_sys::AlterTableType::AT_DetachPartitionFinalize
                ) && !(*cmd).def.is_null()
                {
                    // no lock: the caller is not trusted, and may not queue one on a table it may not touch
                    let relid = lookup::resolve((*((*cmd).def as *mut pg_sys::PartitionCmd)).name, pg_sys::NoLock as _);
                    if relid != pg_sys::InvalidOid && admin_reach::owned_by_administrator(relid) {
                        errors::detach_administrators_partition(&display_name(relid));
                    }
                }
            }
        }
        if !own && !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_AlterTableStmt {
            let alter = node as *mut pg_sys::AlterTableStmt;
            // the subcommands that compute or check values (dropping a constraint or changing the owner, an
            // administrator's ways out, do not)
            let evaluates = pgrx::PgList::<pg_sys::AlterTableCmd>::from_pg((*alter).cmds).iter_ptr().any(|cmd| {
                matches!(
                    (*cmd).subtype,
                    pg_sys::AlterTableType::AT_AlterColumnType
                        | pg_sys::AlterTableType::AT_ValidateConstraint
                        | pg_sys::AlterTableType::AT_AddColumn
                        | pg_sys::AlterTableType::AT_AddConstraint
                        | pg_sys::AlterTableType::AT_AttachPartition
                )
            });
            if evaluates && is_admin() {
                let relid = lookup::resolve((*alter).relation, pg_sys::AlterTableGetLockLevel((*alter).cmds));
                if relid != pg_sys::InvalidOid {
                    admin_reach::check_written(relid);
                }
            }
        } else if !own && !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_AlterDomainStmt {
            let alter = node as *mut pg_sys::AlterDomainStmt;
            let name = pg_sys::makeTypeNameFromNameList((*alter).typeName);
            let typid = pg_sys::LookupTypeNameOid(std::ptr::null_mut(), name, true);
            if typid != pg_sys::InvalidOid {
                admin_reach::check_type(typid);
            }
        }
    }
    // COPY FROM computes the relation's defaults and checks without a plan
    // SAFETY: reads the statement's node; a CopyStmt's relation is a RangeVar or NULL.
    unsafe {
        let node = (*pstmt).utilityStmt;
        if !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_CopyStmt {
            let copy = node as *mut pg_sys::CopyStmt;
            if (*copy).is_from && is_admin() {
                let relid = lookup::resolve((*copy).relation, pg_sys::RowExclusiveLock as _);
                if relid != pg_sys::InvalidOid {
                    admin_reach::check_written(relid);
                }
            }
        }
    }
    let internal = labels::in_internal_ddl();
    let _session = session::StatementScope::enter();
    let verdict = if internal {
        // SAFETY: pstmt is the statement PostgreSQL is about to run; the tree is copied before it is changed.
        unsafe { citus_managed_policy(&mut pstmt, &mut read_only_tree) }.unwrap_or(Verdict::Run)
    } else {
        // SAFETY: pstmt is the statement PostgreSQL is about to run; `check` copies it before changing it.
        unsafe { check(&mut pstmt, &mut read_only_tree, context) }
    };
    if verdict == Verdict::Skip {
        return;
    }
    // SAFETY: reads the node tag only.
    let node = unsafe { (*pstmt).utilityStmt };
    // SAFETY: a non-NULL utility statement is a Node; only its tag is read.
    let tag = if node.is_null() { pg_sys::NodeTag::T_Invalid } else { unsafe { (*node).type_ } };
    let is_seclabel = tag == pg_sys::NodeTag::T_SecLabelStmt;
    // the owner line, checked on the catalog once the statement has run; a statement PostgreSQL runs on behalf of
    // another (a schema element, the ALTER TABLE that adds a new table's foreign keys) is checked as part of it
    let owner_line = !internal
        && context != pg_sys::ProcessUtilityContext::PROCESS_UTILITY_SUBCOMMAND
        && post_check::may_write_catalog(tag)
        && !is_admin()
        && functions::installed_here();
    // SAFETY: CreateCommandName reads the node tag and returns a static string.
    let what = if owner_line { unsafe { cstr(pg_sys::CreateCommandName(node)) } } else { String::new() };
    // SAFETY: node is the statement's parse tree (or NULL).
    let _mark = unsafe { executor::watch(node) };
    if tag == pg_sys::NodeTag::T_CopyStmt && crate::citus::installed() {
        // Citus runs COPY on the shards' nodes itself, without a plan: they need the token too
        crate::citus::context::forward();
    }
    struct Dropping(bool);
    impl Drop for Dropping {
        fn drop(&mut self) {
            DROPPING_UNPROTECTED.set(self.0);
        }
    }
    let _dropping = Dropping(DROPPING_UNPROTECTED.get());
    if tag == pg_sys::NodeTag::T_DropStmt && crate::citus::installed() {
        // SAFETY: the node is the statement's DropStmt.
        DROPPING_UNPROTECTED.set(unsafe { tamper::drops_only_unprotected_tables(node as *mut pg_sys::DropStmt) });
    }
    // SAFETY: passes the (possibly qualified) statement on, to the previous hook or the standard implementation.
    unsafe {
        match PREV_PROCESS_UTILITY {
            // through pgrx's FFI boundary, so that an ERROR unwinds our frames (and drops the watch mark)
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| {
                prev(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc)
            }),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    }
    if let Verdict::VerifyManagedPolicy(relid, name) = &verdict {
        // SAFETY: makes the policy just created visible to the check.
        unsafe { pg_sys::CommandCounterIncrement() };
        tamper::verify_managed_policy(*relid, name);
    }
    if tag == pg_sys::NodeTag::T_CreatePolicyStmt && crate::citus::installed() {
        // SAFETY: the node is the CreatePolicyStmt that has just run.
        if let Some(relid) = unsafe { tamper::isolation_policy_target(node as *mut pg_sys::CreatePolicyStmt) } {
            // SAFETY: makes the policy just created visible to the lookup.
            unsafe { pg_sys::CommandCounterIncrement() };
            crate::citus::label_policed_shard(relid);
        }
    }
    if is_seclabel {
        // the labelled table is closed again: apply what the label hook decided
        labels::flush_actions();
    }
    if !internal && context != pg_sys::ProcessUtilityContext::PROCESS_UTILITY_SUBCOMMAND {
        // tables the statement created, whatever statement it was, are protected like their schema or parent, and
        // so are the tables an ALTER TABLE attached (ATTACH PARTITION, INHERIT)
        labels::label_created_relations();
        if tag == pg_sys::NodeTag::T_AlterTableStmt {
            // SAFETY: the node is the AlterTableStmt that has just run.
            let altered = unsafe { altered_tables(node as *mut pg_sys::AlterTableStmt) };
            altered.iter().for_each(|relid| crate::citus::label_altered_shard(*relid));
            labels::tables_altered(&altered);
        }
        if tag == pg_sys::NodeTag::T_AlterObjectSchemaStmt {
            // a table moved into a tenant_scoped schema is protected like one created there
            // SAFETY: the node is the AlterObjectSchemaStmt that has just run.
            if let Some(relid) = unsafe { moved_table(node as *mut pg_sys::AlterObjectSchemaStmt) } {
                labels::tables_altered(&[relid]);
            }
        }
    }
    if owner_line {
        post_check::verify(&what);
    }
    // a domain's code is judged when it is written (see `admin_reach::check_new_domain`)
    if tag == pg_sys::NodeTag::T_CreateDomainStmt || tag == pg_sys::NodeTag::T_AlterDomainStmt {
        // SAFETY: the node is the statement's CreateDomainStmt or AlterDomainStmt; both name the domain with a list.
        let (names, statement) = unsafe {
            if tag == pg_sys::NodeTag::T_CreateDomainStmt {
                ((*(node as *mut pg_sys::CreateDomainStmt)).domainname, "CREATE DOMAIN")
            } else {
                ((*(node as *mut pg_sys::AlterDomainStmt)).typeName, "ALTER DOMAIN")
            }
        };
        // the domain the statement made or altered, found the way PostgreSQL found it (a new one in its creation
        // schema: a search by name could find a temporary lookalike first)
        // SAFETY: a list of names; the lookups are missing_ok or return InvalidOid.
        let typid = unsafe {
            if tag == pg_sys::NodeTag::T_CreateDomainStmt {
                let mut name: *mut std::ffi::c_char = std::ptr::null_mut();
                let schema = pg_sys::QualifiedNameGetCreationNamespace(names, &mut name);
                pg_sys::GetSysCacheOid(
                    pg_sys::SysCacheIdentifier::TYPENAMENSP as _,
                    pg_sys::Anum_pg_type_oid as _,
                    pg_sys::Datum::from(name),
                    pg_sys::Datum::from(schema),
                    pg_sys::Datum::from(0),
                    pg_sys::Datum::from(0),
                )
            } else {
                pg_sys::LookupTypeNameOid(std::ptr::null_mut(), pg_sys::makeTypeNameFromNameList(names), true)
            }
        };
        if typid != pg_sys::InvalidOid {
            admin_reach::check_new_domain(statement, typid);
        }
    }
}

/// One of tenant_guard's policies created on a Citus table or shard, whoever runs it (tenant_guard's own DDL
/// included: Citus creates the coordinator's shards inside it): `tenant_isolation` is made restrictive, which Citus
/// forgets when it copies a policy; a table owner's (Citus on a worker, creating shards) is checked once created.
///
/// # Safety
/// `pstmt` points to the statement's PlannedStmt, whose utility statement is a CreatePolicyStmt or another node.
unsafe fn citus_managed_policy(pstmt: &mut *mut pg_sys::PlannedStmt, read_only_tree: &mut bool) -> Option<Verdict> {
    // SAFETY: as the caller promises; the tree is copied before it is changed.
    unsafe {
        let node = (**pstmt).utilityStmt;
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_CreatePolicyStmt || !crate::citus::installed() {
            return None;
        }
        let stmt = node as *mut pg_sys::CreatePolicyStmt;
        let tamper::CitusPolicy::Managed { relid, protected } = tamper::citus_policy(stmt) else { return None };
        let name = cstr((*stmt).policy_name);
        if name == labels::ISOLATION_POLICY {
            if *read_only_tree {
                // SAFETY: copyObject of a valid node tree, in the current (statement) memory context.
                *pstmt = pg_sys::copyObjectImpl(*pstmt as *const std::ffi::c_void) as *mut pg_sys::PlannedStmt;
                *read_only_tree = false;
            }
            (*((**pstmt).utilityStmt as *mut pg_sys::CreatePolicyStmt)).permissive = false;
        }
        (protected && !labels::in_internal_ddl() && !is_admin()).then_some(Verdict::VerifyManagedPolicy(relid, name))
    }
}

/// Checks one utility statement before it runs. Raises 42501 when a rule refuses it.
///
/// # Safety
/// `pstmt` is the PlannedStmt PostgreSQL passed to the hook; when a rule needs to qualify names in it and the tree
/// is read-only, it is replaced by a copy (and `read_only_tree` cleared).
unsafe fn check(
    pstmt: &mut *mut pg_sys::PlannedStmt,
    read_only_tree: &mut bool,
    context: pg_sys::ProcessUtilityContext::Type,
) -> Verdict {
    // SAFETY: reads the node tag only.
    let tag = unsafe {
        let node = (**pstmt).utilityStmt;
        if node.is_null() {
            return Verdict::Run;
        }
        (*node).type_
    };
    // rules for every role
    // SAFETY: each call casts the node to the type its tag names.
    unsafe {
        let node = (**pstmt).utilityStmt;
        // a statement PostgreSQL runs on behalf of another (the sequence of a serial column) was checked as part of
        // it, and what it leaves in the temporary schema is checked at COMMIT
        if context != pg_sys::ProcessUtilityContext::PROCESS_UTILITY_SUBCOMMAND {
            session::check(node);
        }
        prepared::executing(node);
        prepared::preparing(node);
        if tag == pg_sys::NodeTag::T_CreatePolicyStmt
            && tamper::managed_policy_exists(node as *mut pg_sys::CreatePolicyStmt)
        {
            return Verdict::Skip;
        }
        if tag == pg_sys::NodeTag::T_CopyStmt {
            tamper::copy_from(node as *mut pg_sys::CopyStmt);
            // Citus serves and stores intermediate results through COPY ... (format result) too
            if !is_admin() && tamper::copies_intermediate_results(node as *mut pg_sys::CopyStmt) {
                crate::citus::ticket::check();
            }
        }
        if tag == pg_sys::NodeTag::T_VacuumStmt && !is_admin() {
            tamper::vacuum_reports(node as *mut pg_sys::VacuumStmt);
        }
        if let Some(verdict) = citus_managed_policy(pstmt, read_only_tree) {
            return verdict;
        }
    }
    if !is_guarded(tag) || is_admin() {
        return Verdict::Run;
    }
    // rules for confined roles: they may qualify names in the statement, so give them a tree of their own
    if *read_only_tree {
        // SAFETY: copyObject of a valid node tree, in the current (statement) memory context.
        *pstmt = unsafe { pg_sys::copyObjectImpl(*pstmt as *const std::ffi::c_void) as *mut pg_sys::PlannedStmt };
        *read_only_tree = false;
    }
    // SAFETY: each call casts the node to the type its tag names; the tree is writable.
    unsafe {
        let node = (**pstmt).utilityStmt;
        match tag {
            pg_sys::NodeTag::T_AlterTableStmt => {
                let stmt = node as *mut pg_sys::AlterTableStmt;
                if (*stmt).objtype == pg_sys::ObjectType::OBJECT_TYPE {
                    owner_code::alter_type((*stmt).relation);
                    return Verdict::Run;
                }
                let lockmode = pg_sys::AlterTableGetLockLevel((*stmt).cmds) as u32;
                let relid = lookup::pin((*stmt).relation, lockmode);
                if let Some(table) = reached_protected(relid, (*stmt).relation) {
                    tamper::alter_table(&table, stmt);
                    // a shard Citus is building in this transaction holds no other transaction's rows: its keys
                    // and constraints (the table's, which the coordinator judged) validate nothing of anyone else's
                    if !crate::citus::is_new_shard(table.relid) {
                        owner_code::alter_table(&table, stmt);
                    }
                }
                reach::alter_table(relid, stmt);
                owner_code::attach_partition(stmt);
            }
            pg_sys::NodeTag::T_RenameStmt => {
                let stmt = node as *mut pg_sys::RenameStmt;
                if (*stmt).renameType == pg_sys::ObjectType::OBJECT_ATTRIBUTE {
                    owner_code::alter_type((*stmt).relation);
                } else {
                    tamper::rename(stmt);
                }
            }
            pg_sys::NodeTag::T_AlterObjectSchemaStmt => {
                let stmt = node as *mut pg_sys::AlterObjectSchemaStmt;
                if (*stmt).objectType == pg_sys::ObjectType::OBJECT_TABLE && !(*stmt).relation.is_null() {
                    let relid = lookup::pin((*stmt).relation, pg_sys::AccessExclusiveLock);
                    tamper::refuse_moving_a_shard(relid, "moving a shard to another schema");
                }
            }
            pg_sys::NodeTag::T_CreateStmt => reach::create_table(node as *mut pg_sys::CreateStmt),
            pg_sys::NodeTag::T_CreatePolicyStmt => tamper::create_policy(node as *mut pg_sys::CreatePolicyStmt),
            pg_sys::NodeTag::T_AlterPolicyStmt => tamper::alter_policy(node as *mut pg_sys::AlterPolicyStmt),
            pg_sys::NodeTag::T_DropStmt => {
                tamper::drop_policy(node as *mut pg_sys::DropStmt);
                tamper::drop_shard(node as *mut pg_sys::DropStmt);
            }
            pg_sys::NodeTag::T_RuleStmt => owner_code::rule(node as *mut pg_sys::RuleStmt),
            pg_sys::NodeTag::T_IndexStmt => owner_code::index(node as *mut pg_sys::IndexStmt),
            pg_sys::NodeTag::T_CreateStatsStmt => owner_code::statistics(node as *mut pg_sys::CreateStatsStmt),
            pg_sys::NodeTag::T_AlterDomainStmt => owner_code::domain(node as *mut pg_sys::AlterDomainStmt),
            pg_sys::NodeTag::T_CreatePublicationStmt => {
                reach::publication((*(node as *mut pg_sys::CreatePublicationStmt)).pubobjects)
            }
            pg_sys::NodeTag::T_AlterPublicationStmt => {
                let stmt = node as *mut pg_sys::AlterPublicationStmt;
                if (*stmt).action != pg_sys::AlterPublicationAction::AP_DropObjects {
                    reach::publication((*stmt).pubobjects);
                }
            }
            _ => {}
        }
    }
    Verdict::Run
}

/// The protected relation an ALTER TABLE reaches: the one it names, or (without ONLY) the first protected partition
/// or child below it, whose rows it validates and rewrites too.
///
/// # Safety
/// `rv` is the statement's RangeVar (already pinned to `relid`).
unsafe fn reached_protected(relid: pg_sys::Oid, rv: *mut pg_sys::RangeVar) -> Option<Guarded> {
    if let Some(table) = guarded(relid) {
        return Some(table);
    }
    // SAFETY: as the caller promises.
    if relid == pg_sys::InvalidOid || !unsafe { (*rv).inh } {
        return None;
    }
    user_code::descendants(relid).into_iter().find_map(guarded)
}

/// When a portal runs a query or utility statement of a prepared statement (the extended protocol's Bind and
/// Execute, or a FETCH from the portal), checks that statement (see `prepared`). Queries nested in functions have
/// their own text and are not the portal's; a portal with a cached plan but no statement name runs the unnamed
/// statement if its text is the unnamed statement's.
///
/// # Safety
/// `text` is the NUL-terminated text of the query about to run.
unsafe fn prepared_statement_of(text: *const std::ffi::c_char) {
    // SAFETY: ActivePortal is NULL or the portal being run.
    unsafe {
        let portal = pg_sys::ActivePortal;
        if portal.is_null() || (*portal).sourceText != text {
            return;
        }
        if !(*portal).prepStmtName.is_null() {
            prepared::running((*portal).prepStmtName);
        } else if !(*portal).cplan.is_null() {
            prepared::running_unnamed(text);
        }
    }
}

/// Called when a statement has been parsed, by any protocol message (see `prepared`).
///
/// # Safety
/// `text` is NULL or the NUL-terminated text being parsed.
pub unsafe fn statement_parsed(text: *const std::ffi::c_char) {
    // SAFETY: as the caller promises.
    unsafe { prepared::parsed(text) };
}

/// A statement just parse-analyzed, before it is rewritten or planned (see `admin_reach`).
///
/// # Safety
/// `query` is NULL or a parse-analyzed Query.
pub unsafe fn query_analyzed(query: *mut pg_sys::Query) {
    // SAFETY: as the caller promises.
    unsafe { admin_reach::check_query(query) };
}

/// The statement a parse-analyzed wrapper runs: EXPLAIN and CREATE TABLE AS hold their statement as a Query, whose
/// utility statement (CREATE TABLE AS, EXECUTE) is the one that runs; other nodes are returned as they are.
///
/// # Safety
/// `node` is NULL or a node of a parse tree.
unsafe fn utility_of(node: *mut pg_sys::Node) -> *mut pg_sys::Node {
    // SAFETY: as the caller promises; a Query node's utilityStmt is NULL or a node.
    unsafe {
        if !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_Query {
            let query = node as *mut pg_sys::Query;
            if (*query).commandType == pg_sys::CmdType::CMD_UTILITY {
                return (*query).utilityStmt;
            }
        }
        node
    }
}

/// The table an `ALTER TABLE ... SET SCHEMA` that has run moved, under its new schema.
///
/// # Safety
/// `stmt` is the AlterObjectSchemaStmt that has just run.
unsafe fn moved_table(stmt: *mut pg_sys::AlterObjectSchemaStmt) -> Option<pg_sys::Oid> {
    // SAFETY: as the caller promises; the table is looked up under its new schema (made visible first), without a
    // lock, missing_ok.
    unsafe {
        if (*stmt).objectType != pg_sys::ObjectType::OBJECT_TABLE || (*stmt).relation.is_null() {
            return None;
        }
        pg_sys::CommandCounterIncrement();
        let moved = pg_sys::makeRangeVar((*stmt).newschema, (*(*stmt).relation).relname, -1);
        let relid = pg_sys::RangeVarGetRelidExtended(
            moved,
            pg_sys::NoLock as _,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        (relid != pg_sys::InvalidOid).then_some(relid)
    }
}

/// The tables an ALTER TABLE that has run reached: the one it names and the partitions it attached.
///
/// # Safety
/// `stmt` is the statement's AlterTableStmt.
unsafe fn altered_tables(stmt: *mut pg_sys::AlterTableStmt) -> Vec<pg_sys::Oid> {
    let resolve = |rv: *mut pg_sys::RangeVar| {
        if rv.is_null() {
            return pg_sys::InvalidOid;
        }
        // SAFETY: a lookup of a relation the statement has just reached, without a lock, missing_ok.
        unsafe {
            pg_sys::RangeVarGetRelidExtended(
                rv,
                pg_sys::NoLock as _,
                pg_sys::RVROption::RVR_MISSING_OK,
                None,
                std::ptr::null_mut(),
            )
        }
    };
    // SAFETY: as the caller promises; the subcommands are AlterTableCmd nodes, an ATTACH's def a PartitionCmd.
    unsafe {
        if (*stmt).objtype != pg_sys::ObjectType::OBJECT_TABLE {
            return Vec::new();
        }
        let mut relids = vec![resolve((*stmt).relation)];
        for cmd in pgrx::PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() {
            if (*cmd).subtype == pg_sys::AlterTableType::AT_AttachPartition && !(*cmd).def.is_null() {
                relids.push(resolve((*((*cmd).def as *mut pg_sys::PartitionCmd)).name));
            }
        }
        relids.retain(|r| *r != pg_sys::InvalidOid);
        relids
    }
}

/// Statements with rules for confined roles (the others skip the admin check).
fn is_guarded(tag: pg_sys::NodeTag) -> bool {
    matches!(
        tag,
        pg_sys::NodeTag::T_AlterTableStmt
            | pg_sys::NodeTag::T_RenameStmt
            | pg_sys::NodeTag::T_CreatePolicyStmt
            | pg_sys::NodeTag::T_AlterPolicyStmt
            | pg_sys::NodeTag::T_DropStmt
            | pg_sys::NodeTag::T_RuleStmt
            | pg_sys::NodeTag::T_IndexStmt
            | pg_sys::NodeTag::T_CreateStatsStmt
            | pg_sys::NodeTag::T_AlterDomainStmt
            | pg_sys::NodeTag::T_CreatePublicationStmt
            | pg_sys::NodeTag::T_AlterPublicationStmt
            | pg_sys::NodeTag::T_CreateStmt
            | pg_sys::NodeTag::T_AlterObjectSchemaStmt
    )
}

/// A protected table a statement names, resolved under the statement's lock.
pub struct Guarded {
    pub relid: pg_sys::Oid,
    pub column: String,
    pub name: String,
}

/// `relid` if it is protected.
fn guarded(relid: pg_sys::Oid) -> Option<Guarded> {
    let column = labels::protected_column(relid)?;
    Some(Guarded { relid, column, name: display_name(relid) })
}

pub fn display_name(relid: pg_sys::Oid) -> String {
    labels::qualified_name(relid).unwrap_or_else(|| "?".into())
}

/// A C string of a parse tree or the catalog as a Rust string (empty for NULL).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
pub unsafe fn cstr(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: as the caller promises.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}
