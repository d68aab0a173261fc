-- Comments on the functions defined in Rust, and what is granted on them.

COMMENT ON FUNCTION tenant.authenticate(text) IS
    'Verifies a signed token and makes its tenant the context of the current transaction. Returns the tenant.';
COMMENT ON FUNCTION tenant.authenticate(text, text) IS
    'Verifies a signed token and sets the context for the transaction or (scope ''session'', where allowed) the '
    'session. Returns the tenant.';
COMMENT ON FUNCTION tenant.current_id() IS
    'The tenant of the verified token in tenant_guard.token; 42501 without one. STABLE: evaluated at execution.';
COMMENT ON FUNCTION tenant.claims() IS 'The verified token''s claims, as jsonb; 42501 without a context.';
COMMENT ON FUNCTION tenant.claim(text) IS 'One claim of the verified token, as jsonb (NULL if absent); 42501 without a context.';
COMMENT ON FUNCTION tenant.subject() IS 'The verified token''s sub claim (NULL if absent); 42501 without a context.';
COMMENT ON FUNCTION tenant.client_certificate() IS
    'The verified client certificate of this connection: SHA-256 thumbprint (base64url, as in a token''s '
    'cnf x5t#S256), subject and issuer; NULLs without one.';
COMMENT ON FUNCTION tenant.reset() IS 'Ends the context set for the session (a transaction''s ends with it).';
COMMENT ON FUNCTION tenant.encrypt(text, text) IS
    'Encrypts text with the current tenant''s active data key (AES-256-GCM), bound to the tenant and the context.';
COMMENT ON FUNCTION tenant.decrypt(bytea, text) IS
    'Decrypts what tenant.encrypt returned for the current tenant and the same context.';
COMMENT ON FUNCTION tenant.encrypt_bytea(bytea, text) IS 'tenant.encrypt for bytea values.';
COMMENT ON FUNCTION tenant.decrypt_bytea(bytea, text) IS 'tenant.decrypt for bytea values.';
COMMENT ON FUNCTION tenant.key_version(bytea) IS
    'The data key version a ciphertext was encrypted with (read from its header; nothing is decrypted).';
COMMENT ON FUNCTION tenant.reencrypt(bytea, text) IS
    'Decrypts and encrypts again with the current tenant''s active key version (after a rotation). Administrators.';
COMMENT ON FUNCTION tenant.create_key(uuid) IS
    'Creates the tenant''s data key if it has none; returns its active version. SECURITY DEFINER: administrators.';
COMMENT ON FUNCTION tenant.rotate_key(uuid) IS
    'Adds a new active data key version for the tenant; older versions still decrypt. SECURITY DEFINER: '
    'administrators.';
COMMENT ON FUNCTION tenant.shred(uuid) IS
    'Crypto-shredding: destroys every data key version of the tenant; returns how many. SECURITY DEFINER: '
    'administrators.';
COMMENT ON FUNCTION tenant.rewrap_keys() IS
    'Rewraps every data key wrapped by the previous master key under the current one; returns how many. SECURITY '
    'DEFINER: administrators.';
COMMENT ON FUNCTION tenant.untrust_issuer(text) IS
    'Removes a trusted issuer and its keys; returns whether it existed. SECURITY DEFINER: administrators.';
COMMENT ON FUNCTION tenant._trust_issuer(text, text, text, text, uuid[], boolean, boolean) IS
    'What tenant.trust_issuer does (internal).';
COMMENT ON FUNCTION tenant._protect(oid, text) IS 'What tenant.protect does (internal).';
COMMENT ON FUNCTION tenant._label_column(text) IS
    'The tenant column a tenant_guard label names, or NULL for a label that protects nothing (internal).';
COMMENT ON FUNCTION tenant._policy_expression(text) IS
    'The managed policies'' expression for a tenant column, as pg_get_expr shows it (internal).';
COMMENT ON FUNCTION tenant._policy_expression_per_row(text) IS
    'The managed policies'' expression on Citus tables (no subquery), as pg_get_expr shows it (internal).';
COMMENT ON FUNCTION tenant._first_normal_oid() IS
    'PostgreSQL''s FirstNormalObjectId: objects below it are PostgreSQL''s own (internal).';
COMMENT ON FUNCTION tenant._written_here(xid) IS
    'Whether a transaction id is the current transaction''s or one of its subtransactions'' (internal).';
COMMENT ON FUNCTION tenant._settings_with_credentials() IS
    'The master-key settings that look like they carry a credential, by name only (internal, for the audit).';
COMMENT ON FUNCTION tenant._policy_intact(oid, name) IS
    'Whether both managed policies of a protected table are as tenant_guard made them (internal).';
COMMENT ON FUNCTION tenant._minimum_server_version(integer) IS
    'The oldest supported server_version_num of a PostgreSQL major release, NULL for one tenant_guard does not know (internal, for the audit).';
