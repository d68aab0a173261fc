CREATE TABLE tenant.data_key (
    tenant       uuid NOT NULL,
    version      integer NOT NULL CHECK (version >= 1),
    state        text NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
    wrapped      bytea CHECK (octet_length(wrapped) = 69),
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,
    destroyed_at timestamptz,
    PRIMARY KEY (tenant, version),
    CHECK ((state = 'destroyed') = (wrapped IS NULL))
);
CREATE UNIQUE INDEX data_key_one_active ON tenant.data_key (tenant) WHERE state = 'active';
COMMENT ON TABLE tenant.data_key IS
    'Per-tenant data keys, wrapped by the master key. Superusers only. Use tenant.create_key(), rotate_key(), shred().';
REVOKE ALL ON tenant.data_key FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tenant.data_key', '');

CREATE VIEW tenant.keys AS
SELECT tenant, version, state, created_at, retired_at, destroyed_at,
       pg_catalog.encode(pg_catalog.substr(wrapped, 2, 8), 'hex') AS kek_id
  FROM tenant.data_key;
COMMENT ON VIEW tenant.keys IS
    'Data key versions per tenant: state, timestamps, and the id of the master key that wraps each. No key material.';
REVOKE ALL ON tenant.keys FROM PUBLIC;
GRANT SELECT ON tenant.keys TO tenant_guard_admin;

REVOKE ALL ON FUNCTION tenant.create_key(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.rotate_key(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.shred(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.rewrap_keys() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.create_key(uuid), tenant.rotate_key(uuid), tenant.shred(uuid), tenant.rewrap_keys()
    TO tenant_guard_admin;
