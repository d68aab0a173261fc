-- The protected tables of this database that are not Citus tables yet and that the current role owns (Citus
-- converts only those), with their tenant column: before a Citus function that converts tables runs (only called
-- where Citus is installed, so pg_dist_partition exists).
SELECT c.oid, tenant._label_column(l.label)
  FROM pg_catalog.pg_seclabel l
  JOIN pg_catalog.pg_class c ON l.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                             AND l.objoid OPERATOR(pg_catalog.=) c.oid
 WHERE l.provider OPERATOR(pg_catalog.=) 'tenant_guard' AND l.objsubid OPERATOR(pg_catalog.=) 0
   AND tenant._label_column(l.label) IS NOT NULL
   AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid OPERATOR(pg_catalog.=) c.oid)
 ORDER BY c.oid
