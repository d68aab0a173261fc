CREATE FUNCTION tenant._audit(server_version_num integer)
RETURNS TABLE(severity text, check_name text, object text, detail text, fix text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $audit$
WITH RECURSIVE
scoped AS (
    SELECT c.oid AS relid, c.relnamespace AS nsp, c.relowner AS owner, c.relrowsecurity, c.relforcerowsecurity,
           t.col, l.label, pg_catalog.format('SECURITY LABEL FOR tenant_guard ON TABLE %s IS %L', c.oid::pg_catalog.regclass,
                                    l.label) AS relabel
      FROM pg_catalog.pg_seclabel l
      JOIN pg_catalog.pg_class c ON l.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND l.objoid = c.oid
     CROSS JOIN LATERAL (SELECT tenant._label_column(l.label)::name AS col) t
     WHERE l.provider = 'tenant_guard' AND l.objsubid = 0 AND t.col IS NOT NULL
),
schema_columns AS (   -- the tenant columns in use in each schema, from its protected tables and its own label
    SELECT nsp, col FROM scoped
    UNION
    SELECT l.objoid, tenant._label_column(l.label)::name
      FROM pg_catalog.pg_seclabel l
     WHERE l.provider = 'tenant_guard' AND l.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
       AND tenant._label_column(l.label) IS NOT NULL
),
roles AS (
    SELECT r.oid, r.rolname, r.rolcanlogin, r.rolsuper OR r.rolbypassrls AS bypasses,
           r.rolsuper OR COALESCE(pg_catalog.pg_has_role(r.oid, a.oid, 'MEMBER'), false) AS trusted
      FROM pg_catalog.pg_roles r
      LEFT JOIN pg_catalog.pg_roles a ON a.rolname = 'tenant_guard_admin'
),
rule_deps AS (        -- view or materialized view -> relation its definition reads
    SELECT DISTINCT r.ev_class AS viewid, d.refobjid AS relid
      FROM pg_catalog.pg_rewrite r
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
                                 AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
     WHERE d.refobjid <> r.ev_class
),
reaches AS (          -- view -> protected table it reads, directly or through other views
    SELECT viewid, relid AS scoped_relid FROM rule_deps WHERE relid IN (SELECT relid FROM scoped)
    UNION
    SELECT d.viewid, r.scoped_relid FROM rule_deps d JOIN reaches r ON d.relid = r.viewid
),
wording AS (
    SELECT ': the owner bypasses row-level security, so every caller sees every tenant''s rows'::text AS owner_bypasses,
           ' (the policies still confine it to the caller''s tenant, but privileges are checked as the owner)'::text
               AS owner_confined
),
findings AS (
-- 1. a table with a tenant column, beside protected tables, that is not protected itself
SELECT 'critical' AS severity, 'unprotected_tenant_table' AS check_name, c.oid::pg_catalog.regclass::text AS object,
       pg_catalog.format('has the tenant column %I like the protected tables of schema %I, but is not protected: '
                         'every tenant can read and write every row', a.attname, n.nspname) AS detail,
       pg_catalog.format('SECURITY LABEL FOR tenant_guard ON TABLE %s IS %L; or label it ''global'' if it is '
                         'deliberately shared by all tenants', c.oid::pg_catalog.regclass,
                         CASE WHEN a.attname = 'tenant_id' THEN 'tenant_scoped'
                              ELSE 'tenant_scoped column=' || a.attname END) AS fix
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p')
   AND (c.relnamespace, a.attname) IN (SELECT nsp, col FROM schema_columns)
   AND c.oid NOT IN (SELECT relid FROM scoped)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_seclabel l
                    WHERE l.provider = 'tenant_guard' AND l.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND l.objoid = c.oid AND l.objsubid = 0 AND l.label = 'global')
UNION ALL
-- 2. a protected table whose protection was changed out of band (by a superuser or an admin), its tenant column
--    dropped or renamed included
SELECT 'critical', 'protection_altered', s.relid::pg_catalog.regclass::text,
       'its protection was changed: ' || pg_catalog.array_to_string(pg_catalog.array_remove(ARRAY[
           CASE WHEN a.attnum IS NULL
                THEN pg_catalog.format('its tenant column %I is gone (dropped or renamed)', s.col) END,
           CASE WHEN NOT s.relrowsecurity THEN 'row-level security is disabled' END,
           CASE WHEN NOT s.relforcerowsecurity THEN 'FORCE ROW LEVEL SECURITY is off, so the owner sees every tenant' END,
           CASE WHEN NOT tenant._policy_intact(s.relid, s.col)
                THEN 'the tenant_isolation or tenant_access policy is missing or was altered' END,
           CASE WHEN a.attnum IS NOT NULL AND d.def IS DISTINCT FROM 'tenant.current_id()'
                THEN pg_catalog.format('the default of %I is not tenant.current_id()', s.col) END,
           CASE WHEN NOT a.attnotnull THEN pg_catalog.format('%I allows NULL', s.col) END], NULL), '; '),
       CASE WHEN a.attnum IS NULL
            THEN pg_catalog.format('restore the column %I, then re-apply the protection: %s', s.col, s.relabel)
            ELSE 're-apply the protection (as a superuser or an administrator): ' || s.relabel END
  FROM scoped s
  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = s.relid AND a.attname = s.col AND NOT a.attisdropped
  LEFT JOIN LATERAL (SELECT pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) AS def FROM pg_catalog.pg_attrdef ad
                      WHERE ad.adrelid = s.relid AND ad.adnum = a.attnum) d ON true
 WHERE a.attnum IS NULL OR NOT s.relrowsecurity OR NOT s.relforcerowsecurity OR NOT tenant._policy_intact(s.relid, s.col)
    OR d.def IS DISTINCT FROM 'tenant.current_id()' OR NOT a.attnotnull
