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

-- Bring your own key: a tenant whose data keys are wrapped by its own master key, which
-- tenant_guard.tenant_kek_command returns given the tenant id and this reference (src/keys/master.rs).
CREATE TABLE tenant.key_provider (
    tenant  uuid PRIMARY KEY,
    key_ref text NOT NULL CHECK (octet_length(key_ref) BETWEEN 1 AND 512),
    set_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tenant.key_provider IS
    'Tenants with their own master key (bring your own key): the reference tenant_guard.tenant_kek_command is given. '
    'Superusers only. Use tenant.set_key_provider().';
REVOKE ALL ON tenant.key_provider FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tenant.key_provider', '');

CREATE VIEW tenant.keys AS
SELECT data_key.tenant, version, state, created_at, retired_at, destroyed_at,
       pg_catalog.encode(pg_catalog.substr(wrapped, 2, 8), 'hex') AS kek_id,
       key_ref AS key_provider
  FROM tenant.data_key LEFT JOIN tenant.key_provider ON key_provider.tenant = data_key.tenant;
COMMENT ON VIEW tenant.keys IS
    'Data key versions per tenant: state, timestamps, the id of the master key that wraps each, and the tenant''s own '
    'key reference when its own master key wraps them (NULL: the platform''s). No key material.';
REVOKE ALL ON tenant.keys FROM PUBLIC;
GRANT SELECT ON tenant.keys TO tenant_guard_admin;

REVOKE ALL ON FUNCTION tenant.create_key(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.rotate_key(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.shred(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.rewrap_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.set_key_provider(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.create_key(uuid), tenant.rotate_key(uuid), tenant.shred(uuid), tenant.rewrap_keys(),
    tenant.set_key_provider(uuid, text) TO tenant_guard_admin;
COMMENT ON FUNCTION tenant.set_key_provider(uuid, text) IS
    'Bring your own key: wraps the tenant''s data keys, in place, with its own master key, which '
    'tenant_guard.tenant_kek_command returns given the tenant id and key_ref (NULL: the platform''s master key again). '
    'Returns how many key versions it rewrapped.';
