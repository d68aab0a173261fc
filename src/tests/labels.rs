//! Security labels and what they attach: the policy set, refusals of bad labels, schemas, partitions, removal.
//! Labels are set by `tg_owner`, a table owner that is neither a superuser nor an administrator; rows are read by
//! `tg_app` (see `support`).

#[pgrx::pg_schema]
mod tests {
    use crate::labels::{deparsed_policy_predicate, ACCESS_POLICY, ISOLATION_POLICY};
    use crate::tests::support::*;

    const LABEL: &str = "SECURITY LABEL FOR tenant_guard ON TABLE shop.orders IS 'tenant_scoped'";

    fn policies(table: &str) -> String {
        one::<String>(&format!(
            "SELECT string_agg(format('%s:%s:%s:%s:%s', polname, polpermissive, polcmd, polroles = '{{0}}', \
             pg_get_expr(polqual, polrelid) = pg_get_expr(polwithcheck, polrelid)), ',' ORDER BY polname) \
             FROM pg_policy WHERE polrelid = '{table}'::regclass"
        ))
        .unwrap_or_default()
    }

    #[pg_test]
    fn a_label_attaches_the_whole_policy_set() {
        setup();
        owned_table();
        assert_eq!(outcome_as("tg_owner", LABEL), "00000");
        assert_eq!(
            one::<String>(
                "SELECT format('%s %s %s %s', c.relrowsecurity, c.relforcerowsecurity, a.attnotnull, \
                 pg_get_expr(d.adbin, d.adrelid)) FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
                 AND a.attname = 'tenant_id' JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
                 WHERE c.oid = 'shop.orders'::regclass"
            )
            .as_deref(),
            Some("t t t tenant.current_id()")
        );
        assert_eq!(policies("shop.orders"), format!("{ACCESS_POLICY}:t:*:t:t,{ISOLATION_POLICY}:f:*:t:t"));
        // the one expression, as PostgreSQL shows it (tenant._policy_intact compares with the same function)
        run("SET search_path = pg_catalog, pg_temp");
        assert_eq!(
            one::<String>(
                "SELECT string_agg(DISTINCT pg_get_expr(polqual, polrelid), ',') FROM pg_policy \
                 WHERE polrelid = 'shop.orders'::regclass"
            ),
            Some(deparsed_policy_predicate("tenant_id"))
        );
        run("RESET search_path");
        assert_eq!(
            one::<String>(
                "SELECT format('%s %s %s %s %s', table_name, tenant_column, rls_enabled, rls_forced, \
                           policy_intact) FROM tenant.scoped_tables"
            )
            .as_deref(),
            Some("shop.orders tenant_id t t t")
        );
        // the app role, with tenant A's context: A's rows only, new rows are A's, B's tenant id refused
        run("SET ROLE tg_app");
        assert_eq!(authenticate(&token_for(TENANT_A)), "00000");
        assert_eq!(
            one::<String>("SELECT string_agg(note, ',' ORDER BY id) FROM shop.orders").as_deref(),
            Some("a1,a2")
        );
        assert_eq!(outcome("INSERT INTO shop.orders (id, note) VALUES (6, 'a3')"), "00000");
        assert_eq!(one::<String>("SELECT tenant_id::text FROM shop.orders WHERE id = 6").as_deref(), Some(TENANT_A));
        assert_eq!(
            outcome(&format!("INSERT INTO shop.orders VALUES (7, '{TENANT_B}', 'x')")),
            // the permissive tenant_access policy refuses it first; PostgreSQL names only restrictive policies
            "42501: new row violates row-level security policy for table \"orders\""
        );
        assert_eq!(outcome("UPDATE shop.orders SET note = 'gone' WHERE id = 3"), "00000");
        assert_eq!(one::<i64>("SELECT count(*) FROM shop.orders WHERE note = 'gone'"), Some(0));
        // the owner, too, is confined (FORCE ROW LEVEL SECURITY): it sees tenant A's rows only
        run("RESET ROLE");
        run("SET ROLE tg_owner");
        assert_eq!(
            one::<String>("SELECT string_agg(note, ',' ORDER BY id) FROM shop.orders").as_deref(),
            Some("a1,a2,a3")
        );
        run("RESET ROLE");
    }

