CREATE TABLE tenant.trusted_issuer (
    issuer       text PRIMARY KEY CHECK (octet_length(issuer) BETWEEN 1 AND 1024),
    jwks         jsonb NOT NULL,
    audience     text,
    tenant_claim text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    require_cert_binding boolean NOT NULL DEFAULT false,
    require_jti  boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE tenant.trusted_issuer IS
    'Trusted token issuers and their key sets. Superusers only: HS256 secrets are stored here. Use tenant.trust_issuer().';
REVOKE ALL ON tenant.trusted_issuer FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tenant.trusted_issuer', '');

-- Which tenants an issuer may speak for. An issuer with rows here speaks for those tenants only, and a tenant with
-- rows here is reserved to the issuers listed for it; an issuer without rows speaks for every tenant nobody lists.
CREATE TABLE tenant.issuer_tenant (
    issuer text NOT NULL REFERENCES tenant.trusted_issuer (issuer) ON UPDATE CASCADE ON DELETE CASCADE,
    tenant uuid NOT NULL,
    PRIMARY KEY (issuer, tenant)
);
CREATE INDEX issuer_tenant_tenant ON tenant.issuer_tenant (tenant);
COMMENT ON TABLE tenant.issuer_tenant IS
    'The tenants each scoped issuer may speak for; a listed tenant is reserved to its issuers. '
    'Use tenant.trust_issuer(..., tenants => ...) or tenant.scope_issuer(), or write rows directly for many tenants.';
REVOKE ALL ON tenant.issuer_tenant FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tenant.issuer_tenant', '');
-- Issuers whose key sets the discovery worker fetches (tenant.trust_issuer_discovery), and how the last fetch went.
-- Registering keys by hand (tenant.trust_issuer) removes an issuer's row here; untrusting it removes it too.
CREATE TABLE tenant.issuer_discovery (
    issuer            text PRIMARY KEY REFERENCES tenant.trusted_issuer (issuer) ON UPDATE CASCADE ON DELETE CASCADE,
    configuration_url text NOT NULL,
    allowed_hosts     text[] NOT NULL DEFAULT '{}',
    jwks_uri          text,
    last_fetch        timestamptz,
    last_success      timestamptz,
    last_error        text,
    next_fetch        timestamptz NOT NULL DEFAULT now(),
    refresh_requested boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE tenant.issuer_discovery IS
    'Issuers whose key sets tenant_guard fetches from their OpenID configuration, and the state of those fetches. '
    'Use tenant.trust_issuer_discovery() and tenant.refresh_issuer().';
REVOKE ALL ON tenant.issuer_discovery FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tenant.issuer_discovery', '');

CREATE VIEW tenant.issuers AS
SELECT i.issuer,
       k.value ->> 'kid' AS kid,
       k.value ->> 'alg' AS alg,
       k.value ->> 'kty' AS kty,
       i.audience,
       i.tenant_claim,
       i.updated_at,
       (SELECT count(*) FROM tenant.issuer_tenant t WHERE t.issuer = i.issuer) AS scoped_tenants,
       i.require_cert_binding,
       i.require_jti,
       d.configuration_url AS discovery_url,
       d.jwks_uri,
       d.last_fetch,
       d.last_success,
       d.last_error,
       d.next_fetch
  FROM tenant.trusted_issuer i
  LEFT JOIN tenant.issuer_discovery d ON d.issuer = i.issuer
  LEFT JOIN LATERAL jsonb_array_elements(i.jwks -> 'keys') AS k(value) ON true;
COMMENT ON VIEW tenant.issuers IS
    'Trusted issuers: one row per key, without key material (a discovered issuer without keys yet: one row, kid '
    'NULL); scoped_tenants = 0 means it speaks for every tenant that no issuer lists; the discovery columns are '
    'NULL for issuers registered by hand.';
REVOKE ALL ON tenant.issuers FROM PUBLIC;

CREATE FUNCTION tenant.trust_issuer(issuer text, jwks jsonb, audience text DEFAULT NULL, tenant_claim text DEFAULT NULL,
                                    tenants uuid[] DEFAULT NULL, require_cert_binding boolean DEFAULT NULL,
                                    require_jti boolean DEFAULT NULL)
RETURNS integer LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT tenant._trust_issuer(issuer, jwks::text, audience, tenant_claim, tenants, require_cert_binding,
                                  require_jti) $$;
COMMENT ON FUNCTION tenant.trust_issuer(text, jsonb, text, text, uuid[], boolean, boolean) IS
    'Registers or replaces the key set (JWKS) of a trusted token issuer, the tenants it may speak for when '
    'tenants is not NULL, whether its tokens must be bound to a client certificate when require_cert_binding '
    'is not NULL, and whether each token must carry a jti used once when require_jti is not NULL. Returns the '
    'number of keys.';
COMMENT ON FUNCTION tenant.scope_issuer(text, uuid[]) IS
    'Replaces the tenants an issuer may speak for; NULL or empty: every tenant that no issuer lists.';
REVOKE ALL ON FUNCTION tenant._trust_issuer(text, text, text, text, uuid[], boolean, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.trust_issuer(text, jsonb, text, text, uuid[], boolean, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.untrust_issuer(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant.scope_issuer(text, uuid[]) FROM PUBLIC;

-- what administrators may do with issuers
GRANT EXECUTE ON FUNCTION tenant.trust_issuer(text, jsonb, text, text, uuid[], boolean, boolean), tenant.untrust_issuer(text),
    tenant.scope_issuer(text, uuid[]) TO tenant_guard_admin;
GRANT SELECT ON tenant.issuers TO tenant_guard_admin;
GRANT SELECT, INSERT, DELETE ON tenant.issuer_tenant TO tenant_guard_admin;
