-- Moving and exporting one tenant (src/transfer.rs): for administrators. The export holds the tenant's rows and
-- its data keys wrapped as stored (never in the clear): treat it as the tenant's data.
COMMENT ON FUNCTION tenant.export(uuid) IS
    'One tenant''s rows from every protected table, its data keys (wrapped, never in the clear), and a count and '
    'checksum per table, as a document tenant.import() loads into another database with the same schema. Also the '
    'answer to a tenant''s data-export request.';
COMMENT ON FUNCTION tenant.import(jsonb) IS
    'Loads what tenant.export() produced (keys, then rows, in this database''s foreign-key order) and verifies the '
    'counts and checksums over what it wrote; any difference rolls it back. One row per table.';
COMMENT ON FUNCTION tenant.purge(uuid) IS
    'Removes the tenant''s rows from every protected table (referencing tables first), then shreds its data keys. '
    'Returns the rows removed.';
REVOKE ALL ON FUNCTION tenant.export(uuid), tenant.import(jsonb), tenant.purge(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.export(uuid), tenant.import(jsonb), tenant.purge(uuid) TO tenant_guard_admin;
