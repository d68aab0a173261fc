-- Whether the managed policy $2 on relation $1 is exactly tenant_guard's for tenant column $3: for all commands, to
-- PUBLIC, tenant_isolation restrictive and tenant_access permissive, USING and WITH CHECK the managed expression.
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_policy p
     WHERE p.polrelid OPERATOR(pg_catalog.=) $1 AND p.polname OPERATOR(pg_catalog.=) $2::pg_catalog.name
       AND p.polcmd OPERATOR(pg_catalog.=) '*' AND p.polroles OPERATOR(pg_catalog.=) '{0}'::pg_catalog.oid[]
       AND p.polpermissive OPERATOR(pg_catalog.=) ($2 OPERATOR(pg_catalog.=) 'tenant_access')
       AND pg_catalog.pg_get_expr(p.polqual, p.polrelid)
           OPERATOR(pg_catalog.=) ANY (ARRAY[tenant._policy_expression($3), tenant._policy_expression_per_row($3)])
       AND pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)
           OPERATOR(pg_catalog.=) pg_catalog.pg_get_expr(p.polqual, p.polrelid))
