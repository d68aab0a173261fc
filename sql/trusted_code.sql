-- Which code may run over every tenant's rows of a protected table.
--
-- Code that a table's triggers, rules, policies, defaults, index expressions, constraints, generated columns,
-- extended statistics and column domains call runs over the rows of every tenant that writes to (or is validated
-- in) the table, inside that tenant's transaction, with that tenant's context. tenant_guard trusts such code only
-- when it cannot carry those rows anywhere, and only when a superuser or a member of tenant_guard_admin owns it:
--   - PostgreSQL's own functions (object ids below FirstNormalObjectId, tenant._first_normal_oid()) and extensions'
--     functions that are IMMUTABLE or STABLE (they change nothing), except those that run a query or a type given
--     at runtime (the *_to_xml family, ts_rewrite, ts_stat, pg_input_is_valid, pg_input_error_info, tablefunc's
--     crosstab and connectby, xml2's xpath_table, and the input and receive functions that take a type oid:
--     domain_in, array_in, record_in, range_in, ...); a
--     short list of VOLATILE value generators whose state no other session reads (random, gen_random_uuid,
--     clock_timestamp, timeofday, uuid_generate_v1/v1mc/v4, gen_random_bytes); nextval() only in a column default
--     (which sees no row: it counts rows, as every sequence does; anywhere else, called on a condition over the
--     row, it would write the row's bits into sequences other roles read); and PostgreSQL's own trigger
--     functions (suppress_redundant_updates_trigger, tsvector_update_trigger, ...). An extension's function counts
--     only if a superuser or an administrator owns it: the owner of an extension can add its own functions to it;
--   - a function owned by a superuser or a member of tenant_guard_admin that is not part of an extension: an
--     administrator wrote it and answers for what it does.
-- Everything else (a role's own function, pg_notify, dblink, query_to_xml, ...) could copy the rows anywhere. The
-- owner line (sql/queries/owner_line.sql) refuses such code on protected tables to roles that are not administrators, and
-- tenant.audit() reports what is already there.

CREATE FUNCTION tenant._trusted_function(fn oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    SELECT f.owner_trusted
           AND (NOT (f.builtin OR f.in_extension)
                OR (f.builtin AND f.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype)
                OR (f.provolatile <> 'v' AND f.proname !~ '_to_xml' AND NOT f.runs_a_type_given_at_runtime
                    AND f.proname NOT IN ('ts_rewrite', 'ts_stat', 'pg_input_is_valid', 'pg_input_error_info',
                                          'crosstab', 'crosstab2', 'crosstab3', 'crosstab4', 'connectby',
                                          'xpath_table'))
                OR f.proname IN ('random', 'gen_random_uuid', 'clock_timestamp', 'timeofday', 'uuid_generate_v1',
                                 'uuid_generate_v1mc', 'uuid_generate_v4', 'gen_random_bytes'))
      FROM (SELECT p.proname, p.provolatile, p.prorettype,
                   p.oid::pg_catalog.int8 < tenant._first_normal_oid() AS builtin,
                   EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid
                              AND d.deptype = 'e') AS in_extension,
                   EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                            WHERE r.oid = p.proowner
                              AND (r.rolsuper OR pg_catalog.pg_has_role(r.oid, 'tenant_guard_admin', 'USAGE')))
                       AS owner_trusted,
                   -- a type's input or receive function that takes the type as an argument (domain_in,
                   -- array_in, record_in, range_in, ...): called directly with an oid, it runs whatever domain
                   -- checks that type has, and no stored expression names the type
                   p.pronargs >= 2 AND p.proargtypes[1] = 'pg_catalog.oid'::pg_catalog.regtype
                   AND EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.typinput = p.oid OR t.typreceive = p.oid)
                       AS runs_a_type_given_at_runtime
              FROM pg_catalog.pg_proc p WHERE p.oid = fn) f
$$;
COMMENT ON FUNCTION tenant._trusted_function(oid) IS
    'Whether a function may run over every tenant''s rows: it cannot carry them anywhere, or an administrator owns '
    'it (internal).';

