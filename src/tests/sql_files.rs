//! The SQL files against the Rust that owns each fact they spell: the wrapped-key layout, the issuer length, the
//! policy names, the label provider and the administrators' role. Also what the install script promises about its
//! own objects: a COMMENT on each, and raised rights only where the catalog shows them (SECURITY DEFINER with a
//! pinned search_path).

/// Plain tests of the SQL files' text.
#[cfg(test)]
mod files {
    /// Every SQL file of the extension, by name.
    const SQL_FILES: [(&str, &str); 29] = [
        ("admin_role.sql", include_str!("../../sql/admin_role.sql")),
        ("placement.sql", include_str!("../../sql/placement.sql")),
        ("tenant_stats.sql", include_str!("../../sql/tenant_stats.sql")),
        ("transfer.sql", include_str!("../../sql/transfer.sql")),
        ("audit.sql", include_str!("../../sql/audit.sql")),
        ("bootstrap.sql", include_str!("../../sql/bootstrap.sql")),
        ("citus.sql", include_str!("../../sql/citus.sql")),
        ("discovery.sql", include_str!("../../sql/discovery.sql")),
        ("encryption.sql", include_str!("../../sql/encryption.sql")),
        ("finalize.sql", include_str!("../../sql/finalize.sql")),
        ("invalidation.sql", include_str!("../../sql/invalidation.sql")),
        ("issuers.sql", include_str!("../../sql/issuers.sql")),
        ("keys.sql", include_str!("../../sql/keys.sql")),
        ("labels.sql", include_str!("../../sql/labels.sql")),
        ("requirements.sql", include_str!("../../sql/requirements.sql")),
        ("revocations.sql", include_str!("../../sql/revocations.sql")),
        ("shared_verifications.sql", include_str!("../../sql/shared_verifications.sql")),
        ("trusted_code.sql", include_str!("../../sql/trusted_code.sql")),
        ("queries/admin_reach_calls.sql", include_str!("../../sql/queries/admin_reach_calls.sql")),
        ("queries/admin_reach_relation.sql", include_str!("../../sql/queries/admin_reach_relation.sql")),
        ("queries/issuer_state.sql", include_str!("../../sql/queries/issuer_state.sql")),
        ("queries/key_rows.sql", include_str!("../../sql/queries/key_rows.sql")),
        ("queries/managed_policy_intact.sql", include_str!("../../sql/queries/managed_policy_intact.sql")),
        ("queries/owner_line.sql", include_str!("../../sql/queries/owner_line.sql")),
        ("queries/policy_tenant_column.sql", include_str!("../../sql/queries/policy_tenant_column.sql")),
        ("queries/protected_local_tables.sql", include_str!("../../sql/queries/protected_local_tables.sql")),
        ("queries/schema_tables.sql", include_str!("../../sql/queries/schema_tables.sql")),
        ("queries/temp_leftovers.sql", include_str!("../../sql/queries/temp_leftovers.sql")),
        ("queries/type_users.sql", include_str!("../../sql/queries/type_users.sql")),
    ];

    /// The string literals that follow each occurrence of `before` in the SQL files, with where they were found.
    fn literals_after(before: &str) -> Vec<(String, &'static str)> {
        let mut found = Vec::new();
        for (file, text) in SQL_FILES {
            for (at, _) in text.match_indices(before) {
                let rest = &text[at + before.len()..];
                let literal = rest.split('\'').next().unwrap_or_default();
                found.push((literal.to_owned(), file));
            }
        }
        found
    }

