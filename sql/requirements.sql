-- What tenant_guard needs of the database it is created in (see src/requirements.rs); checked, then dropped.
SELECT tenant._require_utf8_database();
DROP FUNCTION tenant._require_utf8_database();
