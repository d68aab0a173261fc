-- Which code may run over every tenant's rows of a protected table.
--
-- Code that a table's triggers, rules, policies, defaults, index expressions, constraints, generated columns,
-- extended statistics and column domains call runs over the rows of every tenant that writes to (or is validated
-- in) the table, inside that tenant's transaction, with that tenant's context. tenant_guard trusts such code only
-- when it cannot carry those rows anywhere:
--   - PostgreSQL's own functions (object ids below FirstNormalObjectId, tenant._first_normal_oid()) and extensions'
--     functions that are IMMUTABLE or STABLE (they change nothing), except the few that run a query given as
--     text (the *_to_xml family, ts_rewrite, ts_stat); a short list of VOLATILE value generators (nextval, random,
--     gen_random_uuid, clock_timestamp, timeofday, uuid_generate_v1/v1mc/v4, gen_random_bytes); and PostgreSQL's own
--     trigger functions (suppress_redundant_updates_trigger, tsvector_update_trigger, ...);
--   - a function owned by a superuser or a member of tenant_guard_admin that is not part of an extension: an
--     administrator wrote it and answers for what it does.
-- Everything else (a role's own function, pg_notify, dblink, query_to_xml, ...) could copy the rows anywhere. The
-- tamper guard refuses such code on protected tables for roles that are not administrators, and tenant.audit()
-- reports what is already there.

CREATE FUNCTION tenant._trusted_function(fn oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    SELECT CASE
           WHEN f.builtin OR f.in_extension THEN
                (f.builtin AND f.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype)
                OR (f.provolatile <> 'v' AND f.proname !~ '_to_xml' AND f.proname NOT IN ('ts_rewrite', 'ts_stat'))
                OR f.proname IN ('nextval', 'random', 'gen_random_uuid', 'clock_timestamp', 'timeofday',
                                 'uuid_generate_v1', 'uuid_generate_v1mc', 'uuid_generate_v4', 'gen_random_bytes')
           ELSE EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                         WHERE r.oid = f.proowner
                           AND (r.rolsuper OR pg_catalog.pg_has_role(r.oid, 'tenant_guard_admin', 'USAGE')))
           END
      FROM (SELECT p.proname, p.provolatile, p.prorettype, p.proowner,
                   p.oid::pg_catalog.int8 < tenant._first_normal_oid() AS builtin,
                   EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid
                              AND d.deptype = 'e') AS in_extension
              FROM pg_catalog.pg_proc p WHERE p.oid = fn) f
$$;
COMMENT ON FUNCTION tenant._trusted_function(oid) IS
    'Whether a function may run over every tenant''s rows: it cannot carry them anywhere, or an administrator owns '
    'it (internal).';