UNION ALL
-- 3. roles that can log in and are not confined by row-level security
SELECT CASE WHEN r.oid = 10 THEN 'info' ELSE 'warning' END, 'privileged_login_role', pg_catalog.quote_ident(r.rolname),
       pg_catalog.format('can log in and %s, so row-level security does not confine it: it sees every tenant''s rows',
                         CASE WHEN r.rolsuper THEN 'is a superuser' ELSE 'has BYPASSRLS' END),
       CASE WHEN r.oid = 10 THEN 'the bootstrap superuser: use it for administration only, never for the application'
            WHEN r.rolsuper THEN pg_catalog.format('if the application connects as it: ALTER ROLE %I NOSUPERUSER '
                                                   'NOBYPASSRLS; or make it NOLOGIN', r.rolname)
            ELSE pg_catalog.format('ALTER ROLE %I NOBYPASSRLS; or make it NOLOGIN', r.rolname) END
  FROM pg_catalog.pg_roles r
 WHERE r.rolcanlogin AND (r.rolsuper OR r.rolbypassrls)
UNION ALL
-- 4. protected tables owned by a role that can log in (an application role)
SELECT 'critical', 'app_role_owns_table', s.relid::pg_catalog.regclass::text,
       pg_catalog.format('is owned by %I, which can log in and is not an administrator: as the owner it can drop the '
                         'table with every tenant''s rows and grant any privilege on it', o.rolname),
       pg_catalog.format('ALTER TABLE %s OWNER TO <a NOLOGIN role>; then GRANT the application only the '
                         'privileges it needs', s.relid::pg_catalog.regclass)
  FROM scoped s JOIN roles o ON o.oid = s.owner
 WHERE o.rolcanlogin AND NOT o.trusted
UNION ALL
-- 5. views and materialized views that read protected tables with their owner's rights
SELECT CASE WHEN o.bypasses OR v.relkind = 'm' THEN 'critical' ELSE 'warning' END, 'owner_rights_view',
       v.oid::pg_catalog.regclass::text,
       CASE WHEN v.relkind = 'm'
            THEN pg_catalog.format('is a materialized view of protected table(s) %s: it holds the rows its owner %I '
                                   'saw at refresh time, under whatever tenant context was active, and serves them '
                                   'to every caller with no row-level security', t.tables, o.rolname)
            ELSE pg_catalog.format('reads protected table(s) %s with the rights of its owner %I, not the caller''s',
                                   t.tables, o.rolname)
                 || CASE WHEN o.bypasses THEN owner_bypasses ELSE owner_confined END END,
       CASE WHEN v.relkind = 'm' THEN pg_catalog.format('DROP MATERIALIZED VIEW %s; use a view WITH '
                                                        '(security_invoker = true) instead', v.oid::pg_catalog.regclass)
            ELSE pg_catalog.format('ALTER VIEW %s SET (security_invoker = true)', v.oid::pg_catalog.regclass) END
  FROM pg_catalog.pg_class v
  JOIN roles o ON o.oid = v.relowner
  JOIN LATERAL (SELECT pg_catalog.string_agg(r.scoped_relid::pg_catalog.regclass::text, ', '
                                              ORDER BY r.scoped_relid::pg_catalog.regclass::text) AS tables
                  FROM reaches r WHERE r.viewid = v.oid) t ON t.tables IS NOT NULL
 CROSS JOIN wording
 WHERE v.relkind IN ('v', 'm')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_options_to_table(v.reloptions) x
                    WHERE x.option_name = 'security_invoker' AND x.option_value::boolean)
