-- The relations with a column whose values a type constrains: columns of the type itself, of domains over it, of
-- arrays of it, and of composite types (row types included) that contain any of those. $1: the type.
WITH RECURSIVE t(oid) AS (
    SELECT $1::pg_catalog.oid
    UNION
    SELECT ty.oid
      FROM pg_catalog.pg_type ty
      JOIN t ON ty.typbasetype OPERATOR(pg_catalog.=) t.oid
             OR ty.typelem OPERATOR(pg_catalog.=) t.oid
             OR (ty.typtype OPERATOR(pg_catalog.=) 'c'
                 AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute ca
                              WHERE ca.attrelid OPERATOR(pg_catalog.=) ty.typrelid
                                AND ca.atttypid OPERATOR(pg_catalog.=) t.oid))
)
SELECT DISTINCT a.attrelid
  FROM pg_catalog.pg_attribute a
  JOIN t ON a.atttypid OPERATOR(pg_catalog.=) t.oid
 WHERE a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
