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
CREATE TRIGGER key_provider_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.key_provider
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER placement_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.placement
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER database_binding_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant.database_binding
    FOR EACH STATEMENT EXECUTE FUNCTION tenant._table_changed_trigger();
-- The triggers fire whatever session_replication_role says (a session that sets it to replica still tells every
-- backend). Only ALTER TABLE ... DISABLE TRIGGER ALL, which a superuser may run, silences them: backends then keep
-- what they cached until their next invalidation (a new backend reads the tables).
ALTER TABLE tenant.trusted_issuer ENABLE ALWAYS TRIGGER issuers_changed;
ALTER TABLE tenant.issuer_tenant ENABLE ALWAYS TRIGGER issuer_scope_changed;
ALTER TABLE tenant.data_key ENABLE ALWAYS TRIGGER keys_changed;
ALTER TABLE tenant.revoked_token ENABLE ALWAYS TRIGGER revoked_tokens_changed;
ALTER TABLE tenant.revoked_subject ENABLE ALWAYS TRIGGER revoked_subjects_changed;
ALTER TABLE tenant.suspended_tenant ENABLE ALWAYS TRIGGER suspended_tenants_changed;
ALTER TABLE tenant.key_provider ENABLE ALWAYS TRIGGER key_provider_changed;
ALTER TABLE tenant.placement ENABLE ALWAYS TRIGGER placement_changed;
ALTER TABLE tenant.database_binding ENABLE ALWAYS TRIGGER database_binding_changed;

-- A logical-replication apply worker fires no statement triggers, only row triggers enabled for replica: these tell
-- every backend of a subscriber about the rows it applies (elsewhere the statement triggers above do).
CREATE TRIGGER issuers_replicated
    AFTER INSERT OR UPDATE OR DELETE ON tenant.trusted_issuer
    FOR EACH ROW EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER issuer_scope_replicated
    AFTER INSERT OR UPDATE OR DELETE ON tenant.issuer_tenant
    FOR EACH ROW EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER keys_replicated
    AFTER INSERT OR UPDATE OR DELETE ON tenant.data_key
    FOR EACH ROW EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER revoked_tokens_replicated
    AFTER INSERT OR UPDATE OR DELETE ON tenant.revoked_token
    FOR EACH ROW EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER revoked_subjects_replicated
    AFTER INSERT OR UPDATE OR DELETE ON tenant.revoked_subject
    FOR EACH ROW EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER suspended_tenants_replicated
    AFTER INSERT OR UPDATE OR DELETE ON tenant.suspended_tenant
    FOR EACH ROW EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER key_provider_replicated
    AFTER INSERT OR UPDATE OR DELETE ON tenant.key_provider
    FOR EACH ROW EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER placement_replicated
    AFTER INSERT OR UPDATE OR DELETE ON tenant.placement
    FOR EACH ROW EXECUTE FUNCTION tenant._table_changed_trigger();
CREATE TRIGGER database_binding_replicated
    AFTER INSERT OR UPDATE OR DELETE ON tenant.database_binding
    FOR EACH ROW EXECUTE FUNCTION tenant._table_changed_trigger();
ALTER TABLE tenant.trusted_issuer ENABLE REPLICA TRIGGER issuers_replicated;
ALTER TABLE tenant.issuer_tenant ENABLE REPLICA TRIGGER issuer_scope_replicated;
ALTER TABLE tenant.data_key ENABLE REPLICA TRIGGER keys_replicated;
ALTER TABLE tenant.revoked_token ENABLE REPLICA TRIGGER revoked_tokens_replicated;
ALTER TABLE tenant.revoked_subject ENABLE REPLICA TRIGGER revoked_subjects_replicated;
ALTER TABLE tenant.suspended_tenant ENABLE REPLICA TRIGGER suspended_tenants_replicated;
ALTER TABLE tenant.key_provider ENABLE REPLICA TRIGGER key_provider_replicated;
ALTER TABLE tenant.placement ENABLE REPLICA TRIGGER placement_replicated;
ALTER TABLE tenant.database_binding ENABLE REPLICA TRIGGER database_binding_replicated;