-- The catalog rows whose code runs with an object: the object itself, the types it depends on (PostgreSQL's own
-- carry no code), and from each type: a domain's base type and constraints, an array's element type, a composite
-- type's attribute types (converting text to a composite type checks the domains of its attributes), a range's
-- subtype and a multirange's range.
CREATE FUNCTION tenant._code_nodes(cls oid, obj oid) RETURNS TABLE(classid oid, objid oid)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH RECURSIVE node(classid, objid) AS (
        SELECT cls, obj
        UNION
        SELECT step.classid, step.objid
          FROM node n
         CROSS JOIN LATERAL (
                SELECT d.refclassid AS classid, d.refobjid AS objid
                  FROM pg_catalog.pg_depend d
                 WHERE d.classid = n.classid AND d.objid = n.objid AND d.objsubid = 0
                   AND d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass
                   AND d.refobjid::pg_catalog.int8 >= tenant._first_normal_oid()
                UNION ALL
                SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, x.t
                  FROM pg_catalog.pg_type t
                 CROSS JOIN LATERAL (VALUES (CASE WHEN t.typtype = 'd' THEN t.typbasetype END), (t.typelem)) x(t)
                 WHERE n.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = n.objid
                   AND x.t IS NOT NULL AND x.t::pg_catalog.int8 >= tenant._first_normal_oid()
                UNION ALL
                SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, a.atttypid
                  FROM pg_catalog.pg_type t
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                 WHERE n.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = n.objid AND t.typrelid <> 0
                   AND a.atttypid::pg_catalog.int8 >= tenant._first_normal_oid()
                UNION ALL
                SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, CASE WHEN r.rngtypid = n.objid THEN r.rngsubtype
                                                                         ELSE r.rngtypid END
                  FROM pg_catalog.pg_range r
                 WHERE n.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                   AND (r.rngtypid = n.objid OR r.rngmultitypid = n.objid)
                UNION ALL
                SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, c.oid
                  FROM pg_catalog.pg_constraint c
                 WHERE n.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND c.contypid = n.objid
                UNION ALL
                -- the casts from and to a type, which PostgreSQL picks at run time (to_jsonb and row_to_json use
                -- a cast to json, ::text a cast to text): they run on its values
                SELECT 'pg_catalog.pg_cast'::pg_catalog.regclass, c.oid
                  FROM pg_catalog.pg_cast c
                 WHERE n.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                   AND (c.castsource = n.objid OR c.casttarget = n.objid) AND c.castfunc <> 0
                UNION ALL
                -- the operators over a type, likewise
                SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, o.oid
                  FROM pg_catalog.pg_operator o
                 WHERE n.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                   AND (o.oprleft = n.objid OR o.oprright = n.objid)
             ) step
    )
    SELECT classid, objid FROM node
$$;
COMMENT ON FUNCTION tenant._code_nodes(oid, oid) IS
    'The catalog rows whose code runs with an object: itself, its types, their domains'' constraints, the casts and '
    'operators over them (internal).';

-- The code a catalog row stores: the expressions PostgreSQL evaluates for it (node trees), and a trigger's function
-- and arguments.
CREATE FUNCTION tenant._node_code(cls oid, obj oid) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    SELECT CASE cls
           WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN
                (SELECT pg_catalog.concat_ws(' ', t.tgfoid, t.tgtype, pg_catalog.encode(t.tgargs, 'hex'), t.tgqual)
                   FROM pg_catalog.pg_trigger t WHERE t.oid = obj)
           WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass THEN
                (SELECT c.conbin::pg_catalog.text FROM pg_catalog.pg_constraint c WHERE c.oid = obj)
           WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN
                (SELECT d.adbin::pg_catalog.text FROM pg_catalog.pg_attrdef d WHERE d.oid = obj)
           WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN
                COALESCE((SELECT pg_catalog.concat_ws(' ', i.indexprs, i.indpred) FROM pg_catalog.pg_index i
                           WHERE i.indexrelid = obj),
                         (SELECT pt.partexprs::pg_catalog.text FROM pg_catalog.pg_partitioned_table pt
                           WHERE pt.partrelid = obj))
           WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass THEN
                (SELECT pg_catalog.concat_ws(' ', p.polqual, p.polwithcheck) FROM pg_catalog.pg_policy p
                  WHERE p.oid = obj)
           WHEN 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass THEN
                (SELECT s.stxexprs::pg_catalog.text FROM pg_catalog.pg_statistic_ext s WHERE s.oid = obj)
           WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN
                (SELECT ty.typdefaultbin::pg_catalog.text FROM pg_catalog.pg_type ty WHERE ty.oid = obj)
           WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN
                (SELECT pg_catalog.concat_ws(' ', r.ev_qual, r.ev_action) FROM pg_catalog.pg_rewrite r
                  WHERE r.oid = obj)
           END
$$;
COMMENT ON FUNCTION tenant._node_code(oid, oid) IS 'The code a catalog row stores, as text (internal).';

