-- The trusted issuers, their tenants and the revocations, as the coordinator sends them to the workers.
SELECT pg_catalog.jsonb_build_object(
         'issuers', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(i)) FROM tenant.trusted_issuer i),
                             '[]'::pg_catalog.jsonb),
         'tenants', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(t)) FROM tenant.issuer_tenant t),
                             '[]'::pg_catalog.jsonb),
         'revoked_tokens', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r)) FROM tenant.revoked_token r),
                                    '[]'::pg_catalog.jsonb),
         'revoked_subjects', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r))
                                         FROM tenant.revoked_subject r), '[]'::pg_catalog.jsonb),
         'suspended_tenants', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(s))
                                          FROM tenant.suspended_tenant s), '[]'::pg_catalog.jsonb))