UNION ALL
-- 6. SECURITY DEFINER functions that read protected tables
SELECT CASE WHEN o.bypasses THEN 'critical' ELSE 'warning' END, 'definer_function', p.oid::pg_catalog.regprocedure::text,
       pg_catalog.format('is SECURITY DEFINER and reads protected table(s) %s with the rights of its owner %I', t.tables,
                         o.rolname)
       || CASE WHEN o.bypasses THEN owner_bypasses ELSE owner_confined END,
       pg_catalog.format('ALTER FUNCTION %s SECURITY INVOKER; or make its owner a role without SUPERUSER and BYPASSRLS',
                         p.oid::pg_catalog.regprocedure)
  FROM pg_catalog.pg_proc p
  JOIN roles o ON o.oid = p.proowner
  JOIN LATERAL (SELECT pg_catalog.string_agg(s.relid::pg_catalog.regclass::text, ', '
                                              ORDER BY s.relid::pg_catalog.regclass::text) AS tables
                  FROM scoped s JOIN pg_catalog.pg_class c ON c.oid = s.relid
                 WHERE p.prosrc ~* ('\m' || pg_catalog.regexp_replace(c.relname, '([^a-zA-Z0-9_])', '\\\1', 'g') || '\M')
                    OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid
                                  AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                  AND d.refobjid = s.relid)) t ON t.tables IS NOT NULL
 CROSS JOIN wording
 WHERE p.prosecdef
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e
                    WHERE e.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND e.objid = p.oid AND e.deptype = 'e')
UNION ALL
-- 7. unique and exclusion constraints and indexes whose key does not include the tenant column: an existence oracle
--    (INCLUDE columns are not part of the key)
SELECT CASE WHEN k.generated THEN 'info' ELSE 'warning' END, 'unique_without_tenant',
       pg_catalog.format('%s on %s', i.indexrelid::pg_catalog.regclass, s.relid::pg_catalog.regclass),
       pg_catalog.format('is %s across tenants: its key does not compare the tenant column %I for equality: an '
                         'insert or update that collides with '
                         'another tenant''s value fails, which tells the caller that the value exists',
                         CASE WHEN i.indisexclusion THEN 'an exclusion constraint' ELSE 'unique' END, s.col)
       || CASE WHEN k.generated THEN ' (its columns are generated by the server, so there is little to learn)' ELSE ''
          END,
       pg_catalog.format('make it unique per tenant: put %I in the key, for example UNIQUE (%I, ...)', s.col, s.col)
  FROM scoped s
 CROSS JOIN LATERAL tenant._unique_without_tenant(s.relid, s.col) k
  JOIN pg_catalog.pg_index i ON i.indexrelid = k.indexrelid
UNION ALL
-- 8. foreign keys that reference a protected table without matching its tenant column to the tenant column of a
--    protected referencing table (foreign-key checks ignore row-level security)
SELECT 'critical', 'foreign_key_without_tenant',
       pg_catalog.format('%I on %s', k.conname, k.conrelid::pg_catalog.regclass),
       CASE WHEN s.relid IS NULL
            THEN pg_catalog.format('references protected table %s from a table that is not protected: whoever can '
                                   'write to it can probe any tenant''s keys (foreign-key checks ignore row-level '
                                   'security), and the error for a missing key tells whether some tenant has it',
                                   k.confrelid::pg_catalog.regclass)
            ELSE pg_catalog.format('references %s without matching %I to %I: a row of one tenant can reference '
                                   'another tenant''s row (foreign-key checks ignore row-level security), and the '
                                   'error for a missing key tells whether another tenant has it',
                                   k.confrelid::pg_catalog.regclass, s.col, t.col) END,
       CASE WHEN s.relid IS NULL
            THEN pg_catalog.format('protect %s too, with the tenant column in the key', k.conrelid::pg_catalog.regclass)
            ELSE pg_catalog.format('add the tenant column to the key: FOREIGN KEY (%I, ...) REFERENCES %s (%I, ...), '
                                   'with a UNIQUE (%I, ...) on the referenced table', s.col,
                                   k.confrelid::pg_catalog.regclass, t.col, t.col) END
  FROM pg_catalog.pg_constraint k
  JOIN scoped t ON t.relid = k.confrelid
  JOIN pg_catalog.pg_attribute ta ON ta.attrelid = t.relid AND ta.attname = t.col
  LEFT JOIN scoped s ON s.relid = k.conrelid
  LEFT JOIN pg_catalog.pg_attribute sa ON sa.attrelid = s.relid AND sa.attname = s.col
 WHERE k.contype = 'f' AND k.conparentid = 0
   AND (s.relid IS NULL
        OR NOT EXISTS (SELECT 1 FROM ROWS FROM (pg_catalog.unnest(k.conkey), pg_catalog.unnest(k.confkey)) u(c, f)
                        WHERE u.c = sa.attnum AND u.f = ta.attnum))
