-- Per-tenant statistics (src/tenant_stats.rs): counters kept in shared memory, for administrators and monitoring
-- (pg_read_all_stats, which pg_monitor includes). They hold tenant ids and counts, never tenant data; an
-- application role must not read them (they count other tenants' activity): tenant.audit() warns about a login
-- role that has pg_read_all_stats and privileges on protected tables.

CREATE VIEW tenant.stats AS
SELECT * FROM tenant.stats_tenants();
COMMENT ON VIEW tenant.stats IS
    'Per tenant since its entry was made: transactions (and of those rolled back), completed top-level statements, '
    'rows returned and written, CPU and wall-clock time of those statements in milliseconds, accepted and refused '
    'authentications, encryptions and decryptions, last activity. tenant_guard.stats_max_tenants entries; see '
    'tenant.stats_summary() for evictions.';

CREATE VIEW tenant.stats_rejections AS
SELECT * FROM tenant.stats_reasons();
COMMENT ON VIEW tenant.stats_rejections IS
    'Refused tokens and contexts by tenant and reason. A refusal is counted under a tenant only when its token was '
    'proven to be the tenant''s (its signature checked); every other refusal has tenant NULL.';

COMMENT ON FUNCTION tenant.stats_tenants() IS 'The rows of tenant.stats (for administrators and monitoring).';
COMMENT ON FUNCTION tenant.stats_reasons() IS 'The rows of tenant.stats_rejections (for administrators and monitoring).';
COMMENT ON FUNCTION tenant.stats_summary() IS
    'The statistics table: capacity (tenant_guard.stats_max_tenants), tenants in it, tenants evicted to make room and '
    'refusals under no tenant since the last full reset, whether collection is on (tenant_guard.track_tenants), and '
    'when the last full reset was.';
COMMENT ON FUNCTION tenant.stats_reset(uuid) IS
    'Forgets one tenant''s statistics, or with NULL (the default) all of them, the evictions and the refusals under '
    'no tenant. Returns how many tenant entries it removed.';

REVOKE ALL ON FUNCTION tenant.stats_tenants(), tenant.stats_reasons(), tenant.stats_summary(),
    tenant.stats_reset(uuid) FROM PUBLIC;
REVOKE ALL ON tenant.stats, tenant.stats_rejections FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.stats_tenants(), tenant.stats_reasons(), tenant.stats_summary()
    TO tenant_guard_admin, pg_read_all_stats;
GRANT SELECT ON tenant.stats, tenant.stats_rejections TO tenant_guard_admin, pg_read_all_stats;
GRANT EXECUTE ON FUNCTION tenant.stats_reset(uuid) TO tenant_guard_admin;
