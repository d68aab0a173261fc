-- The first object created in this transaction that is still in the session's temporary schema and is not dropped
-- with an ON COMMIT DROP table (what depends on such a table, and the objects those are internal parts of).
-- $1, $2: the catalogs and ids of the objects created; $3: the relations created by statements that create an ON
-- COMMIT DROP temporary table (the tables among them are those).
WITH RECURSIVE created(classid, objid) AS (
    SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.oid[]), pg_catalog.unnest($2::pg_catalog.oid[]))
),
temporary AS (
    SELECT c.classid, c.objid
      FROM created c, (SELECT pg_catalog.pg_my_temp_schema() AS nsp) t
     WHERE t.nsp OPERATOR(pg_catalog.<>) 0
       AND t.nsp OPERATOR(pg_catalog.=) CASE c.classid
           WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN
                (SELECT relnamespace FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) c.objid)
           WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN
                (SELECT typnamespace FROM pg_catalog.pg_type WHERE oid OPERATOR(pg_catalog.=) c.objid)
           WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN
                (SELECT pronamespace FROM pg_catalog.pg_proc WHERE oid OPERATOR(pg_catalog.=) c.objid)
           WHEN 'pg_catalog.pg_operator'::pg_catalog.regclass THEN
                (SELECT oprnamespace FROM pg_catalog.pg_operator WHERE oid OPERATOR(pg_catalog.=) c.objid)
           WHEN 'pg_catalog.pg_conversion'::pg_catalog.regclass THEN
                (SELECT connamespace FROM pg_catalog.pg_conversion WHERE oid OPERATOR(pg_catalog.=) c.objid)
           WHEN 'pg_catalog.pg_collation'::pg_catalog.regclass THEN
                (SELECT collnamespace FROM pg_catalog.pg_collation WHERE oid OPERATOR(pg_catalog.=) c.objid)
           WHEN 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass THEN
                (SELECT stxnamespace FROM pg_catalog.pg_statistic_ext WHERE oid OPERATOR(pg_catalog.=) c.objid)
           WHEN 'pg_catalog.pg_ts_config'::pg_catalog.regclass THEN
                (SELECT cfgnamespace FROM pg_catalog.pg_ts_config WHERE oid OPERATOR(pg_catalog.=) c.objid)
           WHEN 'pg_catalog.pg_ts_dict'::pg_catalog.regclass THEN
                (SELECT dictnamespace FROM pg_catalog.pg_ts_dict WHERE oid OPERATOR(pg_catalog.=) c.objid)
           END
),
dropped(classid, objid) AS (
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid, c.oid
      FROM pg_catalog.unnest($3::pg_catalog.oid[]) t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t
     WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog."char"[])
    UNION
    SELECT step.classid, step.objid
      FROM dropped w
     CROSS JOIN LATERAL (
            SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
             WHERE d.refclassid OPERATOR(pg_catalog.=) w.classid AND d.refobjid OPERATOR(pg_catalog.=) w.objid
            UNION ALL
            SELECT d.refclassid, d.refobjid FROM pg_catalog.pg_depend d
             WHERE d.classid OPERATOR(pg_catalog.=) w.classid AND d.objid OPERATOR(pg_catalog.=) w.objid
               AND d.deptype OPERATOR(pg_catalog.=) 'i'
         ) step
)
SELECT pg_catalog.pg_describe_object(t.classid, t.objid, 0)
  FROM temporary t
 WHERE NOT EXISTS (SELECT 1 FROM dropped d
                    WHERE d.classid OPERATOR(pg_catalog.=) t.classid AND d.objid OPERATOR(pg_catalog.=) t.objid)
 ORDER BY t.objid
 LIMIT 1