    #[test]
    fn the_sql_files_spell_the_names_rust_owns() {
        let provider = crate::labels::PROVIDER.to_str().unwrap();
        let admin = crate::guard::ADMIN_ROLE.to_str().unwrap();
        let policies = [crate::labels::ISOLATION_POLICY, crate::labels::ACCESS_POLICY];
        let checks: [(&str, &[&str]); 4] = [
            ("provider = '", &[provider]),
            ("rolname = '", &[admin]),
            ("polname = '", &policies),
            ("polname NOT IN ('", &policies),
        ];
        for (before, allowed) in checks {
            let found = literals_after(before);
            assert!(!found.is_empty(), "no {before:?} in the SQL files");
            for (literal, file) in found {
                assert!(allowed.contains(&literal.as_str()), "{file}: {before}{literal}' is not one of {allowed:?}");
            }
        }
        for (file, text) in SQL_FILES {
            for (at, _) in text.match_indices("pg_has_role(") {
                let call = &text[at..at + text[at..].find(')').unwrap()];
                if let Some(role) = call.split('\'').nth(1) {
                    // the administrators' role, or one of PostgreSQL's predefined roles
                    // (a quoted privilege such as 'MEMBER' or 'USAGE' is not a role)
                    let privilege = role.chars().all(|c| c.is_ascii_uppercase() || c == ',' || c == ' ');
                    assert!(role == admin || role.starts_with("pg_") || privilege, "{file}: {call}");
                }
            }
        }
    }

    #[test]
    fn the_sql_files_spell_the_formats_rust_owns() {
        use crate::ciphertext::{KEK_ID_SQL, WRAPPED_LEN};
        let keys = SQL_FILES.iter().find(|(f, _)| *f == "keys.sql").unwrap().1;
        assert!(keys.contains(&format!("octet_length(wrapped) = {WRAPPED_LEN})")), "keys.sql: wrapped key length");
        assert!(keys.contains(KEK_ID_SQL), "keys.sql: KEK id");
        let issuers = SQL_FILES.iter().find(|(f, _)| *f == "issuers.sql").unwrap().1;
        let max = crate::issuers::MAX_ISSUER_BYTES;
        assert!(issuers.contains(&format!("BETWEEN 1 AND {max})")), "issuers.sql: issuer length");
    }

    #[test]
    fn every_sql_file_is_installed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let mut on_disk: Vec<String> = Vec::new();
        for sub in ["", "queries"] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if name.ends_with(".sql") && !name.starts_with("tenant_guard--") {
                    on_disk.push(if sub.is_empty() { name } else { format!("{sub}/{name}") });
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = SQL_FILES.iter().map(|(f, _)| f.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }
}

#[pgrx::pg_schema]
mod tests {
    use crate::tests::support::*;

    #[pg_test]
    fn the_catalog_oids_rust_spells_out_are_postgresqls() {
        let oid = crate::pg_version::STATISTIC_EXT_RELATION_ID.to_u32() as i64;
        assert_eq!(one::<i64>("SELECT 'pg_catalog.pg_statistic_ext'::regclass::oid::bigint"), Some(oid));
    }

