-- Protected tables: the check of their managed policies, the view of their state, and tenant.protect().
CREATE FUNCTION tenant._policy_intact(rel oid, col name) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT count(*) = 2
      FROM pg_catalog.pg_policy p
     WHERE p.polrelid = rel AND p.polcmd = '*' AND p.polroles = '{0}'
       AND ((p.polname = 'tenant_isolation' AND NOT p.polpermissive)
            OR (p.polname = 'tenant_access' AND p.polpermissive))
       AND pg_catalog.pg_get_expr(p.polqual, p.polrelid)
           IN (tenant._policy_expression(col), tenant._policy_expression_per_row(col))
       AND pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) = pg_catalog.pg_get_expr(p.polqual, p.polrelid)
$$;

CREATE VIEW tenant.scoped_tables AS
SELECT c.oid::pg_catalog.regclass AS table_name,
       t.col AS tenant_column,
       c.relrowsecurity AS rls_enabled,
       c.relforcerowsecurity AS rls_forced,
       tenant._policy_intact(c.oid, t.col) AS policy_intact,
       EXISTS (SELECT 1
                 FROM pg_catalog.pg_index i
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                WHERE i.indrelid = c.oid AND a.attname = t.col) AS tenant_index
  FROM pg_catalog.pg_seclabel l
  JOIN pg_catalog.pg_class c ON l.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND l.objoid = c.oid
 CROSS JOIN LATERAL (SELECT tenant._label_column(l.label)::name AS col) t
 WHERE l.provider = 'tenant_guard' AND l.objsubid = 0 AND t.col IS NOT NULL;
COMMENT ON VIEW tenant.scoped_tables IS 'One row per table protected by tenant_guard, with the state of its guards.';
GRANT SELECT ON tenant.scoped_tables TO PUBLIC;

CREATE FUNCTION tenant.protect(tbl regclass, tenant_column name DEFAULT 'tenant_id') RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT tenant._protect(tbl::oid, tenant_column::text) $$;
COMMENT ON FUNCTION tenant.protect(regclass, name) IS
    'Protects a table: the same as SECURITY LABEL FOR tenant_guard ON TABLE tbl IS ''tenant_scoped column=...''.';
