-- The tables of a schema that are not partitions, and whether each has the tenant column. $1: the schema, $2: the
-- column name.
SELECT c.oid,
       EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid
                  AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name
                  AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace OPERATOR(pg_catalog.=) $1
   AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog."char"[])
   AND NOT c.relispartition
 ORDER BY c.relname
