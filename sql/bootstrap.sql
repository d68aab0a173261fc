-- The schema every tenant_guard object lives in.
COMMENT ON SCHEMA tenant IS 'tenant_guard: signed tenant context, automatic row-level security, per-tenant encryption';
GRANT USAGE ON SCHEMA tenant TO PUBLIC;
