-- Key-set discovery (src/discovery): the functions are SECURITY DEFINER Rust functions; administrators only.
COMMENT ON FUNCTION tenant.trust_issuer_discovery(text, text, text, uuid[], boolean, boolean, text[]) IS
    'Registers an issuer whose key set tenant_guard fetches over HTTPS from its OpenID configuration and keeps '
    'fresh in a background worker; returns at once (tenant.issuers shows each fetch). allowed_hosts: other hosts '
    '(host or host:port) its jwks_uri may be on.';
COMMENT ON FUNCTION tenant.refresh_issuer(text) IS
    'Asks the discovery worker to fetch a discovered issuer''s key set now; returns at once.';
REVOKE ALL ON FUNCTION tenant.trust_issuer_discovery(text, text, text, uuid[], boolean, boolean, text[]),
    tenant.refresh_issuer(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.trust_issuer_discovery(text, text, text, uuid[], boolean, boolean, text[]),
    tenant.refresh_issuer(text) TO tenant_guard_admin;
