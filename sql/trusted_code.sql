-- Which code may run over every tenant's rows of a protected table.
--
-- Code that a table's triggers, rules, policies, index expressions, constraints, generated columns, extended
-- statistics and column domains call sees the rows of every tenant that writes to (or is validated in) the table.
-- tenant_guard trusts such code only when it is:
--   - part of PostgreSQL itself (an object id below FirstNormalObjectId, tenant._first_normal_oid());
--   - part of an installed extension (installed by a superuser, or a trusted extension);
--   - owned by a superuser or a member of tenant_guard_admin.
-- Everything else was written by a role that is not trusted with every tenant's rows (the table owner, the
-- application role), and could have copied those rows anywhere. The tamper guard refuses such code on protected
-- tables for roles that are not administrators, and tenant.audit() reports what is already there.

CREATE FUNCTION tenant._trusted_function(fn oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT fn::pg_catalog.int8 < tenant._first_normal_oid()
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = fn AND d.deptype = 'e')
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
                    WHERE p.oid = fn
                      AND (r.rolsuper OR pg_catalog.pg_has_role(r.oid, 'tenant_guard_admin', 'USAGE')))
$$;
COMMENT ON FUNCTION tenant._trusted_function(oid) IS
    'Whether a function may run over every tenant''s rows: built in, part of an extension, or owned by a superuser '
    'or a tenant_guard_admin member (internal).';

-- The functions an object's stored expressions call: what pg_depend records for it (functions directly, operators
-- through their function), and the constraints of every domain it uses, of their base domains and element types.
CREATE FUNCTION tenant._callees(cls oid, obj oid) RETURNS SETOF oid
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE node(classid, objid) AS (
        SELECT cls, obj
        UNION
        SELECT step.classid, step.objid
          FROM node n
         CROSS JOIN LATERAL (
                -- the types an object depends on
                SELECT d.refclassid AS classid, d.refobjid AS objid
                  FROM pg_catalog.pg_depend d
                 WHERE d.classid = n.classid AND d.objid = n.objid
                   AND d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass
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
$$;
COMMENT ON FUNCTION tenant._callees(oid, oid) IS
    'The functions an object''s stored expressions call, through operators and domains too (internal).';

-- Code on a table that runs over its rows and is not trusted (see above). Rules are always listed: their actions
-- are statements that receive each row, whatever functions they call.
CREATE FUNCTION tenant._untrusted_code(rel oid) RETURNS TABLE(object text, callee text)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
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
    SELECT pg_catalog.format('generated column %I', a.attname), f::pg_catalog.regprocedure::text
      FROM pg_catalog.pg_attrdef ad
      JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum AND a.attgenerated <> ''
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
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND NOT tenant._trusted_function(f)
$$;
COMMENT ON FUNCTION tenant._untrusted_code(oid) IS
    'Triggers, rules, policies, indexes, constraints, generated columns, statistics and column domains of a table '
    'that run code not trusted with every tenant''s rows (internal).';

-- The first function in a list (and in the domains of a list of types) that is not trusted, as text, or NULL.
CREATE FUNCTION tenant._first_untrusted(functions oid[], types oid[]) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT f::pg_catalog.regprocedure::text
      FROM (SELECT pg_catalog.unnest(functions) AS f
            UNION
            SELECT c FROM pg_catalog.unnest(types) t(t)
                    CROSS JOIN LATERAL tenant._callees('pg_catalog.pg_type'::pg_catalog.regclass, t) c) x
     WHERE NOT tenant._trusted_function(f)
     ORDER BY 1
     LIMIT 1
$$;
COMMENT ON FUNCTION tenant._first_untrusted(oid[], oid[]) IS
    'The first function of a list, or of the domains of a list of types, not trusted with every tenant''s rows '
    '(internal).';

-- These read only catalogs that every role can read, and are executable by everyone: the tamper guard runs them as
-- the role whose statement it checks.
