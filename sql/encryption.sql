-- tenant.reencrypt() moves a ciphertext to the active key version: administrators only.
REVOKE ALL ON FUNCTION tenant.reencrypt(bytea, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.reencrypt(bytea, text) TO tenant_guard_admin;
