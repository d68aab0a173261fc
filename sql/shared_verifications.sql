-- The verification cache shared by every backend (src/shared_verifications.rs): its counters, for administrators.
COMMENT ON FUNCTION tenant.verification_cache_stats() IS
    'The shared verification cache: capacity (tenant_guard.verification_cache_size), unexpired entries, signatures '
    'checked since server start, signatures skipped because another backend had checked them, and of those the '
    'verifications skipped altogether because another backend had reached a verdict on the same view of the issuers.';
REVOKE ALL ON FUNCTION tenant.verification_cache_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.verification_cache_stats() TO tenant_guard_admin;
