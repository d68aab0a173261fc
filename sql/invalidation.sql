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
