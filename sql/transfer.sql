-- Moving and exporting one tenant (src/transfer.rs): for administrators. The export holds the tenant's rows and
-- its data keys wrapped as stored (never in the clear): treat it as the tenant's data. The document is built and
-- taken apart by PostgreSQL, as jsonb, around the Rust functions (_export, _import), which see its rows as text
-- only: a tenant's jsonb values may be nested deeper than Rust's JSON parser allows.
CREATE FUNCTION tenant.export(tenant uuid) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$ SELECT tenant._export(tenant)::jsonb $$;
CREATE FUNCTION tenant.import(document jsonb, tenant uuid DEFAULT NULL) RETURNS TABLE(table_name text, rows bigint)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$ SELECT * FROM tenant._import(document::text, tenant) $$;

COMMENT ON FUNCTION tenant.export(uuid) IS
    'One tenant''s rows from every protected table, its data keys (wrapped, never in the clear), and a count and '
    'checksum per table, as a document tenant.import() loads into another database with the same schema. Also the '
    'answer to a tenant''s data-export request.';
COMMENT ON FUNCTION tenant.import(jsonb, uuid) IS
    'Loads what tenant.export() produced (keys, then rows, in this database''s foreign-key order) and verifies the '
    'counts and checksums over what it wrote; any difference rolls it back. With a tenant, refuses the export of any '
    'other. One row per table. Pass the document as a bind parameter.';
COMMENT ON FUNCTION tenant.purge(uuid) IS
    'Removes the tenant''s rows from every protected table (referencing tables first), then shreds its data keys. '
    'Returns the rows removed.';
COMMENT ON FUNCTION tenant._export(uuid) IS 'tenant.export() as JSON text (internal).';
COMMENT ON FUNCTION tenant._import(text, uuid) IS 'tenant.import() of JSON text (internal).';
REVOKE ALL ON FUNCTION tenant.export(uuid), tenant.import(jsonb, uuid), tenant.purge(uuid), tenant._export(uuid),
    tenant._import(text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.export(uuid), tenant.import(jsonb, uuid), tenant.purge(uuid), tenant._export(uuid),
    tenant._import(text, uuid) TO tenant_guard_admin;
