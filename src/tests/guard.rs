//! The tamper guard, as `tg_owner`: a table owner that is neither a superuser nor an administrator, on a table it
//! owns and protected. Each statement that would weaken the protection, run code over every tenant's rows, or
//! reach the rows another way is refused with its own message; an administrator may run them.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::support::*;

    const REFUSED: &str = "is refused: table shop.orders is protected by tenant_guard";

    fn protected() {
        setup();
        owned_table();
        assert_eq!(
            outcome_as("tg_owner", "SECURITY LABEL FOR tenant_guard ON TABLE shop.orders IS 'tenant_scoped'"),
            "00000"
        );
        run("SET ROLE tg_owner");
    }

    #[pg_test]
    fn weakening_the_protection_is_refused_statement_by_statement() {
        protected();
        let cases = [
            ("ALTER TABLE shop.orders DISABLE ROW LEVEL SECURITY", "DISABLE ROW LEVEL SECURITY"),
            ("ALTER TABLE shop.orders NO FORCE ROW LEVEL SECURITY", "NO FORCE ROW LEVEL SECURITY"),
            ("ALTER TABLE shop.orders DROP COLUMN tenant_id", "dropping the tenant column"),
            ("ALTER TABLE shop.orders ALTER COLUMN tenant_id TYPE text", "changing the type of the tenant column"),
            (
                "ALTER TABLE shop.orders ALTER COLUMN tenant_id DROP DEFAULT",
                "changing the default of the tenant column",
            ),
            (
                "ALTER TABLE shop.orders ALTER COLUMN tenant_id SET DEFAULT NULL",
                "changing the default of the tenant column",
            ),
            (
                "ALTER TABLE shop.orders ALTER COLUMN tenant_id DROP NOT NULL",
                "dropping NOT NULL from the tenant column",
            ),
            ("ALTER TABLE shop.orders RENAME COLUMN tenant_id TO t", "renaming the tenant column"),
            ("ALTER POLICY tenant_isolation ON shop.orders RENAME TO x", "renaming a policy"),
            ("ALTER POLICY tenant_isolation ON shop.orders USING (true)", "ALTER POLICY"),
            ("DROP POLICY tenant_access ON shop.orders", "DROP POLICY"),
            ("CREATE POLICY mine ON shop.orders AS RESTRICTIVE USING (true)", "CREATE POLICY"),
            ("TRUNCATE shop.orders", "TRUNCATE"),
        ];
        for (sql, what) in cases {
            assert_eq!(outcome(sql), format!("42501: {what} {REFUSED}"), "{sql}");
        }
        // what stays allowed: the table's shape
        assert_eq!(outcome("ALTER TABLE shop.orders ADD COLUMN extra text"), "00000");
        assert_eq!(outcome("ALTER TABLE shop.orders RENAME COLUMN note TO body"), "00000");
        run("RESET ROLE");
        assert_eq!(
            one::<String>("SELECT format('%s %s', rls_forced, policy_intact) FROM tenant.scoped_tables").as_deref(),
            Some("t t")
        );
    }

    #[pg_test]
    fn code_over_every_tenants_rows_is_refused() {
        protected();
        run("CREATE FUNCTION shop.leak() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$");
        run("CREATE FUNCTION shop.f(text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$");
        let untrusted = "would run over every tenant's rows of table shop.orders";
        let cases = [
            ("CREATE TRIGGER t BEFORE INSERT ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.leak()",
             format!("42501: CREATE TRIGGER is refused: trigger t, which calls function shop.leak() {untrusted}")),
            ("CREATE INDEX ON shop.orders (shop.f(note))",
             "42501: an index on an expression is refused: it would read every tenant's rows of table shop.orders, which is protected by tenant_guard".into()),
        ];
        for (sql, expected) in cases {
            assert_eq!(outcome(sql), expected, "{sql}");
        }
        run("RESET ROLE");
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'shop.orders'::regclass"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_index WHERE indrelid = 'shop.orders'::regclass"), Some(1));
    }

    #[pg_test]
    fn a_restore_recreating_a_managed_policy_is_skipped() {
        protected();
        run("RESET ROLE");
        assert_eq!(outcome("CREATE POLICY tenant_isolation ON shop.orders AS RESTRICTIVE USING (true)"), "00000");
        assert_eq!(
            one::<String>("SELECT format('%s %s', count(*), bool_and(policy_intact)) FROM tenant.scoped_tables")
                .as_deref(),
            Some("1 t")
        );
    }

    #[pg_test]
    fn administrators_may_change_a_protected_table() {
        protected();
        run("RESET ROLE");
        run("CREATE ROLE tg_admin_owner NOSUPERUSER NOBYPASSRLS IN ROLE tenant_guard_admin, tg_owner");
        assert_eq!(outcome_as("tg_admin_owner", "ALTER TABLE shop.orders NO FORCE ROW LEVEL SECURITY"), "00000");
        assert_eq!(
            one::<String>("SELECT format('%s %s', rls_forced, policy_intact) FROM tenant.scoped_tables").as_deref(),
            Some("f t")
        );
    }
}
