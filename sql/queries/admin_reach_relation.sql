-- What makes an administrator's statement read or write relations of the owner's choosing with the administrator's
-- rights (see src/guard/admin_reach.rs): a view with security_invoker, whose tables are read and written as whoever
-- runs the statement, and, when row-level security applies to the administrator ($2), a policy whose expressions
-- read relations (they are read as whoever runs the statement, like a security_invoker view), and code that uses an
-- administrator's sequence. NULL: none of these.
-- $1: the relation.
SELECT CASE
       WHEN c.relkind OPERATOR(pg_catalog.=) 'v' AND EXISTS (
                SELECT 1 FROM pg_catalog.pg_options_to_table(c.reloptions) o
                 WHERE o.option_name OPERATOR(pg_catalog.=) 'security_invoker'
                   AND o.option_value::pg_catalog.bool)
       THEN 'a security_invoker view'
       WHEN $2 AND EXISTS (
                SELECT 1 FROM pg_catalog.pg_policy p
                 WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid
                   AND pg_catalog.concat_ws(' ', p.polqual, p.polwithcheck) OPERATOR(pg_catalog.~) ':relid \d')
       THEN 'a table whose policy reads other relations'
       -- nextval() and currval() run with the caller's rights: on a sequence of an administrator's, they would
       -- advance it and hand its numbers to the owner (the sequence a default names is recorded in pg_depend)
       WHEN EXISTS (
                SELECT 1 FROM (SELECT o.classid, o.objid FROM tenant._code_objects(c.oid) o
                               UNION ALL
                               SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass, r.oid FROM pg_catalog.pg_rewrite r
                                WHERE r.ev_class OPERATOR(pg_catalog.=) c.oid) o
                  JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) o.classid
                                             AND d.objid OPERATOR(pg_catalog.=) o.objid
                                             AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                  JOIN pg_catalog.pg_class s ON s.oid OPERATOR(pg_catalog.=) d.refobjid AND s.relkind OPERATOR(pg_catalog.=) 'S'
                  JOIN pg_catalog.pg_roles a ON a.oid OPERATOR(pg_catalog.=) s.relowner
                 WHERE a.rolsuper OR pg_catalog.pg_has_role(s.relowner, 'tenant_guard_admin', 'USAGE'))
       THEN 'a relation whose code uses a sequence of an administrator''s'
       END
  FROM pg_catalog.pg_class c
 WHERE c.oid OPERATOR(pg_catalog.=) $1
