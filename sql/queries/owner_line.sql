-- The owner line: what the current transaction wrote that it forbids on protected tables. Run after each statement
-- of a role that is not an administrator, as that role, with search_path = pg_catalog, pg_temp (see
-- src/guard/post_check.rs).
--
-- Row-level security confines queries, not the code a table carries. What the owner line forbids (code not trusted
-- with every tenant's rows, sql/trusted_code.sql; foreign keys that cross the tenant boundary; new unique keys
-- that do not compare the tenant column for equality; children without their parent's protection) is refused when the current transaction
-- wrote a catalog row it is made of: the table's label, the trigger, constraint, default, policy, index, rule,
-- statistics object or partition key, a type, domain constraint, type attribute or function its code reaches, the
-- inheritance link. What was there before (made by an administrator, or before tenant_guard refused it) is reported by
-- tenant.audit(), not held against later statements. Which statement wrote the rows does not matter: CREATE SCHEMA
-- with elements, ALTER DOMAIN on a domain a constraint only casts to, ALTER TYPE on a composite type, CREATE OR
-- REPLACE FUNCTION, a constraint dropped and added again under its name, a label set on a table that already
-- carries the code. tenant._xid_here() is inlined into each catalog scan: rows of earlier transactions cost one
-- comparison.
--
-- Columns: relation, kind ('code', 'foreign_key', 'unique_key', 'unprotected_child'), object, detail (the function,
-- NULL for a rule; the other table; the tenant column; NULL).
WITH RECURSIVE
functions AS (          -- functions created or changed
    SELECT p.oid FROM pg_proc p WHERE tenant._xid_here(p.xmin)
),
types(oid) AS (         -- types whose code changed, and every type that contains one
    SELECT t.oid FROM pg_type t WHERE tenant._xid_here(t.xmin)
    UNION
    SELECT c.contypid FROM pg_constraint c WHERE c.contypid <> 0 AND tenant._xid_here(c.xmin)
    UNION
    SELECT cl.reltype FROM pg_attribute a JOIN pg_class cl ON cl.oid = a.attrelid
     WHERE cl.relkind = 'c' AND tenant._xid_here(a.xmin)
    UNION
    SELECT c.contypid FROM functions f
      JOIN pg_depend d ON d.refclassid = 'pg_proc'::regclass AND d.refobjid = f.oid
                      AND d.classid = 'pg_constraint'::regclass
      JOIN pg_constraint c ON c.oid = d.objid AND c.contypid <> 0
    UNION
    -- types given a cast or an operator, or whose casts' or operators' functions changed: run on their values
    SELECT x.t FROM pg_cast c CROSS JOIN LATERAL (VALUES (c.castsource), (c.casttarget)) x(t)
     WHERE tenant._xid_here(c.xmin) OR c.castfunc IN (SELECT oid FROM functions)
    UNION
    SELECT x.t FROM pg_operator o CROSS JOIN LATERAL (VALUES (o.oprleft), (o.oprright)) x(t)
     WHERE x.t <> 0 AND (tenant._xid_here(o.xmin) OR o.oprcode IN (SELECT oid FROM functions))
    UNION
    -- types whose own functions changed (a range's subtype_diff)
    SELECT d.objid FROM functions f
      JOIN pg_depend d ON d.refclassid = 'pg_proc'::regclass AND d.refobjid = f.oid
                      AND d.classid = 'pg_type'::regclass
    UNION
    SELECT up.oid
      FROM types n
     CROSS JOIN LATERAL (
            SELECT ty.oid FROM pg_type ty WHERE ty.typbasetype = n.oid OR ty.typelem = n.oid
            UNION ALL
            SELECT cl.reltype FROM pg_attribute a JOIN pg_class cl ON cl.oid = a.attrelid
             WHERE a.atttypid = n.oid AND a.attnum > 0 AND NOT a.attisdropped AND cl.reltype <> 0
            UNION ALL
            SELECT r.rngtypid FROM pg_range r WHERE r.rngsubtype = n.oid
            UNION ALL
            SELECT r.rngmultitypid FROM pg_range r WHERE r.rngtypid = n.oid
         ) up
),
changed(classid, objid) AS (   -- what code may reach and changed: types, functions, operators over them
    SELECT 'pg_type'::regclass::oid, oid FROM types
    UNION ALL
    SELECT 'pg_proc'::regclass::oid, oid FROM functions
    UNION ALL
    SELECT 'pg_operator'::regclass::oid, o.oid FROM pg_operator o JOIN functions f ON o.oprcode = f.oid
),
objects(classid, objid) AS (   -- code objects written, or whose code reaches something that changed
    SELECT 'pg_trigger'::regclass::oid, t.oid FROM pg_trigger t WHERE tenant._xid_here(t.xmin) AND NOT t.tgisinternal
    UNION
    SELECT 'pg_constraint'::regclass::oid, c.oid FROM pg_constraint c
     WHERE c.conrelid <> 0 AND tenant._xid_here(c.xmin)
    UNION
    SELECT 'pg_attrdef'::regclass::oid, d.oid FROM pg_attrdef d WHERE tenant._xid_here(d.xmin)
    UNION
    SELECT 'pg_policy'::regclass::oid, p.oid FROM pg_policy p WHERE tenant._xid_here(p.xmin)
    UNION
    SELECT 'pg_class'::regclass::oid, i.indexrelid FROM pg_index i WHERE tenant._xid_here(i.xmin)
    UNION
    SELECT 'pg_statistic_ext'::regclass::oid, s.oid FROM pg_statistic_ext s WHERE tenant._xid_here(s.xmin)
    UNION
    SELECT 'pg_rewrite'::regclass::oid, r.oid FROM pg_rewrite r
     WHERE tenant._xid_here(r.xmin) AND r.rulename <> '_RETURN'
    UNION
    SELECT 'pg_class'::regclass::oid, pt.partrelid FROM pg_partitioned_table pt
     WHERE tenant._xid_here(pt.xmin) AND pt.partexprs IS NOT NULL
    UNION
    SELECT d.classid, d.objid FROM changed x JOIN pg_depend d ON d.refclassid = x.classid AND d.refobjid = x.objid
     WHERE d.objsubid = 0 AND d.classid IN ('pg_trigger'::regclass, 'pg_constraint'::regclass, 'pg_attrdef'::regclass,
                         'pg_policy'::regclass, 'pg_class'::regclass, 'pg_statistic_ext'::regclass,
                         'pg_rewrite'::regclass)
),
placed(classid, objid, relid) AS (   -- each object's table
    SELECT o.classid, o.objid, CASE o.classid
           WHEN 'pg_trigger'::regclass THEN (SELECT t.tgrelid FROM pg_trigger t WHERE t.oid = o.objid)
           WHEN 'pg_constraint'::regclass THEN (SELECT c.conrelid FROM pg_constraint c WHERE c.oid = o.objid)
           WHEN 'pg_attrdef'::regclass THEN (SELECT d.adrelid FROM pg_attrdef d WHERE d.oid = o.objid)
           WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy p WHERE p.oid = o.objid)
           WHEN 'pg_class'::regclass THEN
                COALESCE((SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = o.objid),
                         (SELECT pt.partrelid FROM pg_partitioned_table pt
                           WHERE pt.partrelid = o.objid AND pt.partexprs IS NOT NULL))
           WHEN 'pg_statistic_ext'::regclass THEN (SELECT s.stxrelid FROM pg_statistic_ext s WHERE s.oid = o.objid)
           WHEN 'pg_rewrite'::regclass THEN (SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = o.objid)
           END
      FROM objects o
),
columns(relid, attnum) AS (    -- columns added or changed, or of a type whose code changed
    SELECT a.attrelid, a.attnum FROM pg_attribute a
     WHERE tenant._xid_here(a.xmin) AND a.attnum > 0 AND NOT a.attisdropped
       AND a.atttypid::int8 >= tenant._first_normal_oid()
    UNION
    SELECT a.attrelid, a.attnum FROM types JOIN pg_attribute a ON a.atttypid = types.oid
     WHERE a.attnum > 0 AND NOT a.attisdropped
),
labelled AS (                  -- tables protected in this transaction: everything on them is new to the line
    SELECT l.objoid AS relid FROM pg_seclabel l
     WHERE l.provider = 'tenant_guard' AND l.classoid = 'pg_class'::regclass AND l.objsubid = 0
       AND tenant._xid_here(l.xmin) AND tenant._label_column(l.label) IS NOT NULL
),
links AS (                     -- inheritance links made
    SELECT h.inhrelid, h.inhparent FROM pg_inherits h WHERE tenant._xid_here(h.xmin)
),
scoped AS (                    -- the protected tables among those
    SELECT l.objoid AS relid, l.label, tenant._label_column(l.label)::name AS col
      FROM pg_seclabel l
     WHERE l.provider = 'tenant_guard' AND l.classoid = 'pg_class'::regclass AND l.objsubid = 0
       AND tenant._label_column(l.label) IS NOT NULL
       AND l.objoid IN (SELECT relid FROM placed UNION SELECT relid FROM columns UNION SELECT relid FROM labelled
                        UNION SELECT a.attrelid FROM pg_attribute a       -- any column changed (a default dropped)
                         WHERE tenant._xid_here(a.xmin) AND a.attnum > 0
                        UNION SELECT inhparent FROM links
                        UNION SELECT c.conrelid FROM placed p JOIN pg_constraint c ON c.oid = p.objid
                         WHERE p.classid = 'pg_constraint'::regclass
                        UNION SELECT c.confrelid FROM placed p JOIN pg_constraint c ON c.oid = p.objid
                         WHERE p.classid = 'pg_constraint'::regclass)
)
SELECT s.relid, 'code', u.object, u.callee
  FROM scoped s JOIN labelled l ON l.relid = s.relid CROSS JOIN LATERAL tenant._untrusted_code(s.relid) u
UNION ALL
SELECT p.relid, 'code', u.object, u.callee::regprocedure::text
  FROM placed p JOIN scoped s ON s.relid = p.relid
 CROSS JOIN LATERAL tenant._untrusted_calls(p.classid, p.objid) u
 WHERE p.relid NOT IN (SELECT relid FROM labelled)
UNION ALL
SELECT c.relid, 'code', u.object, u.callee::regprocedure::text
  FROM columns c JOIN scoped s ON s.relid = c.relid
 CROSS JOIN LATERAL tenant._untrusted_column_calls(c.relid, c.attnum) u
 WHERE c.relid NOT IN (SELECT relid FROM labelled)
UNION ALL
SELECT k.conrelid, 'foreign_key', k.conname::text, k.confrelid::regclass::text
  FROM (SELECT relid FROM labelled
        UNION SELECT p.relid FROM placed p WHERE p.classid = 'pg_constraint'::regclass) r
 CROSS JOIN LATERAL tenant._crossing_foreign_keys(r.relid) k
 WHERE r.relid IN (SELECT relid FROM labelled)
    OR k.conid IN (SELECT objid FROM placed WHERE classid = 'pg_constraint'::regclass)
    OR k.conrelid IN (SELECT relid FROM labelled) OR k.confrelid IN (SELECT relid FROM labelled)
UNION ALL
-- a unique key across tenants added to a protected table, or brought by a table attached or inherited into one
-- (one that was there before a table was labelled is reported by tenant.audit(): refusing the label would leave
-- the table unprotected)
SELECT s.relid, 'unique_key', u.indexrelid::regclass::text, s.col
  FROM scoped s CROSS JOIN LATERAL tenant._unique_without_tenant(s.relid, s.col) u
 WHERE NOT u.generated
   AND (u.indexrelid IN (SELECT objid FROM placed WHERE classid = 'pg_class'::regclass)
        OR s.relid IN (SELECT inhrelid FROM links)    -- a table attached or inherited: its rows are new to the key
        -- a key column changed (its default dropped or replaced, its identity dropped): the key was allowed for
        -- what the column was
        OR EXISTS (SELECT 1 FROM pg_index i
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
                    WHERE i.indexrelid = u.indexrelid AND tenant._xid_here(a.xmin)))
UNION ALL
SELECT s.relid, 'unprotected_child', h.inhrelid::regclass::text, NULL
  FROM scoped s
  JOIN pg_inherits h ON h.inhparent = s.relid
 WHERE (s.relid IN (SELECT relid FROM labelled)
        OR (h.inhrelid, h.inhparent) IN (SELECT inhrelid, inhparent FROM links))
   AND NOT EXISTS (SELECT 1 FROM pg_seclabel c
                    WHERE c.provider = 'tenant_guard' AND c.classoid = 'pg_class'::regclass
                      AND c.objoid = h.inhrelid AND c.objsubid = 0 AND c.label = s.label)
ORDER BY 2, 3, 4, 1
LIMIT 1
