-- Citus: what a coordinator sends its workers (see src/citus/replication.rs). Superusers only: the coordinator runs
-- them through Citus's connections, as the superuser that owns the SECURITY DEFINER admin functions.
REVOKE ALL ON FUNCTION tenant._replica_issuers(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant._replica_keys(uuid[], text) FROM PUBLIC;
COMMENT ON FUNCTION tenant._replica_issuers(text) IS
    'On a Citus worker: the trusted issuers become the coordinator''s (internal; the coordinator calls it).';
COMMENT ON FUNCTION tenant._replica_keys(uuid[], text) IS
    'On a Citus worker: the data keys of these tenants become the coordinator''s (internal; the coordinator calls it).';

-- The audit's Citus checks (run on a coordinator; nothing elsewhere): every shard of every protected Citus table is
-- under the managed policies on its node, every worker's copy of the table is protected, and every worker has the
-- coordinator's issuers and data keys. Dynamic SQL, so that it compiles where Citus is not installed. SECURITY
-- DEFINER: it compares the issuer and key tables, which only superusers read, and runs its fixed queries on the
-- workers through Citus as their owner.
CREATE FUNCTION tenant._audit_citus()
RETURNS TABLE(severity text, check_name text, object text, detail text, fix text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $audit$
DECLARE
    t record;
    r record;
    here text;
BEGIN
    IF NOT tenant._citus_coordinator() THEN
        RETURN;
    END IF;
    FOR t IN
        SELECT c.oid::pg_catalog.regclass AS rel, tenant._label_column(l.label) AS col, l.label
          FROM pg_catalog.pg_seclabel l
          JOIN pg_catalog.pg_class c ON l.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND l.objoid = c.oid
         WHERE l.provider = 'tenant_guard' AND l.objsubid = 0 AND tenant._label_column(l.label) IS NOT NULL
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = c.oid)
         ORDER BY 1
    LOOP
        -- 1. every shard placement: RLS enabled and forced, the managed policies intact (tenant_isolation restrictive)
        FOR r IN EXECUTE pg_catalog.format(
            'SELECT nodename, nodeport, shardid, success, result FROM pg_catalog.run_command_on_placements(%L, %L)',
            t.rel,
            pg_catalog.format('SELECT (c.relrowsecurity AND c.relforcerowsecurity AND tenant._policy_intact(c.oid, %1$L) '
                              '  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i '
                              '                    JOIN pg_catalog.pg_class p ON p.oid = i.inhparent '
                              '                   WHERE i.inhrelid = c.oid AND NOT (p.relrowsecurity AND p.relforcerowsecurity '
                              '                         AND tenant._policy_intact(p.oid, %1$L))))::text '
                              'FROM pg_catalog.pg_class c WHERE c.oid = %2$L::pg_catalog.regclass', t.col, '%1$s'))
        LOOP
            CONTINUE WHEN r.success AND r.result = 'true';
            severity := 'critical'; check_name := 'citus_shard_unprotected';
            object := pg_catalog.format('shard %s of %s on %s:%s', r.shardid, t.rel, r.nodename, r.nodeport);
            detail := CASE WHEN r.success
                           THEN 'the shard, or a table it inherits from, is not under tenant_guard''s policies '
                                '(row-level security enabled and forced, the restrictive tenant_isolation and the '
                                'permissive tenant_access)'
                           ELSE 'the shard could not be checked: ' || r.result END;
            fix := pg_catalog.format('on the coordinator: SECURITY LABEL FOR tenant_guard ON TABLE %s IS %L', t.rel, t.label);
            RETURN NEXT;
        END LOOP;
        -- 2. every worker's copy of the table (what queries sent to that worker plan against)
        FOR r IN EXECUTE pg_catalog.format(
            'SELECT nodename, nodeport, success, result FROM pg_catalog.run_command_on_workers(%L)',
            pg_catalog.format('SELECT COALESCE((SELECT (rls_enabled AND rls_forced AND policy_intact)::text '
                              'FROM tenant.scoped_tables WHERE table_name = %L::pg_catalog.regclass), ''unlabelled'')',
                              t.rel::text))
        LOOP
            CONTINUE WHEN r.success AND r.result = 'true';
            severity := 'critical'; check_name := 'citus_worker_table_unprotected';
            object := pg_catalog.format('%s on %s:%s', t.rel, r.nodename, r.nodeport);
            detail := CASE WHEN NOT r.success THEN 'the worker could not be checked: ' || r.result
                           WHEN r.result = 'unlabelled' THEN 'the worker''s copy of the table has no tenant_guard label'
                           ELSE 'the worker''s copy of the table is not under tenant_guard''s policies' END;
            fix := pg_catalog.format('on the coordinator: SECURITY LABEL FOR tenant_guard ON TABLE %s IS %L', t.rel, t.label);
            RETURN NEXT;
        END LOOP;
    END LOOP;
    -- 3. every worker has the coordinator's issuers and data keys
    FOR t IN SELECT * FROM (VALUES ('issuers', 'trusted issuers', 'SELECT tenant._citus_digest(''issuers'')'),
                                   ('keys', 'data keys', 'SELECT tenant._citus_digest(''keys'')')) v(what, words, query)
    LOOP
        EXECUTE t.query INTO here;
        FOR r IN EXECUTE pg_catalog.format(
            'SELECT nodename, nodeport, success, result FROM pg_catalog.run_command_on_workers(%L)', t.query)
        LOOP
            CONTINUE WHEN r.success AND r.result = here;
            severity := 'critical'; check_name := 'citus_' || t.what || '_differ';
            object := pg_catalog.format('%s:%s', r.nodename, r.nodeport);
            detail := CASE WHEN r.success THEN 'the worker''s ' || t.words || ' differ from the coordinator''s'
                           ELSE 'the worker could not be checked: ' || r.result END;
            fix := CASE t.what WHEN 'issuers' THEN 'on the coordinator: call tenant.trust_issuer() again for each issuer'
                               ELSE 'on the coordinator: SELECT tenant.create_key(tenant) for each tenant listed '
                                    'in tenant.keys (it sends the tenant''s keys to every worker)' END;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$audit$;
COMMENT ON FUNCTION tenant._audit_citus() IS
    'The Citus checks of tenant.audit(), on a coordinator (internal).';
REVOKE ALL ON FUNCTION tenant._audit_citus() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant._audit_citus() TO tenant_guard_admin;

-- A digest of the issuers with the revocations, or of the data keys (what the coordinator sends the workers, without
-- timestamps other than a revoked subject's cut), to compare
-- nodes. Superusers only; the audit calls it.
CREATE FUNCTION tenant._citus_digest(what text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.md5(COALESCE(CASE what
        WHEN 'issuers' THEN (SELECT pg_catalog.string_agg(pg_catalog.concat_ws('|', i.issuer, i.jwks::text, i.audience,
                                    i.tenant_claim, i.require_cert_binding, i.require_jti, (SELECT pg_catalog.string_agg(t.tenant::text, ',' ORDER BY t.tenant)
                                                       FROM tenant.issuer_tenant t WHERE t.issuer = i.issuer)),
                                    E'\n' ORDER BY i.issuer)
                               FROM tenant.trusted_issuer i)
                            || E'\nrevoked:' || COALESCE((SELECT pg_catalog.string_agg(r.jti, ',' ORDER BY r.jti)
                                                            FROM tenant.revoked_token r), '')
                            || E'\n' || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.concat_ws('|', r.issuer,
                                                          r.subject, r.issued_before), ',' ORDER BY r.issuer, r.subject)
                                                     FROM tenant.revoked_subject r), '')
                            || E'\nsuspended:' || COALESCE((SELECT pg_catalog.string_agg(s.tenant::text, ','
                                                                                          ORDER BY s.tenant)
                                                              FROM tenant.suspended_tenant s), '')
        WHEN 'keys' THEN (SELECT pg_catalog.string_agg(pg_catalog.concat_ws('|', k.tenant, k.version, k.state,
                                                                           pg_catalog.encode(k.wrapped, 'hex')),
                                                        E'\n' ORDER BY k.tenant, k.version)
                            FROM tenant.data_key k)
    END, ''))
$$;
COMMENT ON FUNCTION tenant._citus_digest(text) IS
    'A digest of the trusted issuers or the data keys, to compare Citus nodes (internal).';
REVOKE ALL ON FUNCTION tenant._citus_digest(text) FROM PUBLIC;
COMMENT ON FUNCTION tenant._citus_coordinator() IS
    'Whether this node is the coordinator of a Citus cluster (internal, for the audit).';

