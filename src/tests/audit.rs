//! `tenant.audit()`: a clean protection reports nothing about its table; each weakening an administrator can make
//! out of band is reported with its fix.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::support::*;

    fn findings(object: &str) -> String {
        run("RESET ROLE");
        one::<String>(&format!(
            "SELECT string_agg(format('%s|%s|%s|%s', severity, check_name, detail, fix), E'\\n' ORDER BY check_name) \
             FROM tenant.audit() WHERE object = '{object}'"
        ))
        .unwrap_or_default()
    }

    #[pg_test]
    fn a_protected_table_is_clean_and_each_weakening_is_reported() {
        setup();
        owned_table();
        run("SECURITY LABEL FOR tenant_guard ON TABLE shop.orders IS 'tenant_scoped'");
        run("CREATE INDEX ON shop.orders (tenant_id)");
        assert_eq!(findings("shop.orders"), "");
        let relabel = "SECURITY LABEL FOR tenant_guard ON TABLE shop.orders IS 'tenant_scoped'";
        run("ALTER TABLE shop.orders NO FORCE ROW LEVEL SECURITY");
        assert_eq!(
            findings("shop.orders"),
            format!(
                "critical|protection_altered|its protection was changed: FORCE ROW LEVEL SECURITY is off, so the owner \
                 sees every tenant|re-apply the protection (as a superuser or an administrator): {relabel}"
            )
        );
        run("ALTER TABLE shop.orders FORCE ROW LEVEL SECURITY");
        run("ALTER POLICY tenant_access ON shop.orders USING (true)");
        run("ALTER TABLE shop.orders DROP CONSTRAINT orders_pkey");
        run("ALTER TABLE shop.orders ALTER COLUMN tenant_id DROP NOT NULL");
        assert_eq!(
            findings("shop.orders"),
            format!(
                "critical|protection_altered|its protection was changed: the tenant_isolation or tenant_access policy \
                 is missing or was altered; tenant_id allows NULL|re-apply the protection (as a superuser or an \
                 administrator): {relabel}"
            )
        );
    }

    #[pg_test]
    fn a_table_beside_protected_ones_left_unprotected_is_critical() {
        setup();
        owned_table();
        run("SECURITY LABEL FOR tenant_guard ON TABLE shop.orders IS 'tenant_scoped'");
        run("CREATE TABLE shop.invoices (id int, tenant_id uuid)");
        assert_eq!(
            findings("shop.invoices"),
            "critical|unprotected_tenant_table|has the tenant column tenant_id like the protected tables of schema \
             shop, but is not protected: every tenant can read and write every row|SECURITY LABEL FOR tenant_guard \
             ON TABLE shop.invoices IS 'tenant_scoped'; or label it 'global' if it is deliberately shared by all \
             tenants"
        );
        run("SECURITY LABEL FOR tenant_guard ON TABLE shop.invoices IS 'global'");
        assert_eq!(findings("shop.invoices"), "");
    }

    #[pg_test]
    fn the_audit_is_for_administrators() {
        setup();
        assert_eq!(outcome("SELECT * FROM tenant.audit()"), "42501: permission denied for function audit");
    }
}