-- Whether the current transaction wrote a catalog row (created or changed it). tenant._written_here() is
-- TransactionIdIsCurrentTransactionId(); age() <= 0 (a transaction id not older than the current one) only spares
-- it the calls for rows of earlier transactions. No SET clause, every name qualified: PostgreSQL inlines it into
-- the catalog scans that call it for every row.
CREATE FUNCTION tenant._xid_here(x xid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.age(x) OPERATOR(pg_catalog.<=) 0 AND tenant._written_here(x)
$$;
COMMENT ON FUNCTION tenant._xid_here(xid) IS
    'Whether a catalog row''s xmin is the current transaction (or one of its subtransactions) (internal).';

-- The functions an object's code calls: what pg_depend records for its code nodes (functions directly, operators
-- through their function), and the functions named in the stored node trees (PostgreSQL records no dependency on
-- its own, pinned functions), with a trigger's function.
CREATE FUNCTION tenant._callees(cls oid, obj oid) RETURNS SETOF oid
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH n AS (SELECT * FROM tenant._code_nodes(cls, obj))
    SELECT d.refobjid
      FROM n JOIN pg_catalog.pg_depend d ON d.classid = n.classid AND d.objid = n.objid AND d.objsubid = 0
     WHERE d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
    UNION
    SELECT o.oprcode::pg_catalog.oid
      FROM n JOIN pg_catalog.pg_depend d ON d.classid = n.classid AND d.objid = n.objid AND d.objsubid = 0
      JOIN pg_catalog.pg_operator o ON o.oid = d.refobjid
     WHERE d.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass
    UNION
    SELECT t.tgfoid FROM n JOIN pg_catalog.pg_trigger t
        ON n.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND t.oid = n.objid
    UNION
    SELECT CASE WHEN m[1] = 'opno' THEN (SELECT o.oprcode::pg_catalog.oid FROM pg_catalog.pg_operator o
                                          WHERE o.oid = m[2]::pg_catalog.oid)
                ELSE m[2]::pg_catalog.oid END
      FROM n
     CROSS JOIN LATERAL pg_catalog.regexp_matches(tenant._node_code(n.classid, n.objid),
                                                  ':(funcid|aggfnoid|winfnoid|opno) (\d+)', 'g') m
$$;
COMMENT ON FUNCTION tenant._callees(oid, oid) IS
    'The functions an object''s stored expressions call, through operators and domains too (internal).';

-- The objects of a table that hold code run over its rows: triggers, rules, policies, indexes, constraints,
-- defaults and generation expressions, extended statistics (catalog, object id).
CREATE FUNCTION tenant._code_objects(rel oid) RETURNS TABLE(classid oid, objid oid)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    SELECT 'pg_catalog.pg_trigger'::pg_catalog.regclass::oid, t.oid FROM pg_catalog.pg_trigger t
     WHERE t.tgrelid = rel AND NOT t.tgisinternal
    UNION ALL
    SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass::oid, r.oid FROM pg_catalog.pg_rewrite r
     WHERE r.ev_class = rel AND r.rulename <> '_RETURN'
    UNION ALL
    SELECT 'pg_catalog.pg_policy'::pg_catalog.regclass::oid, p.oid FROM pg_catalog.pg_policy p WHERE p.polrelid = rel
    UNION ALL
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::oid, i.indexrelid FROM pg_catalog.pg_index i WHERE i.indrelid = rel
    UNION ALL
    SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass::oid, c.oid FROM pg_catalog.pg_constraint c
     WHERE c.conrelid = rel
    UNION ALL
    SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass::oid, d.oid FROM pg_catalog.pg_attrdef d WHERE d.adrelid = rel
    UNION ALL
    SELECT 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass::oid, s.oid FROM pg_catalog.pg_statistic_ext s
     WHERE s.stxrelid = rel
    UNION ALL
    -- a partition key's expressions, run for every row routed into (or validated against) its partitions
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::oid, pt.partrelid FROM pg_catalog.pg_partitioned_table pt
     WHERE pt.partrelid = rel AND pt.partexprs IS NOT NULL
$$;
COMMENT ON FUNCTION tenant._code_objects(oid) IS 'The objects of a table that hold code run over its rows (internal).';

