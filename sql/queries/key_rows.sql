-- The data key rows of these tenants ($1; every tenant when NULL), as the coordinator sends them to the workers.
SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(k)), '[]'::pg_catalog.jsonb)
  FROM tenant.data_key k
 WHERE $1::pg_catalog.uuid[] IS NULL OR k.tenant OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.uuid[])
