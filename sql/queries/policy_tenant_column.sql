-- The tenant column of relation $1 whose restrictive tenant_isolation policy is exactly tenant_guard's (either form),
-- or no row.
SELECT a.attname::pg_catalog.text
  FROM pg_catalog.pg_policy p
  JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) p.polrelid
 WHERE p.polrelid OPERATOR(pg_catalog.=) $1 AND p.polname OPERATOR(pg_catalog.=) 'tenant_isolation'
   AND NOT p.polpermissive AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
   AND a.atttypid OPERATOR(pg_catalog.=) 'pg_catalog.uuid'::pg_catalog.regtype
   AND pg_catalog.pg_get_expr(p.polqual, p.polrelid) OPERATOR(pg_catalog.=)
       ANY (ARRAY[tenant._policy_expression(a.attname::pg_catalog.text),
                  tenant._policy_expression_per_row(a.attname::pg_catalog.text)])
 LIMIT 1