UNION ALL
-- 8b. foreign keys from a protected table to a table that is not protected (a shared lookup table, say)
SELECT CASE WHEN k.confupdtype IN ('c', 'n', 'd') OR k.confdeltype IN ('c', 'n', 'd') THEN 'warning' ELSE 'info' END,
       'foreign_key_to_shared_table', pg_catalog.format('%I on %s', k.conname, k.conrelid::pg_catalog.regclass),
       pg_catalog.format('references %s, which is not protected: whoever can update or delete its rows can tell '
                         'whether some tenant references a value (the error for a referenced key)%s',
                         k.confrelid::pg_catalog.regclass,
                         CASE WHEN k.confupdtype IN ('c', 'n', 'd') OR k.confdeltype IN ('c', 'n', 'd')
                              THEN ', and its ON UPDATE/DELETE action rewrites every tenant''s referencing rows'
                              ELSE '' END),
       pg_catalog.format('keep writing %s to administrators; tenant_guard refuses such keys to other roles',
                         k.confrelid::pg_catalog.regclass)
  FROM pg_catalog.pg_constraint k
  JOIN scoped s ON s.relid = k.conrelid
 WHERE k.contype = 'f' AND k.conparentid = 0 AND k.confrelid NOT IN (SELECT relid FROM scoped)
UNION ALL
-- 9. protected tables without an index that leads with the tenant column
SELECT 'warning', 'no_tenant_index', s.relid::pg_catalog.regclass::text,
       pg_catalog.format('has no index that leads with %I: every query scans every tenant''s rows and filters them',
                         s.col),
       pg_catalog.format('CREATE INDEX ON %s (%I, ...)', s.relid::pg_catalog.regclass, s.col)
  FROM scoped s
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a
                     ON a.attrelid = s.relid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = s.relid AND a.attname = s.col)
UNION ALL
-- 10. other permissive policies that are always true
SELECT 'warning', 'permissive_always_true', pg_catalog.format('%I on %s', p.polname, p.polrelid::pg_catalog.regclass),
       'is a PERMISSIVE policy whose expression is always true: the RESTRICTIVE tenant_isolation policy still '
       'confines it to the tenant, but it grants its roles every row of the tenant, and every tenant''s rows if '
       'the table is ever unprotected',
       pg_catalog.format('DROP POLICY %I ON %s; or give it a real condition', p.polname,
                         p.polrelid::pg_catalog.regclass)
  FROM pg_catalog.pg_policy p
  JOIN scoped s ON s.relid = p.polrelid
 WHERE p.polpermissive AND p.polname NOT IN ('tenant_isolation', 'tenant_access')
   AND (pg_catalog.lower(pg_catalog.pg_get_expr(p.polqual, p.polrelid)) IN ('true', '(1 = 1)', '(true)')
        OR pg_catalog.lower(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)) IN ('true', '(1 = 1)', '(true)'))
UNION ALL
-- 11. TRUNCATE granted on protected tables to roles that are not administrators
SELECT 'warning', 'truncate_granted', s.relid::pg_catalog.regclass::text,
       pg_catalog.format('grants TRUNCATE to %s; TRUNCATE ignores row-level security (tenant_guard refuses it for '
                         'roles that are not administrators, but the grant should go)',
                         CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END),
       pg_catalog.format('REVOKE TRUNCATE ON %s FROM %s', s.relid::pg_catalog.regclass,
                         CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END)
  FROM scoped s
  JOIN pg_catalog.pg_class c ON c.oid = s.relid
 CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) g
  LEFT JOIN roles r ON r.oid = g.grantee
 WHERE g.privilege_type = 'TRUNCATE' AND g.grantee <> c.relowner AND (g.grantee = 0 OR NOT r.trusted)
