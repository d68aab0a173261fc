-- The trusted issuers and their tenants, as the coordinator sends them to the workers.
SELECT pg_catalog.jsonb_build_object(
         'issuers', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(i)) FROM tenant.trusted_issuer i),
                             '[]'::pg_catalog.jsonb),
         'tenants', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(t)) FROM tenant.issuer_tenant t),
                             '[]'::pg_catalog.jsonb))
