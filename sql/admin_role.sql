-- The role whose members tenant_guard trusts with every tenant's rows and with the issuer and key API. Created if it
-- does not exist (it is cluster-wide, and may already exist from another database); what it may call is granted
-- with each part (issuers.sql, keys.sql, audit.sql, encryption).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'tenant_guard_admin') THEN
        CREATE ROLE tenant_guard_admin NOLOGIN;
    END IF;
END
$$;
COMMENT ON ROLE tenant_guard_admin IS
    'tenant_guard administrators: manage issuers, and change protected tables without the tamper guard';