UNION ALL
-- 13. indexes of protected tables whose key does not lead with the tenant column: a scan of one reads every
--     tenant's entries, and its counters (pg_stat_get_*) and timing tell how many match
SELECT CASE WHEN hidden THEN 'info' ELSE 'warning' END, 'index_without_tenant_lead',
       pg_catalog.format('%s on %s', i.indexrelid::pg_catalog.regclass, s.relid::pg_catalog.regclass),
       pg_catalog.format('does not lead with the tenant column %I: a scan of it reads every tenant''s entries in '
                         'its range, so ', s.col)
       || CASE WHEN hidden THEN 'its timing tells how many other tenants'' rows match (its counters are hidden by '
                                'tenant_guard.hide_statistics)'
               ELSE 'its counters (pg_stat_get_*, readable because tenant_guard.hide_statistics is off) and its '
                    'timing tell how many other tenants'' rows match' END,
       pg_catalog.format('CREATE INDEX ON %s (%I, ...) with the same columns after the tenant column, then drop '
                         'this one', s.relid::pg_catalog.regclass, s.col)
  FROM scoped s
  JOIN pg_catalog.pg_attribute a ON a.attrelid = s.relid AND a.attname = s.col
  JOIN pg_catalog.pg_index i ON i.indrelid = s.relid
 CROSS JOIN (SELECT pg_catalog.current_setting('tenant_guard.hide_statistics')::boolean AS hidden) h
 WHERE i.indkey[0] <> a.attnum
   AND (NOT (i.indisunique OR i.indisexclusion) OR a.attnum = ANY (i.indkey::int2[]))   -- else check 7 reports it
UNION ALL
-- 14. a protected table under a parent that is not protected the same way: every tenant's rows through the parent
SELECT 'critical', 'unprotected_parent', s.relid::pg_catalog.regclass::text,
       pg_catalog.format('is a partition or child of %s, which is not protected with the same label: a query on %s '
                         'reads its rows under the parent''s row-level security only, so every tenant''s rows',
                         h.inhparent::pg_catalog.regclass, h.inhparent::pg_catalog.regclass),
       pg_catalog.format('SECURITY LABEL FOR tenant_guard ON TABLE %s IS %L; or detach %s from it',
                         h.inhparent::pg_catalog.regclass, s.label, s.relid::pg_catalog.regclass)
  FROM scoped s
  JOIN pg_catalog.pg_inherits h ON h.inhrelid = s.relid
  LEFT JOIN scoped p ON p.relid = h.inhparent
 WHERE p.label IS DISTINCT FROM s.label
UNION ALL
-- 15. a child of a protected table that is not protected the same way: queried directly, it is not confined
SELECT 'critical', 'unprotected_child', h.inhrelid::pg_catalog.regclass::text,
       pg_catalog.format('is a partition or child of protected table %s but is not protected with the same label: '
                         'queried directly, it shows every tenant''s rows it holds', s.relid::pg_catalog.regclass),
       pg_catalog.format('SECURITY LABEL FOR tenant_guard ON TABLE %s IS %L', h.inhrelid::pg_catalog.regclass,
                         s.label)
  FROM scoped s
  JOIN pg_catalog.pg_inherits h ON h.inhparent = s.relid
  LEFT JOIN scoped c ON c.relid = h.inhrelid
 WHERE c.label IS DISTINCT FROM s.label
UNION ALL
-- 16. code on a protected table that runs over every tenant's rows and is not trusted with them
SELECT 'critical', 'untrusted_code', pg_catalog.format('%s on %s', u.object, s.relid::pg_catalog.regclass),
       CASE WHEN u.callee IS NULL
            THEN 'is a rule: its actions receive every row that any tenant writes, and can copy them anywhere'
            WHEN o.rolsuper OR pg_catalog.pg_has_role(o.oid, 'tenant_guard_admin', 'USAGE')
            THEN pg_catalog.format('calls %s, which can carry the rows it is given out of the tenant''s transaction '
                                   '(it changes state other sessions read, such as a sequence or a notification, '
                                   'or runs a query or a type''s input given as text)', u.callee)
            ELSE pg_catalog.format('calls %s, which is not trusted with every tenant''s rows (owned by %I, which is '
                                   'not a superuser or an administrator): it sees every tenant''s rows the table '
                                   'holds or receives', u.callee, o.rolname) END,
       CASE WHEN u.callee IS NULL THEN pg_catalog.format('drop the %s', u.object)
            WHEN o.rolsuper OR pg_catalog.pg_has_role(o.oid, 'tenant_guard_admin', 'USAGE')
            THEN pg_catalog.format('drop the %s', u.object)
            ELSE pg_catalog.format('have an administrator review and own the function (ALTER FUNCTION %s OWNER TO '
                                   '<an administrator>), or drop the %s', u.callee, u.object) END
  FROM scoped s
 CROSS JOIN LATERAL tenant._untrusted_code(s.relid) u
  LEFT JOIN pg_catalog.pg_proc f ON f.oid = u.callee_oid
  LEFT JOIN pg_catalog.pg_roles o ON o.oid = f.proowner