    #[pg_test]
    fn bad_labels_are_refused_before_anything_is_stored() {
        setup();
        owned_table();
        run("SET ROLE tg_owner");
        run("CREATE VIEW shop.v AS SELECT * FROM shop.orders");
        let cases = [
            (
                "ON TABLE shop.orders IS 'tenant_scoped column=missing'",
                "42703: table shop.orders has no column \"missing\" to hold the tenant",
            ),
            (
                "ON TABLE shop.orders IS 'tenant_scoped column=note'",
                "42804: tenant column \"note\" of table shop.orders must be of type uuid",
            ),
            ("ON TABLE shop.orders IS 'tenant-scoped'", "22023: invalid tenant_guard security label \"tenant-scoped\""),
            ("ON TABLE shop.orders IS ''", "22023: invalid tenant_guard security label \"\""),
            (
                "ON COLUMN shop.orders.tenant_id IS 'tenant_scoped'",
                "42809: tenant_guard labels apply to tables and schemas, not to columns",
            ),
            (
                "ON VIEW shop.v IS 'tenant_scoped'",
                "42809: tenant_guard labels apply to tables and partitioned tables only",
            ),
            ("ON SCHEMA shop IS 'global'", "22023: the 'global' label applies to tables only"),
        ];
        for (target, expected) in cases {
            assert_eq!(outcome(&format!("SECURITY LABEL FOR tenant_guard {target}")), expected, "{target}");
        }
        run("RESET ROLE");
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_seclabel WHERE provider = 'tenant_guard'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_policy WHERE polrelid = 'shop.orders'::regclass"), Some(0));
        assert_eq!(one::<bool>("SELECT relrowsecurity FROM pg_class WHERE oid = 'shop.orders'::regclass"), Some(false));
    }

    #[pg_test]
    fn a_labelled_schema_protects_its_tables_now_and_later() {
        setup();
        owned_table();
        run("SET ROLE tg_owner");
        run("CREATE TABLE shop.plain (id int)"); // no tenant column: must be labelled before COMMIT
        run("SECURITY LABEL FOR tenant_guard ON TABLE shop.plain IS 'global'");
        run("SECURITY LABEL FOR tenant_guard ON SCHEMA shop IS 'tenant_scoped'");
        run("CREATE TABLE shop.later (id int, tenant_id uuid)");
        run("CREATE TABLE shop.parts (id int, tenant_id uuid) PARTITION BY RANGE (id)");
        run("CREATE TABLE shop.parts_1 PARTITION OF shop.parts FOR VALUES FROM (0) TO (10)");
        run("CREATE TABLE shop.loose (id int, tenant_id uuid)");
        run("RESET ROLE");
        run("CREATE SCHEMA elsewhere; CREATE TABLE elsewhere.parts_2 (id int, tenant_id uuid NOT NULL)");
        run("ALTER TABLE shop.parts ATTACH PARTITION elsewhere.parts_2 FOR VALUES FROM (10) TO (20)");
        assert_eq!(
            one::<String>(
                "SELECT string_agg(table_name::text || ':' || policy_intact, ',' ORDER BY table_name::text) \
                           FROM tenant.scoped_tables"
            )
            .as_deref(),
            Some(
                "elsewhere.parts_2:true,shop.later:true,shop.loose:true,shop.orders:true,shop.parts:true,\
                  shop.parts_1:true"
            )
        );
        assert_eq!(
            one::<String>("SELECT label FROM pg_seclabel WHERE objoid = 'shop.plain'::regclass").as_deref(),
            Some("global")
        );
    }

    #[pg_test]
    fn only_administrators_remove_or_change_a_protection() {
        setup();
        owned_table();
        assert_eq!(outcome_as("tg_owner", LABEL), "00000");
        for change in ["NULL", "'global'", "'tenant_scoped column=tenant_id2'"] {
            assert_eq!(
                outcome_as("tg_owner", &format!("SECURITY LABEL FOR tenant_guard ON TABLE shop.orders IS {change}")),
                "42501: removing or changing the protection of shop.orders is refused",
                "{change}"
            );
        }
        run("CREATE ROLE tg_admin_member NOSUPERUSER NOBYPASSRLS IN ROLE tenant_guard_admin, tg_owner");
        assert_eq!(
            outcome_as("tg_admin_member", "SECURITY LABEL FOR tenant_guard ON TABLE shop.orders IS NULL"),
            "00000"
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_policy WHERE polrelid = 'shop.orders'::regclass"), Some(0));
        assert_eq!(
            one::<String>(
                "SELECT format('%s %s', relrowsecurity, relforcerowsecurity) FROM pg_class \
                           WHERE oid = 'shop.orders'::regclass"
            )
            .as_deref(),
            Some("f f")
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.scoped_tables"), Some(0));
    }

    #[pg_test]
    fn tenant_protect_is_the_label() {
        setup();
        owned_table();
        run("ALTER TABLE shop.orders RENAME COLUMN tenant_id TO company");
        assert_eq!(outcome_as("tg_owner", "SELECT tenant.protect('shop.orders', 'company')"), "00000");
        assert_eq!(
            one::<String>("SELECT label FROM pg_seclabel WHERE objoid = 'shop.orders'::regclass").as_deref(),
            Some("tenant_scoped column=company")
        );
        assert_eq!(outcome("SELECT tenant.protect(0)"), "42809: tenant.protect() takes a table");
        assert_eq!(
            outcome("SELECT tenant.protect('shop.orders', NULL)"),
            "22023: tenant.protect() takes a table and a column name"
        );
        assert_eq!(one::<String>("SELECT tenant._label_column('tenant_scoped')").as_deref(), Some("tenant_id"));
        assert_eq!(one::<String>("SELECT tenant._label_column('global')"), None);
        assert_eq!(one::<String>("SELECT tenant._label_column('nonsense')"), None);
    }
}
