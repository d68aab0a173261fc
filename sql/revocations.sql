-- What an administrator has withdrawn: single tokens (by jti), a subject's tokens issued before a time, whole
-- tenants. Every backend refuses them from its next statement on, tokens it had already verified included
-- (src/revocations.rs; the triggers in sql/invalidation.sql tell every backend). Dumped with the database.
CREATE TABLE tenant.revoked_token (
    jti        text PRIMARY KEY CHECK (octet_length(jti) BETWEEN 1 AND 1024),
    revoked_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tenant.revoked_token IS
    'Revoked tokens, by jti: refused whoever issued them. Use tenant.revoke_token(); delete a row to lift it.';
REVOKE ALL ON tenant.revoked_token FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tenant.revoked_token', '');

CREATE TABLE tenant.revoked_subject (
    issuer        text NOT NULL CHECK (octet_length(issuer) BETWEEN 1 AND 1024),
    subject       text NOT NULL CHECK (octet_length(subject) BETWEEN 1 AND 1024),
    issued_before timestamptz NOT NULL CHECK (issued_before > '-infinity' AND issued_before < 'infinity'),
    revoked_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject)
);
COMMENT ON TABLE tenant.revoked_subject IS
    'Revoked subjects: tokens of this issuer and sub issued before issued_before (or without iat) are refused. '
    'Use tenant.revoke_subject(); delete a row to lift it.';
REVOKE ALL ON tenant.revoked_subject FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tenant.revoked_subject', '');

CREATE TABLE tenant.suspended_tenant (
    tenant       uuid PRIMARY KEY,
    suspended_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tenant.suspended_tenant IS
    'Suspended tenants: no token yields them (no reads, writes or encryption). '
    'Use tenant.suspend_tenant() and tenant.resume_tenant().';
REVOKE ALL ON tenant.suspended_tenant FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tenant.suspended_tenant', '');

CREATE VIEW tenant.revocations AS
SELECT 'token'::text AS kind, NULL::text AS issuer, NULL::text AS subject, jti, NULL::uuid AS tenant,
       NULL::timestamptz AS issued_before, revoked_at AS since
  FROM tenant.revoked_token
UNION ALL
SELECT 'subject', issuer, subject, NULL, NULL, issued_before, revoked_at
  FROM tenant.revoked_subject
UNION ALL
SELECT 'tenant', NULL, NULL, NULL, tenant, NULL, suspended_at
  FROM tenant.suspended_tenant;
COMMENT ON VIEW tenant.revocations IS
    'Everything revoked or suspended: kind token (by jti), subject (issuer and sub, tokens issued before '
    'issued_before) or tenant (suspended).';
REVOKE ALL ON tenant.revocations FROM PUBLIC;

COMMENT ON FUNCTION tenant.revoke_token(text) IS
    'Revokes every token with this jti, from the next statement of every backend on. True if newly revoked.';
COMMENT ON FUNCTION tenant.revoke_subject(text, text, timestamptz) IS
    'Revokes the tokens of issuer and sub issued before issued_before (default now()), and those without iat. '
    'True if newly revoked; an existing revocation of the subject takes the new time.';
COMMENT ON FUNCTION tenant.suspend_tenant(uuid) IS
    'Suspends a tenant: no token yields it any more, from the next statement of every backend on. '
    'True if newly suspended.';
COMMENT ON FUNCTION tenant.resume_tenant(uuid) IS 'Lifts a suspension. True if the tenant was suspended.';
REVOKE ALL ON FUNCTION tenant.revoke_token(text), tenant.revoke_subject(text, text, timestamptz),
    tenant.suspend_tenant(uuid), tenant.resume_tenant(uuid) FROM PUBLIC;

-- what administrators may do with revocations
GRANT EXECUTE ON FUNCTION tenant.revoke_token(text), tenant.revoke_subject(text, text, timestamptz),
    tenant.suspend_tenant(uuid), tenant.resume_tenant(uuid) TO tenant_guard_admin;
GRANT SELECT ON tenant.revocations TO tenant_guard_admin;
GRANT SELECT, DELETE ON tenant.revoked_token, tenant.revoked_subject TO tenant_guard_admin;