UNION ALL
-- 17. roles that can log in and act as the owner of a protected table
SELECT 'warning', 'owner_login_member', pg_catalog.format('%I (owner of %s)', m.rolname,
                                                          pg_catalog.string_agg(s.relid::pg_catalog.regclass::text,
                                                                                ', ' ORDER BY s.relid::pg_catalog.regclass::text)),
       pg_catalog.format('can log in and is a member of %I, which owns protected tables: it can drop them with every '
                         'tenant''s rows, add columns, plain indexes and grants (the tamper guard refuses anything '
                         'that would read other tenants'' rows)', o.rolname),
       pg_catalog.format('run migrations through it only; REVOKE %I FROM %I when it is not a deployment role, or '
                         'GRANT tenant_guard_admin to it if it is trusted with every tenant''s rows', o.rolname,
                         m.rolname)
  FROM scoped s
  JOIN roles o ON o.oid = s.owner AND NOT o.rolcanlogin AND NOT o.trusted
  JOIN pg_catalog.pg_auth_members am ON am.roleid = o.oid
  JOIN roles m ON m.oid = am.member AND m.rolcanlogin AND NOT m.trusted
 GROUP BY m.rolname, o.rolname
UNION ALL
-- 18. a token stored as a default or in a function's SET clause: readable by every role (never used since 0.2.0)
SELECT 'critical', 'stored_token',
       CASE WHEN d.setrole = 0 AND d.setdatabase <> 0 THEN pg_catalog.format('database %I', db.datname)
            WHEN d.setdatabase = 0 THEN pg_catalog.format('role %I', r.rolname)
            ELSE pg_catalog.format('role %I in database %I', r.rolname, db.datname) END,
       'stores a token in tenant_guard.token as a default: every role can read it in pg_db_role_setting and use it '
       'as that tenant (tenant_guard ignores stored tokens, but the token stays valid until it expires)',
       CASE WHEN d.setrole = 0 THEN pg_catalog.format('ALTER DATABASE %I RESET tenant_guard.token', db.datname)
            WHEN d.setdatabase = 0 THEN pg_catalog.format('ALTER ROLE %I RESET tenant_guard.token', r.rolname)
            ELSE pg_catalog.format('ALTER ROLE %I IN DATABASE %I RESET tenant_guard.token', r.rolname, db.datname)
       END || '; and revoke the token (it was readable by every role)'
  FROM pg_catalog.pg_db_role_setting d
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = d.setrole
  LEFT JOIN pg_catalog.pg_database db ON db.oid = d.setdatabase
 WHERE EXISTS (SELECT 1 FROM pg_catalog.unnest(d.setconfig) c WHERE pg_catalog.lower(c) LIKE 'tenant_guard.token=%')
UNION ALL
SELECT 'critical', 'stored_token', p.oid::pg_catalog.regprocedure::text,
       'stores a token in its SET clause: every role can read it in pg_proc and use it as that tenant (tenant_guard '
       'ignores it, but the token stays valid until it expires)',
       pg_catalog.format('ALTER FUNCTION %s RESET tenant_guard.token; and revoke the token',
                         p.oid::pg_catalog.regprocedure)
  FROM pg_catalog.pg_proc p
 WHERE EXISTS (SELECT 1 FROM pg_catalog.unnest(p.proconfig) c WHERE pg_catalog.lower(c) LIKE 'tenant_guard.token=%')
UNION ALL
-- 19. statistics over every tenant's rows readable by confined roles
SELECT 'warning', 'statistics_visible', 'tenant_guard.hide_statistics',
       'is off: roles confined by tenant_guard can read PostgreSQL''s statistics (pg_stat_user_tables, '
       'pg_stat_user_indexes, pg_stat_activity, ...), which count every tenant''s rows of protected tables and '
       'their indexes, and receive LOG messages such as plans with row estimates',
       'ALTER SYSTEM SET tenant_guard.hide_statistics = on; SELECT pg_reload_conf()'
 WHERE NOT pg_catalog.current_setting('tenant_guard.hide_statistics')::boolean