-- The code of one object (see tenant._code_objects) that is not trusted (see above): (what the object is, the
-- function it calls). A rule is listed with no function: its actions are statements that receive each row, whatever
-- they call. nextval() in a default is trusted: a default sees no row.
CREATE FUNCTION tenant._untrusted_calls(cls oid, obj oid) RETURNS TABLE(object text, callee oid)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH o AS (
        SELECT CASE cls
               WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN
                    (SELECT pg_catalog.format('trigger %I', t.tgname) FROM pg_catalog.pg_trigger t WHERE t.oid = obj)
               WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN
                    (SELECT pg_catalog.format('rule %I', r.rulename) FROM pg_catalog.pg_rewrite r WHERE r.oid = obj)
               WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass THEN
                    (SELECT pg_catalog.format('policy %I', p.polname) FROM pg_catalog.pg_policy p WHERE p.oid = obj)
               WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN
                    pg_catalog.format(CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indexrelid = obj)
                                           THEN 'index %s' ELSE 'partition key of %s' END,
                                      obj::pg_catalog.regclass)
               WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass THEN
                    (SELECT pg_catalog.format('constraint %I', c.conname) FROM pg_catalog.pg_constraint c
                      WHERE c.oid = obj)
               WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN
                    (SELECT pg_catalog.format(CASE WHEN a.attgenerated <> '' THEN 'generated column %I'
                                                   ELSE 'default of column %I' END, a.attname)
                       FROM pg_catalog.pg_attrdef d
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                      WHERE d.oid = obj)
               WHEN 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass THEN
                    (SELECT pg_catalog.format('statistics %I', s.stxname) FROM pg_catalog.pg_statistic_ext s
                      WHERE s.oid = obj)
               END AS object,
               cls = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef d
                             JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                            WHERE d.oid = obj AND a.attgenerated = '') AS plain_default
    )
    SELECT o.object, NULL::oid FROM o WHERE cls = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
    UNION ALL
    SELECT o.object, f
      FROM o CROSS JOIN LATERAL tenant._callees(cls, obj) f
     WHERE cls <> 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND NOT tenant._trusted_function(f)
       AND NOT (o.plain_default AND f = 'pg_catalog.nextval(pg_catalog.regclass)'::pg_catalog.regprocedure)
$$;
COMMENT ON FUNCTION tenant._untrusted_calls(oid, oid) IS
    'The untrusted functions one trigger, rule, policy, index, constraint, default or statistics object calls '
    '(internal).';

-- The code a column's type runs on the column's values (its domains' checks and defaults, through composite, array
-- and range types) that is not trusted: (the column, the function).
CREATE FUNCTION tenant._untrusted_column_calls(rel oid, col int2) RETURNS TABLE(object text, callee oid)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    SELECT pg_catalog.format('column %I', a.attname), f
      FROM pg_catalog.pg_attribute a
     CROSS JOIN LATERAL tenant._callees('pg_catalog.pg_type'::pg_catalog.regclass, a.atttypid) f
     WHERE a.attrelid = rel AND a.attnum = col AND NOT a.attisdropped
       AND a.atttypid::pg_catalog.int8 >= tenant._first_normal_oid()   -- PostgreSQL's own types constrain nothing
       AND NOT tenant._trusted_function(f)
$$;
COMMENT ON FUNCTION tenant._untrusted_column_calls(oid, int2) IS
    'The untrusted functions a column''s type runs on its values (internal).';

-- Code on a table that runs over its rows and is not trusted (see above).
CREATE FUNCTION tenant._untrusted_code(rel oid) RETURNS TABLE(object text, callee text, callee_oid oid)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    SELECT u.object, u.callee::pg_catalog.regprocedure::text, u.callee
      FROM tenant._code_objects(rel) o CROSS JOIN LATERAL tenant._untrusted_calls(o.classid, o.objid) u
    UNION ALL
    SELECT u.object, u.callee::pg_catalog.regprocedure::text, u.callee
      FROM pg_catalog.pg_attribute a CROSS JOIN LATERAL tenant._untrusted_column_calls(rel, a.attnum) u
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
       AND a.atttypid::pg_catalog.int8 >= tenant._first_normal_oid()
$$;
COMMENT ON FUNCTION tenant._untrusted_code(oid) IS
    'Triggers, rules, policies, indexes, constraints, defaults, generated columns, statistics and column domains of '
    'a table that run code not trusted with every tenant''s rows (internal).';

