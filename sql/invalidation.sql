-- Every backend caches trusted issuers (with their scopes) and data keys: a statement trigger on each table tells
-- them all when it changes (see src/invalidation.rs). The trigger function is SECURITY DEFINER: administrators
-- write tenant.issuer_tenant directly, and may not call tenant._table_changed themselves.
CREATE FUNCTION tenant._table_changed_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM tenant._table_changed(TG_RELID);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION tenant._table_changed_trigger() IS
    'Statement trigger on tenant_guard''s cached tables: tells every backend to drop what it cached (internal).';
COMMENT ON FUNCTION tenant._table_changed(oid) IS
    'Queues the invalidation that makes every backend drop its cached issuers or keys (internal; called by the '
    'triggers only).';
REVOKE ALL ON FUNCTION tenant._table_changed_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant._table_changed(oid) FROM PUBLIC;

CREATE TRIGGER issuers_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.trusted_issuer
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER issuer_scope_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.issuer_tenant
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER keys_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.data_key
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER revoked_tokens_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.revoked_token
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER revoked_subjects_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.revoked_subject
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER suspended_tenants_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.suspended_tenant
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._table_changed_trigger();
-- The triggers fire whatever session_replication_role says: rows that a logical-replication apply worker or
-- pg_restore --disable-triggers writes must reach every backend's cache too.
ALTER TABLE tenant.trusted_issuer ENABLE ALWAYS TRIGGER issuers_changed;
ALTER TABLE tenant.issuer_tenant ENABLE ALWAYS TRIGGER issuer_scope_changed;
ALTER TABLE tenant.data_key ENABLE ALWAYS TRIGGER keys_changed;
ALTER TABLE tenant.revoked_token ENABLE ALWAYS TRIGGER revoked_tokens_changed;
ALTER TABLE tenant.revoked_subject ENABLE ALWAYS TRIGGER revoked_subjects_changed;
ALTER TABLE tenant.suspended_tenant ENABLE ALWAYS TRIGGER suspended_tenants_changed;