UNION ALL
SELECT 'warning', 'statistics_reader_with_data_access', pg_catalog.quote_ident(r.rolname),
       'can log in, has pg_read_all_stats (directly or through pg_monitor) and privileges on protected tables: as '
       'the application it can read counters of every tenant''s rows and every session''s statement text',
       pg_catalog.format('keep monitoring and the application apart: REVOKE pg_monitor, pg_read_all_stats FROM %I, '
                         'and monitor with a role that has no privileges on tenant tables', r.rolname)
  FROM roles r
 WHERE r.rolcanlogin AND NOT r.trusted AND NOT r.bypasses
   AND pg_catalog.pg_has_role(r.oid, 'pg_read_all_stats', 'USAGE')
   AND EXISTS (SELECT 1 FROM scoped s
                WHERE pg_catalog.has_table_privilege(r.oid, s.relid, 'SELECT, INSERT, UPDATE, DELETE'))
UNION ALL
-- 20. several issuers trusted, and some speak for every tenant that no issuer lists
SELECT 'warning', 'unscoped_issuer', i.issuer,
       pg_catalog.format('speaks for every tenant that no issuer lists, while %s issuers are trusted: the least '
                         'trusted of them can act as any such tenant', n.issuers),
       pg_catalog.format('list the tenants it may speak for: SELECT tenant.scope_issuer(%L, ARRAY[...]::uuid[])',
                         i.issuer)
  FROM (SELECT DISTINCT issuer, scoped_tenants FROM tenant.issuers) i
 CROSS JOIN (SELECT pg_catalog.count(DISTINCT issuer) AS issuers FROM tenant.issuers) n
 WHERE n.issuers > 1 AND i.scoped_tenants = 0
UNION ALL
-- 21. a master-key setting whose command line looks like it carries a credential
SELECT 'warning', 'credential_in_key_setting', c.name,
       'looks like it carries a credential (a password, token or key written into it): superusers can read it, '
       'and it reaches wherever the configuration files go (backups, configuration management)',
       'let the command read the credential from its environment or from a file readable by the server''s OS '
       'user only, and rotate the credential'
  FROM tenant._settings_with_credentials() c(name)
UNION ALL
-- 22. protected tables that point at large objects, which are not tenant-scoped
SELECT 'warning', 'large_object_column', pg_catalog.format('%I on %s', a.attname, s.relid::pg_catalog.regclass),
       pg_catalog.format('has type %s and may point at large objects: a large object is not a row of a protected '
                         'table, so any tenant that knows its oid could read it where large objects are allowed '
                         '(tenant_guard.allow_large_objects)', pg_catalog.format_type(a.atttypid, NULL)),
       'store the bytes in a bytea column of the protected table (tenant.encrypt_bytea() encrypts them per tenant)'
  FROM scoped s
  JOIN pg_catalog.pg_attribute a ON a.attrelid = s.relid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE a.atttypid = 'pg_catalog.oid'::pg_catalog.regtype OR pg_catalog.format_type(a.atttypid, NULL) = 'lo'
UNION ALL
-- 23. publications of protected tables: logical replication ignores row-level security
SELECT CASE WHEN p.rowfilter IS NULL THEN 'critical' ELSE 'warning' END, 'published_table',
       pg_catalog.format('%s in publication %I', s.relid::pg_catalog.regclass, p.pubname),
       CASE WHEN p.rowfilter IS NULL
            THEN 'is published: logical replication ignores row-level security, so every subscriber receives every '
                 'tenant''s rows'
            ELSE pg_catalog.format('is published with the row filter %s: a subscriber receives every row it selects, '
                                   'of any tenant', p.rowfilter) END,
       pg_catalog.format('ALTER PUBLICATION %I DROP TABLE %s; or publish one tenant with a row filter on %I',
                         p.pubname, s.relid::pg_catalog.regclass, s.col)
  FROM pg_catalog.pg_publication_tables p
  JOIN scoped s ON s.relid = pg_catalog.format('%I.%I', p.schemaname, p.tablename)::pg_catalog.regclass