-- The functions an object's stored expressions call: what pg_depend records for it (functions directly, operators
-- through their function), the functions named in its stored expressions (PostgreSQL records no dependency on its
-- own functions), and the same for the constraints and default of every domain it uses, of their base domains and
-- element types.
CREATE FUNCTION tenant._callees(cls oid, obj oid) RETURNS SETOF oid
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH RECURSIVE node(classid, objid) AS (
        SELECT cls, obj
        UNION
        SELECT step.classid, step.objid
          FROM node n
         CROSS JOIN LATERAL (
                -- the types an object depends on (PostgreSQL's own carry no constraints)
                SELECT d.refclassid AS classid, d.refobjid AS objid
                  FROM pg_catalog.pg_depend d
                 WHERE d.classid = n.classid AND d.objid = n.objid
                   AND d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass
                   AND d.refobjid::pg_catalog.int8 >= tenant._first_normal_oid()
                UNION ALL
                -- a domain's base type and an array's element type
                SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, x.t
                  FROM pg_catalog.pg_type t
                 CROSS JOIN LATERAL (VALUES (CASE WHEN t.typtype = 'd' THEN t.typbasetype END), (t.typelem)) x(t)
                 WHERE n.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = n.objid
                   AND x.t IS NOT NULL AND x.t <> 0
                UNION ALL
                -- a domain's constraints
                SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, c.oid
                  FROM pg_catalog.pg_constraint c
                 WHERE n.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND c.contypid = n.objid
             ) step
    )
    SELECT d.refobjid
      FROM node n JOIN pg_catalog.pg_depend d ON d.classid = n.classid AND d.objid = n.objid
     WHERE d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
    UNION
    SELECT o.oprcode::pg_catalog.oid
      FROM node n JOIN pg_catalog.pg_depend d ON d.classid = n.classid AND d.objid = n.objid
      JOIN pg_catalog.pg_operator o ON o.oid = d.refobjid
     WHERE d.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass
    UNION
    -- PostgreSQL records no dependency on its own (pinned) objects: read the functions the stored expressions call,
    -- and a trigger's function, from the catalog rows themselves
    SELECT t.tgfoid FROM node n JOIN pg_catalog.pg_trigger t
        ON n.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND t.oid = n.objid
    UNION
    SELECT m[1]::pg_catalog.oid
      FROM node n
     CROSS JOIN LATERAL (
            SELECT t.tgqual::pg_catalog.text FROM pg_catalog.pg_trigger t
             WHERE n.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND t.oid = n.objid
            UNION ALL
            SELECT c.conbin::pg_catalog.text FROM pg_catalog.pg_constraint c
             WHERE n.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND c.oid = n.objid
            UNION ALL
            SELECT d.adbin::pg_catalog.text FROM pg_catalog.pg_attrdef d
             WHERE n.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.oid = n.objid
            UNION ALL
            SELECT x FROM pg_catalog.pg_index i
             CROSS JOIN LATERAL (VALUES (i.indexprs::pg_catalog.text), (i.indpred::pg_catalog.text)) v(x)
             WHERE n.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND i.indexrelid = n.objid
            UNION ALL
            SELECT x FROM pg_catalog.pg_policy p
             CROSS JOIN LATERAL (VALUES (p.polqual::pg_catalog.text), (p.polwithcheck::pg_catalog.text)) v(x)
             WHERE n.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND p.oid = n.objid
            UNION ALL
            SELECT s.stxexprs::pg_catalog.text FROM pg_catalog.pg_statistic_ext s
             WHERE n.classid = 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass AND s.oid = n.objid
            UNION ALL
            SELECT ty.typdefaultbin::pg_catalog.text FROM pg_catalog.pg_type ty
             WHERE n.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND ty.oid = n.objid
          ) e(expr)
     CROSS JOIN LATERAL pg_catalog.regexp_matches(e.expr, ':(?:funcid|aggfnoid|winfnoid) (\d+)', 'g') m
     WHERE e.expr IS NOT NULL
$$;
COMMENT ON FUNCTION tenant._callees(oid, oid) IS
    'The functions an object''s stored expressions call, through operators and domains too (internal).';

-- Code on a table that runs over its rows and is not trusted (see above). Rules are always listed: their actions
-- are statements that receive each row, whatever functions they call.
CREATE FUNCTION tenant._untrusted_code(rel oid) RETURNS TABLE(object text, callee text)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    SELECT pg_catalog.format('trigger %I', t.tgname), f::pg_catalog.regprocedure::text
      FROM pg_catalog.pg_trigger t CROSS JOIN LATERAL tenant._callees('pg_catalog.pg_trigger'::pg_catalog.regclass, t.oid) f
     WHERE t.tgrelid = rel AND NOT t.tgisinternal AND NOT tenant._trusted_function(f)
    UNION ALL
    SELECT pg_catalog.format('rule %I', r.rulename), NULL
      FROM pg_catalog.pg_rewrite r
     WHERE r.ev_class = rel AND r.rulename <> '_RETURN'
    UNION ALL
    SELECT pg_catalog.format('policy %I', p.polname), f::pg_catalog.regprocedure::text
      FROM pg_catalog.pg_policy p CROSS JOIN LATERAL tenant._callees('pg_catalog.pg_policy'::pg_catalog.regclass, p.oid) f
     WHERE p.polrelid = rel AND NOT tenant._trusted_function(f)
    UNION ALL
    SELECT pg_catalog.format('index %s', i.indexrelid::pg_catalog.regclass), f::pg_catalog.regprocedure::text
      FROM pg_catalog.pg_index i CROSS JOIN LATERAL tenant._callees('pg_catalog.pg_class'::pg_catalog.regclass, i.indexrelid) f
     WHERE i.indrelid = rel AND NOT tenant._trusted_function(f)
    UNION ALL
    SELECT pg_catalog.format('constraint %I', c.conname), f::pg_catalog.regprocedure::text
      FROM pg_catalog.pg_constraint c CROSS JOIN LATERAL tenant._callees('pg_catalog.pg_constraint'::pg_catalog.regclass, c.oid) f
     WHERE c.conrelid = rel AND NOT tenant._trusted_function(f)
    UNION ALL
    SELECT pg_catalog.format(CASE WHEN a.attgenerated <> '' THEN 'generated column %I' ELSE 'default of column %I' END,
                             a.attname),
           f::pg_catalog.regprocedure::text
      FROM pg_catalog.pg_attrdef ad
      JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
     CROSS JOIN LATERAL tenant._callees('pg_catalog.pg_attrdef'::pg_catalog.regclass, ad.oid) f
     WHERE ad.adrelid = rel AND NOT tenant._trusted_function(f)
    UNION ALL
    SELECT pg_catalog.format('statistics %I', s.stxname), f::pg_catalog.regprocedure::text
      FROM pg_catalog.pg_statistic_ext s
     CROSS JOIN LATERAL tenant._callees('pg_catalog.pg_statistic_ext'::pg_catalog.regclass, s.oid) f
     WHERE s.stxrelid = rel AND NOT tenant._trusted_function(f)
    UNION ALL
    SELECT pg_catalog.format('column %I', a.attname), f::pg_catalog.regprocedure::text
      FROM pg_catalog.pg_attribute a
     CROSS JOIN LATERAL tenant._callees('pg_catalog.pg_type'::pg_catalog.regclass, a.atttypid) f
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
       AND a.atttypid::pg_catalog.int8 >= tenant._first_normal_oid()   -- PostgreSQL's own types constrain nothing
       AND NOT tenant._trusted_function(f)
$$;
COMMENT ON FUNCTION tenant._untrusted_code(oid) IS
    'Triggers, rules, policies, indexes, constraints, defaults, generated columns, statistics and column domains of '
    'a table that run code not trusted with every tenant''s rows (internal).';

-- Foreign keys that cross the tenant boundary, on a table or into it: one side protected and the other not
-- protected with the same label, or both protected without the tenant column matched to the tenant column.
-- Foreign-key checks and actions run as the tables' owners without row-level security: a key from a protected
-- table lets the referenced table's writer rewrite every tenant's rows through ON UPDATE CASCADE, and a key into one
-- lets whoever writes the referencing table probe every tenant's keys.
CREATE FUNCTION tenant._crossing_foreign_keys(rel oid) RETURNS TABLE(conname name, conrelid oid, confrelid oid)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH scoped AS (
        SELECT l.objoid AS relid, l.label, tenant._label_column(l.label) AS col
          FROM pg_catalog.pg_seclabel l
         WHERE l.provider = 'tenant_guard' AND l.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND l.objsubid = 0 AND l.label LIKE 'tenant_scoped%'
    )
    SELECT k.conname, k.conrelid, k.confrelid
      FROM pg_catalog.pg_constraint k
      LEFT JOIN scoped s ON s.relid = k.conrelid
      LEFT JOIN scoped t ON t.relid = k.confrelid
     WHERE k.contype = 'f' AND (k.conrelid = rel OR k.confrelid = rel)
       AND (s.relid IS NOT NULL OR t.relid IS NOT NULL)
       AND (s.label IS DISTINCT FROM t.label
            OR NOT EXISTS (SELECT 1
                             FROM ROWS FROM (pg_catalog.unnest(k.conkey), pg_catalog.unnest(k.confkey)) u(c, f)
                             JOIN pg_catalog.pg_attribute sa ON sa.attrelid = k.conrelid AND sa.attnum = u.c
                             JOIN pg_catalog.pg_attribute ta ON ta.attrelid = k.confrelid AND ta.attnum = u.f
                            WHERE sa.attname = s.col AND ta.attname = t.col))
$$;
COMMENT ON FUNCTION tenant._crossing_foreign_keys(oid) IS
    'Foreign keys on or into a table that cross the tenant boundary (internal).';

-- These read only catalogs that every role can read, and are executable by everyone: the tamper guard runs them as
-- the role whose statement it checks.
