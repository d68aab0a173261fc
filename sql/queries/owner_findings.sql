-- What the owner line forbids on some relations and their inheritance descendants (partitions and children, which
-- statements on a parent reach): code not trusted with every tenant's rows on protected ones (sql/trusted_code.sql),
-- and foreign keys crossing the tenant boundary on any of them. $1: the relations.
-- Columns: relation, kind ('code' or 'foreign_key'), object, detail (the function, or the other table).
WITH RECURSIVE rels(relid) AS (
    SELECT r FROM pg_catalog.unnest($1::pg_catalog.oid[]) r
    UNION
    SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN rels ON i.inhparent OPERATOR(pg_catalog.=) rels.relid
)
SELECT r.relid, 'code'::pg_catalog.text, u.object, u.callee
  FROM rels r CROSS JOIN LATERAL tenant._untrusted_code(r.relid) u
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_seclabel l
                WHERE l.provider OPERATOR(pg_catalog.=) 'tenant_guard'
                  AND l.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                  AND l.objoid OPERATOR(pg_catalog.=) r.relid AND l.objsubid OPERATOR(pg_catalog.=) 0
                  AND tenant._label_column(l.label) IS NOT NULL)
UNION ALL
SELECT r.relid, 'foreign_key', k.conname::pg_catalog.text,
       CASE WHEN k.conrelid OPERATOR(pg_catalog.=) r.relid THEN k.confrelid ELSE k.conrelid END
           ::pg_catalog.regclass::pg_catalog.text
  FROM rels r CROSS JOIN LATERAL tenant._crossing_foreign_keys(r.relid) k
