-- tenant_guard 0.1.0 -> 0.2.0, the hand-written part: the 0.1.0 objects that 0.2.0 no longer has, or has under
-- another signature. tests/upgrade/make_script.py appends every object of 0.2.0 as its install script creates it,
-- and writes the result to sql/tenant_guard--0.1.0--0.2.0.sql (make upgrade-script). The data tables
-- (tenant.trusted_issuer, tenant.data_key) keep their rows; user tables keep their labels and policies, whose
-- expression did not change.
\echo Use "ALTER EXTENSION tenant_guard UPDATE" to load this file. \quit

-- the event trigger that labelled new tables: 0.2.0 labels them from the object-access hook
DROP EVENT TRIGGER tenant_guard_protect_new_tables;
DROP FUNCTION tenant._ddl_command_end();
DROP FUNCTION tenant._table_created(oid);

-- two invalidation triggers and their functions: 0.2.0 has one mechanism for issuers and keys
DROP TRIGGER issuers_changed ON tenant.trusted_issuer;
DROP TRIGGER keys_changed ON tenant.data_key;
DROP FUNCTION tenant._issuers_changed_trigger();
DROP FUNCTION tenant._keys_changed_trigger();
DROP FUNCTION tenant._issuers_changed(oid);
DROP FUNCTION tenant._keys_changed(oid);

-- an issuer may require its tokens to be bound to a client certificate
ALTER TABLE tenant.trusted_issuer ADD COLUMN require_cert_binding boolean NOT NULL DEFAULT false;
-- and each of its tokens to carry a jti, used in one transaction only
ALTER TABLE tenant.trusted_issuer ADD COLUMN require_jti boolean NOT NULL DEFAULT false;

-- functions whose arguments changed: trust_issuer takes the tenants an issuer may speak for; protect takes a name
DROP FUNCTION tenant.trust_issuer(text, jsonb, text, text);
DROP FUNCTION tenant._trust_issuer(text, text, text, text);
DROP FUNCTION tenant.protect(regclass, text);
