//! What the in-database tests share: the test issuer and its tokens, the app role, and helpers that run SQL and
//! report its outcome as "SQLSTATE: message".

pub(super) use crate::token::jwk::Alg;
pub(super) use crate::token::testkeys;
pub(super) use pgrx::prelude::*;
pub(super) use serde_json::{json, Value};

pub(super) const ISS: &str = "https://issuer.test";
pub(super) const AUD: &str = "tenant-api";
pub(super) const TENANT_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
pub(super) const TENANT_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
pub(super) const ALGS: [Alg; 4] = [Alg::HS256, Alg::EdDSA, Alg::ES256, Alg::RS256];

pub(super) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

pub(super) fn claims_for(tenant: &str) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "alice", "tenant_id": tenant, "iat": now() - 5, "exp": now() + 300})
}

pub(super) fn token_for(tenant: &str) -> String {
    testkeys::mint(Alg::EdDSA, "EdDSA", &claims_for(tenant))
}

pub(super) fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

pub(super) fn run(sql: &str) {
    Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

pub(super) fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
    Spi::get_one::<T>(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs `sql` in a subtransaction and returns "SQLSTATE: message", or "00000" when it succeeds.
pub(super) fn outcome(sql: &str) -> String {
    Spi::get_one_with_args::<String>("SELECT tests.outcome($1)", &[sql.into()]).unwrap().unwrap()
}

pub(super) fn quote(s: &str) -> String {
    pgrx::spi::quote_literal(s)
}

pub(super) fn authenticate(token: &str) -> String {
    outcome(&format!("SELECT tenant.authenticate({})", quote(token)))
}

/// Registers the test issuer (one key per algorithm, kid = algorithm name) and becomes the app role.
pub(super) fn setup() {
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
    assert_eq!(one::<bool>("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"), Some(false));
}

/// As a superuser for one statement (admin API), then back to the app role.
pub(super) fn as_admin<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
    run("RESET ROLE");
    let got = one::<T>(sql);
    run("SET ROLE tg_app");
    got
}

pub(super) fn authenticate_a() {
    assert_eq!(authenticate(&token_for(TENANT_A)), "00000");
}

/// A role that owns a table without being a superuser or an administrator (`tg_owner`), its schema `shop` and its
/// table `shop.orders` (two rows of tenant A, three of tenant B), readable and writable by `tg_app`. Runs as the
/// superuser and leaves the role reset.
pub(super) fn owned_table() {
    run("RESET ROLE");
    run(&format!(
        r#"
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tg_owner') THEN
                CREATE ROLE tg_owner NOSUPERUSER NOBYPASSRLS NOLOGIN;
            END IF;
        END $$;
        CREATE SCHEMA shop AUTHORIZATION tg_owner;
        GRANT USAGE ON SCHEMA shop TO tg_app;
        GRANT USAGE ON SCHEMA tests TO tg_owner;
        GRANT EXECUTE ON FUNCTION tests.outcome(text) TO tg_owner;
        SET ROLE tg_owner;
        CREATE TABLE shop.orders (id int, tenant_id uuid, note text, PRIMARY KEY (tenant_id, id));
        INSERT INTO shop.orders VALUES (1, '{TENANT_A}', 'a1'), (2, '{TENANT_A}', 'a2'),
                                       (3, '{TENANT_B}', 'b1'), (4, '{TENANT_B}', 'b2'), (5, '{TENANT_B}', 'b3');
        GRANT SELECT, INSERT, UPDATE, DELETE ON shop.orders TO tg_app;
        RESET ROLE;
        "#
    ));
}

/// Runs `sql` as `role`, then goes back to the superuser.
pub(super) fn outcome_as(role: &str, sql: &str) -> String {
    run(&format!("SET ROLE {role}"));
    let got = outcome(sql);
    run("RESET ROLE");
    got
}