UNION ALL
-- 24. login roles that read tenant rows without SQL: logical decoding, server files, server programs
SELECT CASE WHEN g.role IN ('pg_read_server_files', 'pg_execute_server_program') THEN 'critical' ELSE 'warning' END,
       'unconfined_login_role', pg_catalog.quote_ident(r.rolname),
       pg_catalog.format('can log in and %s', CASE g.role
           WHEN 'REPLICATION' THEN 'has REPLICATION: logical decoding streams every tenant''s rows, whatever the '
                                   'policies and publications'
           WHEN 'pg_read_server_files' THEN 'is a member of pg_read_server_files: it can read the master key file and '
                                            'every data file'
           WHEN 'pg_execute_server_program' THEN 'is a member of pg_execute_server_program: it runs programs as the '
                                                 'server''s OS user'
           ELSE 'is a member of pg_write_server_files: it can overwrite files of the server''s OS user' END),
       CASE WHEN g.role = 'REPLICATION' THEN pg_catalog.format('ALTER ROLE %I NOREPLICATION', r.rolname)
            ELSE pg_catalog.format('REVOKE %s FROM %I', g.role, r.rolname) END
  FROM roles r
 CROSS JOIN LATERAL (SELECT 'REPLICATION' AS role
                      WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles x WHERE x.oid = r.oid AND x.rolreplication)
                     UNION ALL
                     SELECT m FROM pg_catalog.unnest(ARRAY['pg_read_server_files', 'pg_write_server_files',
                                                           'pg_execute_server_program']) m
                      WHERE pg_catalog.pg_has_role(r.oid, m, 'USAGE')) g
 WHERE r.rolcanlogin AND NOT r.bypasses   -- superusers and BYPASSRLS roles: privileged_login_role
UNION ALL
-- 25. partitions and partial indexes whose row count (pg_class.reltuples, readable by every role) counts the rows of
--     one tenant, or of a set of tenants: a partition of a table partitioned by its tenant column, an index whose
--     predicate names the tenant column
SELECT 'warning', 'tenant_sized_relation', c.oid::pg_catalog.regclass::text,
       pg_catalog.format('%s: its row count in pg_class.reltuples, which every role can read, counts the rows of '
                         'the tenants it holds', CASE WHEN c.relkind = 'i'
                              THEN pg_catalog.format('is a partial index of %s whose predicate names the tenant '
                                                     'column %I', s.relid::pg_catalog.regclass, s.col)
                              ELSE pg_catalog.format('is a partition of %s, which is partitioned by the tenant '
                                                     'column %I', s.relid::pg_catalog.regclass, s.col) END),
       'partition by something other than the tenant column, or drop the tenant from the index predicate'
  FROM scoped s
  JOIN pg_catalog.pg_attribute a ON a.attrelid = s.relid AND a.attname = s.col
  JOIN pg_catalog.pg_class c ON
       (c.relkind = 'i' AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                                     WHERE i.indexrelid = c.oid AND i.indrelid = s.relid AND i.indpred IS NOT NULL
                                       AND i.indpred::text ~ (':varattno ' || a.attnum || ' ')))
    OR (c.relkind IN ('r', 'p') AND EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h
                                              JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = h.inhparent
                                             WHERE h.inhrelid = c.oid AND h.inhparent = s.relid
                                               AND a.attnum = ANY (pt.partattrs::int2[])))
UNION ALL
-- 12. a server older than its major's oldest supported minor release (MIN_SERVER_VERSION_NUM in
--     src/requirements.rs)
SELECT 'critical', 'server_version', 'server',
       pg_catalog.format('PostgreSQL %s.%s is older than %s.%s: it leaks rows hidden by row-level security through '
                         'planner statistics (CVE-2025-8713) and has other fixed RLS bugs',
                         server_version_num / 10000, server_version_num % 10000, m.min / 10000, m.min % 10000),
       pg_catalog.format('upgrade to the latest PostgreSQL %s minor release (%s.%s or later)',
                         server_version_num / 10000, m.min / 10000, m.min % 10000)
  FROM (SELECT tenant._minimum_server_version(server_version_num / 10000) AS min) m
 WHERE server_version_num < m.min
)
SELECT severity, check_name, object, detail, fix
  FROM findings
 ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, check_name, object, detail
$audit$;

COMMENT ON FUNCTION tenant._audit(integer) IS
    'tenant.audit() for a given server_version_num (internal; lets the version check be tested).';
REVOKE ALL ON FUNCTION tenant._audit(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant._settings_with_credentials() FROM PUBLIC;

CREATE FUNCTION tenant.audit()
RETURNS TABLE(severity text, check_name text, object text, detail text, fix text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    SELECT * FROM tenant._audit(pg_catalog.current_setting('server_version_num')::integer)
    UNION ALL
    SELECT * FROM tenant._audit_citus()
$$;
COMMENT ON FUNCTION tenant.audit() IS
    'Isolation linter: what the engine cannot enforce by itself (critical, warning, info), with the fix for each.';
REVOKE ALL ON FUNCTION tenant.audit() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.audit(), tenant._audit(integer), tenant._settings_with_credentials()
    TO tenant_guard_admin;
