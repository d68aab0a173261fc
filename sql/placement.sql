-- Silo, pool and hybrid behind one API (src/placement.rs): which database serves which tenant, and the one tenant a
-- silo database is bound to. Both are read with the trusted issuers by every backend, and a change reaches every
-- backend from its next statement on (the triggers in sql/invalidation.sql). Dumped with the database.
CREATE TABLE tenant.placement (
    tenant    uuid PRIMARY KEY CHECK (tenant <> '00000000-0000-0000-0000-000000000000'),
    database  text NOT NULL CHECK (octet_length(database) BETWEEN 1 AND 63),
    server    text CHECK (octet_length(server) BETWEEN 1 AND 255),
    placed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tenant.placement IS
    'Which database (on this server when server is NULL) serves which tenant. A tenant placed in another database '
    'is refused here, with an error naming that database. Readable by everyone, for routers; written with '
    'tenant.place_tenant(), tenant.unplace_tenant() and tenant.bind_database().';
REVOKE ALL ON tenant.placement FROM PUBLIC;
GRANT SELECT ON tenant.placement TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tenant.placement', '');

CREATE TABLE tenant.database_binding (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    tenant   uuid NOT NULL CHECK (tenant <> '00000000-0000-0000-0000-000000000000'),
    bound_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tenant.database_binding IS
    'The one tenant this database serves (a silo), if any: tokens for any other tenant are refused. Readable by '
    'everyone, like tenant.placement. Use tenant.bind_database() and tenant.unbind_database().';
REVOKE ALL ON tenant.database_binding FROM PUBLIC;
GRANT SELECT ON tenant.database_binding TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tenant.database_binding', '');

COMMENT ON FUNCTION tenant.place_tenant(uuid, text, text) IS
    'Places a tenant in a database (on another server when server is given): served there, refused here unless '
    'that is this database. Returns the database it was placed in before, or NULL.';
COMMENT ON FUNCTION tenant.unplace_tenant(uuid) IS
    'Forgets where a tenant is served: this database serves it again. True if it was placed.';
COMMENT ON FUNCTION tenant.bind_database(uuid) IS
    'Binds this database to one tenant (a silo): tokens for any other tenant are refused. Refused while bound to '
    'another tenant or while a protected table holds rows of another tenant.';
COMMENT ON FUNCTION tenant.unbind_database() IS 'Lifts the binding. True if the database was bound.';
COMMENT ON FUNCTION tenant.database_tenant() IS 'The tenant this database is bound to; NULL in a pool.';

REVOKE ALL ON FUNCTION tenant.place_tenant(uuid, text, text), tenant.unplace_tenant(uuid),
    tenant.bind_database(uuid), tenant.unbind_database() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.place_tenant(uuid, text, text), tenant.unplace_tenant(uuid),
    tenant.bind_database(uuid), tenant.unbind_database() TO tenant_guard_admin;
GRANT EXECUTE ON FUNCTION tenant.database_tenant() TO PUBLIC;