    #[pg_test]
    fn the_installed_catalog_agrees_with_rust() {
        use crate::ciphertext::{KEK_ID_SQL, WRAPPED_LEN};
        assert_eq!(
            one::<String>(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'tenant.data_key'::regclass \
                 AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%wrapped)%'"
            ),
            Some(format!("CHECK ((octet_length(wrapped) = {WRAPPED_LEN}))"))
        );
        let view = one::<String>("SELECT pg_get_viewdef('tenant.keys'::regclass)").unwrap();
        // the view's definition as PostgreSQL deparses it: columns qualified by the table name up to 16, not from 17
        let qualified = KEK_ID_SQL.replace("wrapped", "data_key.wrapped");
        assert!(
            [KEK_ID_SQL, qualified.as_str()]
                .iter()
                .any(|k| view.contains(&format!("encode({k}, 'hex'::text) AS kek_id"))),
            "{view}"
        );
        let max = crate::issuers::MAX_ISSUER_BYTES;
        assert_eq!(
            one::<String>(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'tenant.trusted_issuer'::regclass \
                 AND contype = 'c'"
            ),
            Some(format!("CHECK (((octet_length(issuer) >= 1) AND (octet_length(issuer) <= {max})))"))
        );
        let admin = crate::guard::ADMIN_ROLE.to_str().unwrap();
        assert_eq!(one::<bool>(&format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = '{admin}'")), Some(false));
    }

    #[pg_test]
    fn every_object_of_the_extension_has_a_comment() {
        let missing = one::<String>(
            "SELECT string_agg(pg_describe_object(d.classid, d.objid, 0), ', ' ORDER BY 1) \
               FROM pg_depend d \
              WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' \
                AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tenant_guard') \
                AND d.classid IN ('pg_proc'::regclass, 'pg_class'::regclass, 'pg_namespace'::regclass) \
                AND obj_description(d.objid, d.classid::regclass::name) IS NULL \
                AND pg_describe_object(d.classid, d.objid, 0) !~ '^(schema tests|function tests[.])' \
                AND NOT (d.classid = 'pg_class'::regclass \
                         AND (SELECT relkind FROM pg_class WHERE oid = d.objid) IN ('i', 'S', 't'))",
        );
        assert_eq!(missing, None);
        assert!(one::<String>(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles \
                               WHERE rolname = 'tenant_guard_admin'"
        )
        .is_some());
    }

    #[pg_test]
    fn raised_rights_are_visible_in_the_catalog() {
        // Every function that runs with its owner's rights is SECURITY DEFINER with a pinned search_path, and
        // no function PUBLIC may run is.
        assert_eq!(
            one::<String>(
                "SELECT string_agg(p.oid::regprocedure::text || coalesce(' ' || array_to_string(p.proconfig, ','), ''), \
                 '; ' ORDER BY p.oid::regprocedure::text) FROM pg_proc p WHERE p.pronamespace = 'tenant'::regnamespace AND p.prosecdef"
            )
            .as_deref(),
            Some(
                "tenant._audit_citus() search_path=pg_catalog, pg_temp; \
                 tenant._citus_digest(text) search_path=pg_catalog, pg_temp; \
                 tenant._export(uuid) search_path=pg_catalog, pg_temp; \
                 tenant._import(text,uuid) search_path=pg_catalog, pg_temp; \
                 tenant._table_changed_trigger() search_path=pg_catalog, pg_temp; \
                 tenant.bind_database(uuid) search_path=pg_catalog, pg_temp; \
                 tenant.create_key(uuid) search_path=pg_catalog, pg_temp; \
                 tenant.place_tenant(uuid,text,text) search_path=pg_catalog, pg_temp; \
                 tenant.purge(uuid) search_path=pg_catalog, pg_temp; \
                 tenant.refresh_issuer(text) search_path=pg_catalog, pg_temp; \
                 tenant.resume_tenant(uuid) search_path=pg_catalog, pg_temp; \
                 tenant.revoke_subject(text,text,timestamp with time zone) search_path=pg_catalog, pg_temp; \
                 tenant.revoke_token(text) search_path=pg_catalog, pg_temp; \
                 tenant.rewrap_keys() search_path=pg_catalog, pg_temp; \
                 tenant.rotate_key(uuid) search_path=pg_catalog, pg_temp; \
                 tenant.scope_issuer(text,uuid[]) search_path=pg_catalog, pg_temp; \
                 tenant.set_key_provider(uuid,text) search_path=pg_catalog, pg_temp; \
                 tenant.shred(uuid) search_path=pg_catalog, pg_temp; \
                 tenant.suspend_tenant(uuid) search_path=pg_catalog, pg_temp; \
                 tenant.trust_issuer(text,jsonb,text,text,uuid[],boolean,boolean) search_path=pg_catalog, pg_temp; \
                 tenant.trust_issuer_discovery(text,text,text,uuid[],boolean,boolean,text[]) search_path=pg_catalog, \
                 pg_temp; \
                 tenant.unbind_database() search_path=pg_catalog, pg_temp; \
                 tenant.unplace_tenant(uuid) search_path=pg_catalog, pg_temp; \
                 tenant.untrust_issuer(text) search_path=pg_catalog, pg_temp"
            )
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'tenant'::regnamespace AND p.prosecdef \
                 AND has_function_privilege('public', p.oid, 'EXECUTE')"
            ),
            Some(0)
        );
    }
}
