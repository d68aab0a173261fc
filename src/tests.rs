//! In-database tests (`#[pg_test]`). Each runs in its own transaction, which the framework rolls back, so
//! everything here is about behaviour inside one transaction. COMMIT, session scope, several connections, connection
//! options and prepared statements across transactions are in the end-to-end suite (tests/e2e).
//!
//! The framework connects as a superuser, and superusers bypass RLS and may change every setting, so each test
//! switches to `tg_app`, a NOSUPERUSER NOBYPASSRLS role, before it checks anything.

#[pgrx::pg_schema]
mod tests {
    use crate::token::jwk::Alg;
    use crate::token::testkeys;
    use pgrx::prelude::*;
    use serde_json::{json, Value};

    const ISS: &str = "https://issuer.test";
    const AUD: &str = "tenant-api";
    const TENANT_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
    const TENANT_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
    const ALGS: [Alg; 4] = [Alg::HS256, Alg::EdDSA, Alg::ES256, Alg::RS256];

    fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }

    fn claims_for(tenant: &str) -> Value {
        json!({"iss": ISS, "aud": AUD, "sub": "alice", "tenant_id": tenant, "iat": now() - 5, "exp": now() + 300})
    }

    fn token_for(tenant: &str) -> String {
        testkeys::mint(Alg::EdDSA, "EdDSA", &claims_for(tenant))
    }

    fn with(mut c: Value, key: &str, v: Value) -> Value {
        c[key] = v;
        c
    }

    fn run(sql: &str) {
        Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs `sql` in a subtransaction and returns "SQLSTATE: message", or "00000" when it succeeds.
    fn outcome(sql: &str) -> String {
        Spi::get_one_with_args::<String>("SELECT tests.outcome($1)", &[sql.into()]).unwrap().unwrap()
    }

    fn quote(s: &str) -> String {
        pgrx::spi::quote_literal(s)
    }

    fn authenticate(token: &str) -> String {
        outcome(&format!("SELECT tenant.authenticate({})", quote(token)))
    }

    /// Registers the test issuer (one key per algorithm, kid = algorithm name) and becomes the app role.
    fn setup() {
        let keys: Vec<Value> = ALGS.iter().map(|a| testkeys::jwk_for(*a, a.as_str())).collect();
        Spi::run_with_args(
            "SELECT tenant.trust_issuer($1, $2::jsonb, $3)",
            &[ISS.into(), json!({ "keys": keys }).to_string().into(), AUD.into()],
        )
        .unwrap();
        run(r#"
            DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tg_app') THEN
                    CREATE ROLE tg_app NOSUPERUSER NOBYPASSRLS NOLOGIN;
                END IF;
            END $$;
            CREATE FUNCTION tests.outcome(q text) RETURNS text LANGUAGE plpgsql AS $f$
            BEGIN
                EXECUTE q;
                RETURN '00000';
            EXCEPTION WHEN OTHERS THEN
                RETURN SQLSTATE || ': ' || SQLERRM;
            END $f$;
            GRANT USAGE ON SCHEMA tests TO tg_app;
            GRANT EXECUTE ON FUNCTION tests.outcome(text) TO tg_app;
            SET ROLE tg_app;
        "#);
        assert_eq!(
            one::<bool>("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"),
            Some(false)
        );
    }

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
        assert_eq!(
            got,
            "42501: must be superuser or have privileges of pg_read_all_settings to examine \"tenant_guard.token\""
        );
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
            SET LOCAL force_parallel_mode = on;
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

    // -----------------------------------------------------------------------------------------------------------
    // Encryption. The master key comes from the stand-in key command in pg_test::postgresql_conf_options. Each test
    // is one transaction, so it uses one tenant (the other-tenant cases are in tests/e2e/test_encryption.py).

    /// As a superuser for one statement (admin API), then back to the app role.
    fn as_admin<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
        run("RESET ROLE");
        let got = one::<T>(sql);
        run("SET ROLE tg_app");
        got
    }

    fn authenticate_a() {
        assert_eq!(authenticate(&token_for(TENANT_A)), "00000");
    }

    #[pg_test]
    fn encryption_round_trips_text_and_bytea_up_to_a_megabyte() {
        setup();
        authenticate_a();
        for len in [0usize, 1, 100, 65_536, 1 << 20] {
            let sql = format!(
                "SELECT tenant.decrypt(tenant.encrypt(repeat('é', {len}) || 'x'), NULL) = repeat('é', {len}) || 'x' \
                   AND tenant.decrypt(tenant.encrypt(repeat('z', {len}), 'app.t.c:1'), 'app.t.c:1') = repeat('z', {len}) \
                   AND octet_length(tenant.encrypt(repeat('z', {len}))) = 33 + {len}"
            );
            assert_eq!(one::<bool>(&sql), Some(true), "text, {len} bytes");
            let sql = format!(
                "SELECT tenant.decrypt_bytea(tenant.encrypt_bytea(b), 'ctx') IS NULL \
                        AND tenant.decrypt_bytea(tenant.encrypt_bytea(b, 'ctx'), 'ctx') = b \
                   FROM (SELECT decode(repeat('00ff', {len} / 2), 'hex') AS b) v"
            );
            // the first operand raises: a NULL context is not the context 'ctx'
            assert_eq!(outcome(&sql).split(':').next(), Some("XX001"), "bytea, {len} bytes");
            let sql = format!(
                "SELECT tenant.decrypt_bytea(tenant.encrypt_bytea(b, 'ctx'), 'ctx') = b \
                   FROM (SELECT decode(repeat('00ff', {len} / 2), 'hex') AS b) v"
            );
            assert_eq!(one::<bool>(&sql), Some(true), "bytea, {len} bytes");
        }
        // a fresh nonce every call: the same plaintext never gives the same ciphertext
        assert_eq!(one::<bool>("SELECT tenant.encrypt('same') <> tenant.encrypt('same')"), Some(true));
        // NULL in, NULL out
        for f in [
            "tenant.encrypt(NULL)",
            "tenant.decrypt(NULL)",
            "tenant.encrypt_bytea(NULL, 'c')",
            "tenant.decrypt_bytea(NULL)",
        ] {
            assert_eq!(one::<bool>(&format!("SELECT {f} IS NULL")), Some(true), "{f}");
        }
        // the first encryption created version 1, which the header names
        assert_eq!(one::<i64>("SELECT tenant.key_version(tenant.encrypt('x'))"), Some(1));
    }

    #[pg_test]
    fn encryption_needs_a_tenant_context() {
        setup();
        for f in [
            "tenant.encrypt('x')",
            "tenant.decrypt('\\x0100000001000000000000000000000000000000000000000000000000000000000000'::bytea)",
            "tenant.encrypt_bytea('\\x00')",
            "tenant.decrypt_bytea('\\x00')",
        ] {
            assert_eq!(outcome(&format!("SELECT {f}")), "42501: no tenant context", "{f}");
        }
    }

    #[pg_test]
    fn bad_ciphertexts_are_errors_never_garbage() {
        setup();
        authenticate_a();
        run("CREATE TEMP TABLE ct AS SELECT tenant.encrypt('the secret plaintext', 'app.p.d:42') AS c");
        assert_eq!(
            one::<String>("SELECT tenant.decrypt(c, 'app.p.d:42') FROM ct").as_deref(),
            Some("the secret plaintext")
        );
        let not_authentic = "XX001: ciphertext does not authenticate: it was altered, or belongs to another tenant or \
                             another context";
        let cases = [
            ("tenant.decrypt(c, 'app.p.d:43')", not_authentic),
            ("tenant.decrypt(c)", not_authentic),
            ("tenant.decrypt(c, '')", not_authentic),
            ("tenant.decrypt(set_byte(c, 20, get_byte(c, 20) # 1), 'app.p.d:42')", not_authentic),
            ("tenant.decrypt(set_byte(c, 8, get_byte(c, 8) # 128), 'app.p.d:42')", not_authentic),
            (
                "tenant.decrypt(set_byte(c, octet_length(c) - 1, get_byte(c, octet_length(c) - 1) # 1), 'app.p.d:42')",
                not_authentic,
            ),
            ("tenant.decrypt(substr(c, 1, octet_length(c) - 1), 'app.p.d:42')", not_authentic),
            (
                "tenant.decrypt(substr(c, 1, 32), 'app.p.d:42')",
                "22P03: ciphertext is truncated (shorter than 33 bytes)",
            ),
            ("tenant.decrypt(''::bytea)", "22P03: ciphertext is truncated (shorter than 33 bytes)"),
            ("tenant.decrypt(set_byte(c, 0, 2), 'app.p.d:42')", "22P03: ciphertext has unknown format byte 0x02"),
            ("tenant.decrypt(set_byte(c, 0, 0), 'app.p.d:42')", "22P03: ciphertext has unknown format byte 0x00"),
            (
                "tenant.decrypt(set_byte(c, 4, 7), 'app.p.d:42')",
                "22P03: ciphertext names data key version 7, which the current tenant does not have",
            ),
            ("tenant.key_version(set_byte(c, 0, 9))", "22P03: ciphertext has unknown format byte 0x09"),
        ];
        for (expr, want) in cases {
            assert_eq!(outcome(&format!("SELECT {expr} FROM ct")), want, "{expr}");
        }
        // bytes that are not text: decrypt() refuses, decrypt_bytea() returns them
        run("CREATE TEMP TABLE bin AS SELECT tenant.encrypt_bytea('\\xff00fe'::bytea) AS c");
        assert_eq!(outcome("SELECT tenant.decrypt(c) FROM bin"), "22021: decrypted value is not valid UTF-8 text");
        assert_eq!(one::<String>("SELECT tenant.decrypt_bytea(c)::text FROM bin").as_deref(), Some("\\xff00fe"));
        // no error message carried the plaintext
        let all = cases.iter().map(|(_, m)| *m).collect::<Vec<_>>().join(" ");
        assert!(!all.contains("secret plaintext"));
    }

    #[pg_test]
    fn rotation_keeps_old_data_readable_and_reencrypt_migrates() {
        setup();
        authenticate_a();
        run("CREATE TEMP TABLE ct AS SELECT tenant.encrypt('v1 data', 'ctx') AS c");
        assert_eq!(as_admin::<i32>(&format!("SELECT tenant.create_key('{TENANT_A}')")), Some(1), "already there");
        assert_eq!(as_admin::<i32>(&format!("SELECT tenant.rotate_key('{TENANT_A}')")), Some(2));
        assert_eq!(one::<i64>("SELECT tenant.key_version(tenant.encrypt('new'))"), Some(2));
        assert_eq!(one::<String>("SELECT tenant.decrypt(c, 'ctx') FROM ct").as_deref(), Some("v1 data"));
        assert_eq!(as_admin::<i32>(&format!("SELECT tenant.rotate_key('{TENANT_A}')")), Some(3));
        // reencrypt is an admin function: the admin migrates in the tenant's context
        assert_eq!(outcome("SELECT tenant.reencrypt(c, 'ctx') FROM ct").split(':').next(), Some("42501"));
        run("RESET ROLE");
        run("UPDATE ct SET c = tenant.reencrypt(c, 'ctx')");
        assert_eq!(one::<i64>("SELECT tenant.key_version(c) FROM ct"), Some(3));
        assert_eq!(one::<String>("SELECT tenant.decrypt(c, 'ctx') FROM ct").as_deref(), Some("v1 data"));
        assert_eq!(outcome("SELECT tenant.reencrypt(c, 'other') FROM ct").split(':').next(), Some("XX001"));
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(version || ':' || state || ':' || (kek_id ~ '^[0-9a-f]{{16}}$') || ':' \
                        || (retired_at IS NOT NULL), ',' ORDER BY version) FROM tenant.keys WHERE tenant = '{TENANT_A}'"
            ))
            .as_deref(),
            Some("1:retired:true:true,2:retired:true:true,3:active:true:false")
        );
        run("SET ROLE tg_app");
    }

    #[pg_test]
    fn shredding_destroys_every_version_for_good() {
        setup();
        authenticate_a();
        run("CREATE TEMP TABLE ct AS SELECT tenant.encrypt('doomed') AS c");
        assert_eq!(as_admin::<i32>(&format!("SELECT tenant.rotate_key('{TENANT_A}')")), Some(2));
        assert_eq!(as_admin::<i32>(&format!("SELECT tenant.shred('{TENANT_A}')")), Some(2));
        let destroyed = "55000: keys destroyed: the data keys of the current tenant were shredded";
        assert_eq!(outcome("SELECT tenant.decrypt(c) FROM ct"), destroyed);
        assert_eq!(outcome("SELECT tenant.encrypt('new data')"), destroyed, "no new key is created");
        run("RESET ROLE");
        let admin_destroyed = format!("55000: keys destroyed: the data keys of tenant {TENANT_A} were shredded");
        assert_eq!(outcome(&format!("SELECT tenant.create_key('{TENANT_A}')")), admin_destroyed);
        assert_eq!(outcome(&format!("SELECT tenant.rotate_key('{TENANT_A}')")), admin_destroyed);
        assert_eq!(one::<i32>(&format!("SELECT tenant.shred('{TENANT_A}')")), Some(0), "idempotent");
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(version || ':' || state || ':' || (wrapped IS NULL) || ':' || (destroyed_at IS NOT NULL), \
                        ',' ORDER BY version) FROM tenant.data_key WHERE tenant = '{TENANT_A}'"
            ))
            .as_deref(),
            Some("1:destroyed:true:true,2:destroyed:true:true")
        );
        // a tenant shredded before it ever had a key gets a tombstone, and never a key
        assert_eq!(one::<i32>(&format!("SELECT tenant.shred('{TENANT_B}')")), Some(0));
        assert_eq!(
            outcome(&format!("SELECT tenant.create_key('{TENANT_B}')")),
            format!("55000: keys destroyed: the data keys of tenant {TENANT_B} were shredded")
        );
        assert_eq!(
            one::<String>(&format!(
                "SELECT state || ':' || (kek_id IS NULL) FROM tenant.keys WHERE tenant = '{TENANT_B}'"
            ))
            .as_deref(),
            Some("destroyed:true")
        );
    }

    #[pg_test]
    fn app_role_cannot_touch_keys_or_admin_functions() {
        setup();
        authenticate_a();
        assert_eq!(one::<i64>("SELECT tenant.key_version(tenant.encrypt('x'))"), Some(1));
        let denied = [
            ("SELECT * FROM tenant.data_key", "permission denied for table data_key"),
            ("SELECT * FROM tenant.keys", "permission denied for view keys"),
            ("UPDATE tenant.data_key SET wrapped = NULL", "permission denied for table data_key"),
            (&format!("SELECT tenant.create_key('{TENANT_A}')"), "permission denied for function create_key"),
            (&format!("SELECT tenant.rotate_key('{TENANT_A}')"), "permission denied for function rotate_key"),
            (&format!("SELECT tenant.shred('{TENANT_A}')"), "permission denied for function shred"),
            ("SELECT tenant.rewrap_keys()", "permission denied for function rewrap_keys"),
            ("SELECT tenant.reencrypt('\\x00')", "permission denied for function reencrypt"),
            ("SELECT tenant._table_changed(0)", "permission denied for function _table_changed"),
        ];
        for (sql, message) in denied {
            assert_eq!(outcome(sql), format!("42501: {message}"), "{sql}");
        }
        // the admin role, not superuser, may
        run("RESET ROLE");
        run("GRANT tenant_guard_admin TO tg_app");
        run("SET ROLE tg_app");
        assert_eq!(one::<i32>(&format!("SELECT tenant.rotate_key('{TENANT_A}')")), Some(2));
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.keys"), Some(2));
        assert_eq!(outcome("SELECT * FROM tenant.data_key"), "42501: permission denied for table data_key");
    }

    #[pg_test]
    fn privileged_key_reads_ignore_the_callers_search_path() {
        setup();
        run("RESET ROLE");
        run("CREATE SCHEMA evil; GRANT USAGE, CREATE ON SCHEMA evil TO tg_app");
        run("SET ROLE tg_app");
        // an app-defined uuid = uuid that would run as superuser if a privileged query resolved it
        run(r#"
            CREATE FUNCTION evil.eq(uuid, uuid) RETURNS boolean LANGUAGE sql AS
                $$ SELECT set_config('evil.ran', 'yes', false) IS NOT NULL $$;
            CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.eq);
            SET search_path = evil, pg_catalog, tenant;
        "#);
        authenticate_a();
        assert_eq!(one::<String>("SELECT decrypt(encrypt('x'))").as_deref(), Some("x"));
        assert_eq!(one::<String>("SELECT current_setting('evil.ran', true)"), None);
    }

    #[pg_test]
    fn no_key_is_created_in_a_read_only_transaction() {
        setup();
        authenticate_a();
        run("SET transaction_read_only = on");
        assert_eq!(outcome("SELECT tenant.encrypt('x')"), "25006: cannot create a data key in a read-only transaction");
    }
}
