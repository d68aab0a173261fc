//! The tenant context: tokens, scopes, sealing, parallel workers, issuers.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::support::*;

    #[pg_test]
    fn authenticate_sets_the_tenant_and_verified_claims() {
        setup();
        for alg in ALGS {
            let token = testkeys::mint(alg, alg.as_str(), &claims_for(TENANT_A));
            let got =
                Spi::get_one_with_args::<String>("SELECT tenant.authenticate($1)::text", &[token.as_str().into()]);
            assert_eq!(got.unwrap().as_deref(), Some(TENANT_A), "{alg}");
        }
        assert_eq!(one::<String>("SELECT tenant.current_id()::text").as_deref(), Some(TENANT_A));
        assert_eq!(one::<String>("SELECT tenant.subject()").as_deref(), Some("alice"));
        assert_eq!(one::<String>("SELECT tenant.claim('aud')").as_deref(), Some(AUD));
        assert_eq!(one::<bool>("SELECT tenant.claim('exp') ~ '^[0-9]+$'"), Some(true));
        assert_eq!(one::<String>("SELECT tenant.claim('no_such_claim')"), None);
        assert_eq!(one::<String>("SELECT tenant.claims() ->> 'tenant_id'").as_deref(), Some(TENANT_A));
        assert_eq!(one::<String>("SELECT tenant.claims() ->> 'iss'").as_deref(), Some(ISS));
    }

    #[pg_test]
    fn no_context_is_42501_everywhere() {
        setup();
        for f in ["tenant.current_id()", "tenant.claims()", "tenant.claim('sub')", "tenant.subject()"] {
            assert_eq!(outcome(&format!("SELECT {f}")), "42501: no tenant context", "{f}");
        }
    }

    #[pg_test]
    fn every_rejection_is_28000_naming_the_check_and_sets_no_context() {
        setup();
        let a = claims_for(TENANT_A);
        let hs = |c: &Value| testkeys::mint(Alg::HS256, "HS256", c);
        let header = |h: Value| testkeys::mint_raw(Alg::HS256, &h.to_string(), &a.to_string());
        let es = testkeys::mint(Alg::ES256, "ES256", &a);
        let es_input = es.rsplit_once('.').unwrap().0.to_owned();
        let es_raw = crate::token::b64url::decode(es.rsplit_once('.').unwrap().1.as_bytes()).unwrap();
        let es_der = testkeys::es256_signature_as_der(&es_raw);
        let hs_good = hs(&a);
        let (hs_input, hs_sig) = hs_good.rsplit_once('.').unwrap();

        let cases: Vec<(String, &str)> = vec![
            (hs(&with(a.clone(), "exp", json!(now() - 3600))), "token has expired"),
            (hs(&with(a.clone(), "nbf", json!(now() + 3600))), "token is not valid yet (nbf is in the future)"),
            (hs(&with(a.clone(), "iat", json!(now() + 3600))), "token was issued in the future (iat)"),
            (
                hs(&with(with(a.clone(), "iat", json!(now())), "exp", json!(now() + 7200))),
                "token lifetime exceeds tenant_guard.max_token_lifetime",
            ),
            (
                hs(&a
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| *k != "exp")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()),
                "token has no exp claim",
            ),
            (format!("{hs_input}.{}", crate::token::b64url::encode(&[0u8; 32])), "token signature does not verify"),
            (format!("{hs_input}."), "token signature does not verify"),
            (
                hs(&with(a.clone(), "iss", json!("https://other.test"))),
                "token issuer is not trusted (see tenant.issuers)",
            ),
            (
                testkeys::mint(Alg::HS256, "retired", &a),
                "token kid does not name a key of its issuer (see tenant.issuers)",
            ),
            (hs(&with(a.clone(), "aud", json!("other-api"))), "token audience does not match its issuer's audience"),
            (
                hs(&a
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| *k != "aud")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()),
                "token has no aud claim, but its issuer requires an audience",
            ),
            (header(json!({"alg": "none", "kid": "HS256"})), "token algorithm \"none\" is never accepted"),
            (
                testkeys::mint(Alg::HS256, "RS256", &a),
                "token algorithm does not match its key, which is bound to RS256",
            ),
            ("not-a-token".into(), "token is not a compact JWS (three base64url parts separated by dots)"),
            (format!("{}.{}", hs_input, &hs_sig[..8]), "token signature does not verify"),
            ("a".repeat(8193), "token is longer than 8192 bytes"),
            (
                header(json!({"alg": "HS256", "kid": "HS256", "crit": ["b64"]})),
                "token header has a crit parameter; tenant_guard understands no critical extensions",
            ),
            (
                header(json!({"alg": "HS256", "kid": "HS256", "jku": "https://evil.test/k"})),
                "token header parameter \"jku\" is not accepted: keys come only from tenant.trust_issuer",
            ),
            (
                header(json!({"alg": "HS256", "kid": "HS256", "x5u": "https://evil.test/c"})),
                "token header parameter \"x5u\" is not accepted: keys come only from tenant.trust_issuer",
            ),
            (
                header(json!({"alg": "HS256", "kid": "HS256", "jwk": {"kty": "oct"}})),
                "token header parameter \"jwk\" is not accepted: keys come only from tenant.trust_issuer",
            ),
            (
                header(json!({"alg": "HS256", "kid": "HS256", "x5c": ["MII"]})),
                "token header parameter \"x5c\" is not accepted: keys come only from tenant.trust_issuer",
            ),
            (
                testkeys::mint_raw(Alg::HS256, r#"{"alg":"HS256","kid":"HS256","kid":"HS256"}"#, &a.to_string()),
                "token header has a duplicate JSON member name",
            ),
            (format!("{hs_input}.{hs_sig}="), "token signature is not canonical base64url without padding"),
            (format!("{es_input}.{}", crate::token::b64url::encode(&[0u8; 64])), "token signature does not verify"),
            (
                format!("{es_input}.{}", crate::token::b64url::encode(&es_der)),
                "ES256 signature must be exactly 64 bytes (R||S); DER-encoded signatures are not accepted",
            ),
            (
                hs(&with(a.clone(), "tenant_id", json!("acme"))),
                "token claim \"tenant_id\" is not a uuid in canonical form (lowercase, hyphenated)",
            ),
        ];
        for (token, message) in &cases {
            assert_eq!(authenticate(token), format!("28000: token rejected: {message}"));
            assert_eq!(outcome("SELECT tenant.current_id()"), "42501: no tenant context", "after: {message}");
        }
        // the error never carries the token
        let msg = authenticate(&cases[0].0);
        for part in cases[0].0.split('.') {
            assert!(!msg.contains(part));
        }
    }

    #[pg_test]
    fn transaction_is_sealed_to_one_tenant() {
        setup();
        let a = token_for(TENANT_A);
        let b = token_for(TENANT_B);
        assert_eq!(authenticate(&a), "00000");
        let sealed = "28000: tenant context is sealed: this transaction already belongs to another tenant";
        assert_eq!(authenticate(&b), sealed);
        // a refreshed token for the same tenant is fine
        let refreshed = testkeys::mint(Alg::ES256, "ES256", &with(claims_for(TENANT_A), "sub", json!("alice-2")));
        assert_eq!(authenticate(&refreshed), "00000");
        assert_eq!(one::<String>("SELECT tenant.subject()").as_deref(), Some("alice-2"));
        // other ways to present B's token are sealed out too
        assert_eq!(outcome(&format!("SET LOCAL tenant_guard.token = {}", quote(&b))), "00000");
        assert_eq!(outcome("SELECT tenant.current_id()"), sealed);
        assert_eq!(outcome(&format!("DO $do$ BEGIN SET LOCAL tenant_guard.token = {}; END $do$", quote(&b))), "00000");
        assert_eq!(outcome("SELECT tenant.current_id()"), sealed);
        assert_eq!(outcome(&format!("SELECT tenant.authenticate({}, 'session')", quote(&b))), sealed);
    }

    #[pg_test]
    fn spoofing_without_a_signed_token_yields_no_tenant() {
        setup();
        // plain values in the setting
        for value in [TENANT_B, "tenant_id=bbbbbbbb", "eyJhbGciOiJub25lIn0.eyJ0ZW5hbnRfaWQiOiJiIn0.", ""] {
            run(&format!("SET LOCAL tenant_guard.token = {}", quote(value)));
            assert_eq!(outcome("SELECT tenant.current_id()"), "42501: no tenant context", "{value}");
        }
        // set_config() returns the value it set, which non-superusers may not read: it fails as a whole
        let got = outcome(&format!("SELECT set_config('tenant_guard.token', {}, true)", quote(&token_for(TENANT_B))));
        // (PostgreSQL's own message, which 16 reworded)
        let denied = if cfg!(feature = "pg15") {
            "42501: must be superuser or have privileges of pg_read_all_settings to examine \"tenant_guard.token\""
        } else {
            "42501: permission denied to examine \"tenant_guard.token\""
        };
        assert_eq!(got, denied);
        assert_eq!(outcome("SELECT tenant.current_id()"), "42501: no tenant context");
        // a forged token: B's claims signed with a key nobody trusts
        let forged = {
            let good = token_for(TENANT_B);
            let (input, _) = good.rsplit_once('.').unwrap();
            format!("{input}.{}", crate::token::b64url::encode(&[1u8; 64]))
        };
        run(&format!("SET LOCAL tenant_guard.token = {}", quote(&forged)));
        assert_eq!(outcome("SELECT tenant.current_id()"), "42501: no tenant context");
        run("RESET tenant_guard.token");
        // DO blocks and definer-style tricks go through the same setting
        assert_eq!(outcome(&format!("DO $do$ BEGIN SET tenant_guard.token = {}; END $do$", quote(&forged))), "00000");
        assert_eq!(outcome("SELECT tenant.current_id()"), "42501: no tenant context");
        // settings that decide validity are superuser-only
        for setting in ["clock_skew = 300", "max_token_lifetime = 604800", "tenant_claim = 'sub'"] {
            let got = outcome(&format!("SET tenant_guard.{setting}"));
            assert!(got.starts_with("42501: permission denied to set parameter"), "{setting}: {got}");
        }
        assert!(outcome("SELECT set_config('tenant_guard.clock_skew', '300', true)").starts_with("42501: "));
        assert!(
            outcome("SET tenant_guard.no_such_setting = 1").starts_with("42602: invalid configuration parameter name")
        );
        // the token cannot be read back
        assert!(outcome("SHOW tenant_guard.token").starts_with("42501: "));
        assert!(outcome("SELECT current_setting('tenant_guard.token')").starts_with("42501: "));
        // the key store and the admin API are closed to the app role
        assert!(outcome("SELECT * FROM tenant.trusted_issuer").starts_with("42501: permission denied"));
        assert!(outcome("SELECT * FROM tenant.issuers").starts_with("42501: permission denied"));
        assert!(outcome("INSERT INTO tenant.trusted_issuer(issuer, jwks) VALUES ('x', '{}')").starts_with("42501: "));
        assert!(outcome("SELECT tenant.trust_issuer('https://evil.test', '{\"keys\":[]}')")
            .starts_with("42501: permission denied"));
        assert!(outcome("SELECT tenant.untrust_issuer('https://issuer.test')").starts_with("42501: permission denied"));
        assert!(outcome("SELECT tenant._table_changed(0)").starts_with("42501: permission denied"));
    }

    #[pg_test]
    fn set_role_and_definer_code_keep_the_verified_tenant() {
        setup();
        run("RESET ROLE");
        run(r#"
            DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tg_other') THEN
                    CREATE ROLE tg_other NOSUPERUSER NOBYPASSRLS NOLOGIN;
                END IF;
            END $$;
            GRANT tg_other TO tg_app;
            CREATE FUNCTION tests.definer_tenant() RETURNS uuid LANGUAGE sql SECURITY DEFINER
                SET search_path = pg_catalog AS $$ SELECT tenant.current_id() $$;
            GRANT EXECUTE ON FUNCTION tests.definer_tenant() TO tg_app;
            SET ROLE tg_app;
        "#);
        assert_eq!(authenticate(&token_for(TENANT_A)), "00000");
        run("SET ROLE tg_other");
        assert_eq!(one::<String>("SELECT tenant.current_id()::text").as_deref(), Some(TENANT_A));
        run("SET ROLE tg_app");
        assert_eq!(one::<String>("SELECT tests.definer_tenant()::text").as_deref(), Some(TENANT_A));
    }

    #[pg_test]
    fn savepoint_rollback_undoes_the_context() {
        setup();
        // a plpgsql exception block is a savepoint: ROLLBACK TO SAVEPOINT undoes SET LOCAL
        let token = token_for(TENANT_A);
        let got = outcome(&format!(
            "DO $$ BEGIN PERFORM tenant.authenticate({}); RAISE EXCEPTION 'roll back'; END $$",
            quote(&token)
        ));
        assert_eq!(got, "P0001: roll back");
        assert_eq!(outcome("SELECT tenant.current_id()"), "42501: no tenant context");
        // the seal outlives the savepoint: this transaction already saw tenant A
        assert_eq!(
            authenticate(&token_for(TENANT_B)),
            "28000: tenant context is sealed: this transaction already belongs to another tenant"
        );
        assert_eq!(authenticate(&token), "00000");
        assert_eq!(one::<String>("SELECT tenant.current_id()::text").as_deref(), Some(TENANT_A));
    }

    #[pg_test]
    fn parallel_workers_see_the_same_tenant() {
        setup();
        run("RESET ROLE");
        run(r#"
            CREATE TABLE tests.rows AS
                SELECT g AS id, CASE WHEN g % 4 = 0 THEN 'aaaaaaaa-0000-4000-8000-00000000000a'::uuid
                                     ELSE 'bbbbbbbb-0000-4000-8000-00000000000b'::uuid END AS tenant_id
                  FROM generate_series(1, 20000) g;
            ANALYZE tests.rows;
            GRANT SELECT ON tests.rows TO tg_app;
            SET ROLE tg_app;
            SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                                   THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END, 'on', true);
            SET LOCAL parallel_setup_cost = 0;
            SET LOCAL parallel_tuple_cost = 0;
            SET LOCAL min_parallel_table_scan_size = 0;
            SET LOCAL max_parallel_workers_per_gather = 2;
            SET LOCAL parallel_leader_participation = off;
        "#);
        assert_eq!(authenticate(&token_for(TENANT_A)), "00000");
        // With the leader not participating, the filter (and tenant.current_id()) runs only in the workers.
        let plan = one::<pgrx::Json>(
            "EXPLAIN (ANALYZE, COSTS OFF, FORMAT JSON) SELECT count(*) FROM tests.rows WHERE tenant_id = tenant.current_id()",
        )
        .unwrap()
        .0;
        let text = plan.to_string();
        assert!(text.contains("\"Workers Launched\":2") || text.contains("\"Workers Launched\": 2"), "{text}");
        assert_eq!(one::<i64>("SELECT count(*) FROM tests.rows WHERE tenant_id = tenant.current_id()"), Some(5000));
        assert_eq!(
            one::<String>("SELECT string_agg(DISTINCT tenant.current_id()::text, ',') FROM tests.rows").as_deref(),
            Some(TENANT_A)
        );
    }

    #[pg_test]
    fn key_removal_takes_effect_at_once() {
        setup();
        let token = token_for(TENANT_A);
        assert_eq!(authenticate(&token), "00000");
        run("RESET ROLE");
        // rotate: keep every key but EdDSA, the one the token is signed with
        let keys: Vec<Value> =
            [Alg::HS256, Alg::ES256, Alg::RS256].iter().map(|a| testkeys::jwk_for(*a, a.as_str())).collect();
        Spi::run_with_args(
            "SELECT tenant.trust_issuer($1, $2::jsonb, $3)",
            &[ISS.into(), json!({ "keys": keys }).to_string().into(), AUD.into()],
        )
        .unwrap();
        run("SET ROLE tg_app");
        assert_eq!(outcome("SELECT tenant.current_id()"), "42501: no tenant context");
        assert_eq!(
            authenticate(&token),
            "28000: token rejected: token kid does not name a key of its issuer (see tenant.issuers)"
        );
        run("RESET ROLE");
        assert_eq!(one::<bool>("SELECT tenant.untrust_issuer('https://issuer.test')"), Some(true));
        assert_eq!(one::<bool>("SELECT tenant.untrust_issuer('https://issuer.test')"), Some(false));
        run("SET ROLE tg_app");
        assert_eq!(
            authenticate(&testkeys::mint(Alg::HS256, "HS256", &claims_for(TENANT_A))),
            "28000: token rejected: token issuer is not trusted (see tenant.issuers)"
        );
    }

    #[pg_test]
    fn trust_issuer_validates_and_the_view_hides_secrets() {
        setup();
        run("RESET ROLE");
        assert_eq!(
            outcome(
                "SELECT tenant.trust_issuer('x', '{\"keys\":[{\"kty\":\"oct\",\"kid\":\"k\",\"k\":\"c2hvcnQ\"}]}')"
            ),
            "22023: invalid key set: key 1 (kid \"k\"): an HS256 secret must be at least 32 bytes"
        );
        assert_eq!(
            outcome("SELECT tenant.trust_issuer('', '{\"keys\":[]}')"),
            "22023: issuer must be between 1 and 1024 bytes long"
        );
        assert_eq!(
            outcome("SELECT tenant.trust_issuer('x', '[]')"),
            "22023: invalid key set: the key set must be a JSON object of the form {\"keys\": [...]}"
        );
        assert_eq!(
            one::<String>("SELECT string_agg(kid || ':' || alg || ':' || kty, ',' ORDER BY kid) FROM tenant.issuers")
                .as_deref(),
            Some("ES256:ES256:EC,EdDSA:EdDSA:OKP,HS256:HS256:oct,RS256:RS256:RSA")
        );
        let view = one::<String>("SELECT json_agg(i)::text FROM tenant.issuers i").unwrap();
        let secret = crate::token::b64url::encode(&testkeys::HS_SECRET);
        assert!(!view.contains(&secret));
        let hs_only = json!({"keys": [testkeys::hs256_jwk("only")]}).to_string();
        let count =
            Spi::get_one_with_args::<i32>("SELECT tenant.trust_issuer('https://b.test', $1::jsonb)", &[hs_only.into()]);
        assert_eq!(count.unwrap(), Some(1));
    }

    #[pg_test]
    fn null_and_bad_arguments_are_clear_errors() {
        setup();
        assert_eq!(
            outcome(&format!("SELECT tenant.authenticate({}, 'forever')", quote(&token_for(TENANT_A)))),
            "22023: scope must be 'transaction' or 'session'"
        );
        assert_eq!(
            outcome(&format!("SELECT tenant.authenticate({}, NULL)", quote(&token_for(TENANT_A)))),
            "22023: scope must be 'transaction' or 'session'"
        );
        assert_eq!(outcome("SELECT tenant.authenticate(NULL)"), "28000: token rejected: token is empty");
        assert_eq!(outcome("SELECT tenant.authenticate(NULL, 'session')"), "28000: token rejected: token is empty");
        assert_eq!(outcome("SELECT tenant.authenticate('')"), "28000: token rejected: token is empty");
        assert_eq!(outcome("SELECT tenant.current_id()"), "42501: no tenant context");
    }
}
