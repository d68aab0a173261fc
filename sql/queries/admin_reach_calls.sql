-- The functions an administrator's statement runs on a relation (see src/guard/admin_reach.rs): those the relation's
-- code calls (its triggers, rules, policies, indexes, constraints, defaults, extended statistics, partition key, its
-- own view, the domains of its columns), those of every view that code reads, whoever owns the view (a view's
-- functions run with the caller's rights), and the support functions of the aggregates among them.
-- $1: the relation, or 0; $2: a domain, or 0 (its checks and default, wherever a value is converted to it). One row
-- per function: its oid, its signature, whether PUBLIC may execute it, its owner, whether
-- it is SECURITY DEFINER, its volatility, the extension it belongs to (NULL if none), whether PostgreSQL made it for a
-- type, and whether it is a trigger function.
WITH RECURSIVE code(classid, objid) AS (
    SELECT o.classid, o.objid FROM tenant._code_objects($1) o
    UNION ALL
    SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, $2 WHERE $2 OPERATOR(pg_catalog.<>) 0
    UNION ALL
    SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass, r.oid FROM pg_catalog.pg_rewrite r
     WHERE r.ev_class OPERATOR(pg_catalog.=) $1 AND r.rulename OPERATOR(pg_catalog.=) '_RETURN'
    UNION ALL
    SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, a.atttypid FROM pg_catalog.pg_attribute a
     WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
       AND a.atttypid::pg_catalog.int8 OPERATOR(pg_catalog.>=) tenant._first_normal_oid()
), viewed(relid) AS (
    SELECT v.oid FROM code c
     CROSS JOIN LATERAL pg_catalog.regexp_matches(tenant._node_code(c.classid, c.objid), ':relid (\d+)', 'g') m
      JOIN pg_catalog.pg_class v ON v.oid OPERATOR(pg_catalog.=) m[1]::pg_catalog.oid AND v.relkind OPERATOR(pg_catalog.=) 'v'
    UNION
    SELECT v.oid FROM viewed w
      JOIN pg_catalog.pg_rewrite r ON r.ev_class OPERATOR(pg_catalog.=) w.relid AND r.rulename OPERATOR(pg_catalog.=) '_RETURN'
     CROSS JOIN LATERAL pg_catalog.regexp_matches(tenant._node_code('pg_catalog.pg_rewrite'::pg_catalog.regclass, r.oid),
                                                  ':relid (\d+)', 'g') m
      JOIN pg_catalog.pg_class v ON v.oid OPERATOR(pg_catalog.=) m[1]::pg_catalog.oid AND v.relkind OPERATOR(pg_catalog.=) 'v'
), calls(f) AS (
    SELECT f FROM code c CROSS JOIN LATERAL tenant._callees(c.classid, c.objid) f
    UNION
    SELECT f FROM viewed w
      JOIN pg_catalog.pg_rewrite r ON r.ev_class OPERATOR(pg_catalog.=) w.relid AND r.rulename OPERATOR(pg_catalog.=) '_RETURN'
     CROSS JOIN LATERAL tenant._callees('pg_catalog.pg_rewrite'::pg_catalog.regclass, r.oid) f
    UNION
    -- a cast's function is one of PostgreSQL's more often than not, of which pg_depend keeps no record
    SELECT k.castfunc FROM code c CROSS JOIN LATERAL tenant._code_nodes(c.classid, c.objid) n
      JOIN pg_catalog.pg_cast k ON n.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_cast'::pg_catalog.regclass
                               AND k.oid OPERATOR(pg_catalog.=) n.objid AND k.castfunc OPERATOR(pg_catalog.<>) 0
), every(f) AS (
    SELECT f FROM calls
    UNION
    SELECT s.f::pg_catalog.oid FROM calls c
      JOIN pg_catalog.pg_aggregate a ON a.aggfnoid OPERATOR(pg_catalog.=) c.f
     CROSS JOIN LATERAL (VALUES (a.aggtransfn), (a.aggfinalfn), (a.aggcombinefn), (a.aggserialfn),
                                (a.aggdeserialfn), (a.aggmtransfn), (a.aggminvtransfn), (a.aggmfinalfn)) s(f)
     WHERE s.f::pg_catalog.oid OPERATOR(pg_catalog.<>) 0
)
SELECT p.oid, p.oid::pg_catalog.regprocedure::pg_catalog.text,
       pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE'), p.proowner, p.prosecdef,
       p.provolatile::pg_catalog.text,
       (SELECT e.extname::pg_catalog.text FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
         WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.objid OPERATOR(pg_catalog.=) p.oid
           AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.deptype OPERATOR(pg_catalog.=) 'e'),
       -- made by PostgreSQL with a type (a range's constructors), owned by the bootstrap superuser
       EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                  AND d.objid OPERATOR(pg_catalog.=) p.oid
                  AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass
                  AND d.deptype OPERATOR(pg_catalog.=) 'i'),
       p.prorettype OPERATOR(pg_catalog.=) 'pg_catalog.trigger'::pg_catalog.regtype
  FROM every JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) every.f
 ORDER BY p.oid