-- Untrusted code in the partition keys of a table and its ancestors: run over every row routed into the table
-- or checked against its partition constraint (ATTACH PARTITION validates the rows of the table it attaches, and a
-- new partition the rows of the DEFAULT partition, before any check after the statement could refuse it).
CREATE FUNCTION tenant._untrusted_partition_keys(rel oid) RETURNS TABLE(relid oid, object text, callee oid)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH RECURSIVE up(relid) AS (
        SELECT rel
        UNION
        SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN up ON i.inhrelid = up.relid
    )
    SELECT up.relid, u.object, u.callee
      FROM up JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = up.relid AND pt.partexprs IS NOT NULL
     CROSS JOIN LATERAL tenant._untrusted_calls('pg_catalog.pg_class'::pg_catalog.regclass, up.relid) u
$$;
COMMENT ON FUNCTION tenant._untrusted_partition_keys(oid) IS
    'Untrusted code in the partition keys of a table and its ancestors (internal).';

-- Foreign keys that cross the tenant boundary, on a table or into it: one side protected and the other not
-- protected with the same label, or both protected without the tenant column matched to the tenant column.
-- Foreign-key checks and actions run as the tables' owners without row-level security: a key from a protected
-- table lets the referenced table's writer rewrite every tenant's rows through ON UPDATE CASCADE, and a key into one
-- lets whoever writes the referencing table probe every tenant's keys.
CREATE FUNCTION tenant._crossing_foreign_keys(rel oid)
RETURNS TABLE(conid oid, conname name, conrelid oid, confrelid oid)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH scoped AS (
        SELECT l.objoid AS relid, l.label, tenant._label_column(l.label) AS col
          FROM pg_catalog.pg_seclabel l
         WHERE l.provider = 'tenant_guard' AND l.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND l.objsubid = 0 AND l.label LIKE 'tenant_scoped%'
    )
    SELECT k.oid, k.conname, k.conrelid, k.confrelid
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

-- Unique indexes and constraints and exclusion constraints of a table whose key does not compare its tenant column
-- for equality (it lacks the column, or an exclusion constraint compares it with another operator): an insert
-- or update that collides with another tenant's value fails, which tells the caller that the value exists
-- (INCLUDE columns are not part of the key). `generated`: a unique key whose every column is generated by the
-- server (an integer identity or serial, a uuid from gen_random_uuid()), so there is little to learn.
CREATE FUNCTION tenant._unique_without_tenant(rel oid, col name)
RETURNS TABLE(indexrelid oid, exclusion boolean, generated boolean)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    SELECT i.indexrelid, i.indisexclusion, k.generated AND NOT i.indisexclusion
      FROM pg_catalog.pg_index i
     CROSS JOIN LATERAL (
            -- generated by the server: an integer id drawn from a sequence (identity, serial), whose values every
            -- tenant's inserts draw from one counter anyway, or a random uuid, which no tenant can guess; a column of
            -- another type with such a default holds whatever a client writes into it
            SELECT pg_catalog.bool_and(COALESCE(
                       (c.atttypid IN ('pg_catalog.int2'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype,
                                       'pg_catalog.int8'::pg_catalog.regtype)
                        AND (c.attidentity <> ''
                             OR pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) ~ '^nextval\('))
                       OR (c.atttypid = 'pg_catalog.uuid'::pg_catalog.regtype
                           AND pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) ~ '^(gen_random_uuid\(|uuid_generate_v4\()'),
                       false))
                       AS generated,
                   -- the tenant column, compared for equality: a unique key always compares with equality; an
                   -- exclusion constraint with the operator given for the column (tenant_id WITH <> conflicts only
                   -- between different tenants, the opposite of per-tenant)
                   pg_catalog.bool_or(c.attname = col
                                      AND (NOT i.indisexclusion
                                           OR x.conexclop[u.n] = 'pg_catalog.=(pg_catalog.uuid, pg_catalog.uuid)'
                                                                 ::pg_catalog.regoperator)) AS has_tenant
              FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY u(attnum, n)
              LEFT JOIN pg_catalog.pg_attribute c ON c.attrelid = rel AND c.attnum = u.attnum
              LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = rel AND ad.adnum = u.attnum
              LEFT JOIN pg_catalog.pg_constraint x ON x.conindid = i.indexrelid AND x.contype = 'x'
             WHERE u.n <= i.indnkeyatts) k
     WHERE i.indrelid = rel AND (i.indisunique OR i.indisexclusion) AND NOT COALESCE(k.has_tenant, false)
$$;
COMMENT ON FUNCTION tenant._unique_without_tenant(oid, name) IS
    'Unique and exclusion keys of a table that do not compare its tenant column for equality: a cross-tenant existence oracle (internal).';

-- These read only catalogs that every role can read, and are executable by everyone: the tamper guard runs them as
-- the role whose statement it checks.
