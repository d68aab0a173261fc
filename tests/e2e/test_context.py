"""The tenant context across transactions, sessions and connections, with tokens minted by PyJWT."""

import time

import psycopg
import pytest
from conftest import ALGS, APP, AUD, ISS, NO_CONTEXT, SEALED, TENANT_A, TENANT_B, Keys, dsn, sqlstate


def current(conn):
    return conn.execute("SELECT tenant.current_id()").fetchone()[0]


def bodies(conn):
    return [r[0] for r in conn.execute("SELECT body FROM public.docs ORDER BY body")]


# --- interoperability --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ALGS)
def test_pyjwt_tokens_verify_for_every_algorithm(app, keys, alg):
    token = keys.mint(TENANT_A, alg=alg)
    with app.transaction():
        assert app.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == TENANT_A
        assert current(app) == TENANT_A
        assert app.execute("SELECT tenant.claim('sub'), tenant.subject()").fetchone() == ("user-aaaaaaaa",) * 2


@pytest.mark.parametrize("alg", ALGS)
def test_pyjwt_token_with_a_foreign_key_is_rejected(app, keys, alg):
    other = Keys()  # same kids, different keys
    assert sqlstate(app, "SELECT tenant.authenticate(%s)", (other.mint(TENANT_A, alg=alg),)) == \
        ("28000", "token rejected: token signature does not verify")


# --- isolation through a policy on tenant.current_id() -----------------------------------------------------------

def test_each_tenant_sees_only_its_rows(app, keys):
    for tenant, expected in ((TENANT_A, ["a1", "a2"]), (TENANT_B, ["b1"])):
        with app.transaction():
            app.execute("SELECT tenant.authenticate(%s)", (keys.mint(tenant),))
            assert bodies(app) == expected
    assert sqlstate(app, "SELECT * FROM public.docs") == NO_CONTEXT


# --- transaction scope -------------------------------------------------------------------------------------------

def test_context_is_cleared_at_commit(app, keys):
    app.execute("BEGIN")
    app.execute("SELECT tenant.authenticate(%s)", (keys.mint(TENANT_A),))
    assert current(app) == TENANT_A
    app.execute("COMMIT")
    # the next transaction on this (pooled) connection inherits nothing
    assert sqlstate(app, "SELECT tenant.current_id()") == NO_CONTEXT
    assert sqlstate(app, "SELECT * FROM public.docs") == NO_CONTEXT


def test_context_is_undone_by_rollback(app, keys):
    app.execute("BEGIN")
    app.execute("SELECT tenant.authenticate(%s)", (keys.mint(TENANT_A),))
    app.execute("ROLLBACK")
    assert sqlstate(app, "SELECT tenant.current_id()") == NO_CONTEXT


# A transaction block that failed ends with ROLLBACK (or COMMIT, or ROLLBACK TO a savepoint) after PostgreSQL has
# released its resources: the extension's hooks must read no catalog then (PostgreSQL 17 and later refuse it, and
# the failed statement's locks would stay held by a connection stuck in its aborted block).
ABORTED_BLOCK_ENDS = {
    "rollback": ["ROLLBACK"],
    "commit": ["COMMIT"],
    "abort": ["ABORT"],
    "savepoint": ["ROLLBACK TO SAVEPOINT s", "SELECT 1", "RELEASE SAVEPOINT s", "COMMIT"],
    "chain": ["ROLLBACK AND CHAIN", "SELECT 1", "COMMIT"],
    "prepared": ["PREPARE TRANSACTION 'tg_ctx_aborted'"],
}


@pytest.mark.parametrize("who", ["app", "admin member", "superuser"])
@pytest.mark.parametrize("end", sorted(ABORTED_BLOCK_ENDS))
def test_an_aborted_block_ends_cleanly_for_every_role(admin, keys, who, end):
    admin.execute("DROP ROLE IF EXISTS tg_ctx_admin")
    admin.execute("CREATE ROLE tg_ctx_admin LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE tenant_guard_admin")
    admin.execute("GRANT SELECT ON public.docs TO tg_ctx_admin")
    user = {"app": APP, "admin member": "tg_ctx_admin", "superuser": None}[who]
    try:
        with psycopg.connect(dsn(user=user) if user else dsn(), autocommit=True) as c:
            c.execute("BEGIN")
            c.execute("SAVEPOINT s")
            c.execute(psycopg.sql.SQL("SET LOCAL tenant_guard.token = {}").format(
                psycopg.sql.Literal(keys.mint(TENANT_A, aud="someone-else"))))
            # the table is locked, then the block fails (the app: no context, its token was rejected)
            c.execute("LOCK TABLE public.docs IN ACCESS SHARE MODE")
            failing, error = ("SELECT body FROM public.docs", psycopg.errors.InsufficientPrivilege) if who == "app" \
                else ("SELECT 1 / 0", psycopg.errors.DivisionByZero)
            with pytest.raises(error):
                c.execute(failing)
            assert c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
            for statement in ABORTED_BLOCK_ENDS[end]:
                c.execute(statement)
            assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert c.execute("SELECT 41 + 1").fetchone()[0] == 42
            # the failed block's lock is gone: the table can be locked at once
            admin.execute("SET lock_timeout = '2s'")
            with admin.transaction():
                admin.execute("LOCK TABLE public.docs IN ACCESS EXCLUSIVE MODE")
            admin.execute("RESET lock_timeout")
    finally:
        admin.execute("DROP OWNED BY tg_ctx_admin")
        admin.execute("DROP ROLE tg_ctx_admin")


def test_context_is_undone_by_rollback_to_savepoint(app, keys):
    app.execute("BEGIN")
    app.execute("SAVEPOINT s")
    app.execute("SELECT tenant.authenticate(%s)", (keys.mint(TENANT_A),))
    assert current(app) == TENANT_A
    app.execute("ROLLBACK TO SAVEPOINT s")
    assert sqlstate(app, "SELECT tenant.current_id()") == NO_CONTEXT
    app.execute("ROLLBACK TO SAVEPOINT s")
    # the seal outlives the savepoint: this transaction saw tenant A
    assert sqlstate(app, "SELECT tenant.authenticate(%s)", (keys.mint(TENANT_B),)) == SEALED
    app.execute("ROLLBACK TO SAVEPOINT s")
    assert app.execute("SELECT tenant.authenticate(%s)", (keys.mint(TENANT_A),)).fetchone()[0] == TENANT_A
    app.execute("COMMIT")


def test_authenticate_outside_a_transaction_block_lasts_one_statement(app, keys):
    assert app.execute("SELECT tenant.authenticate(%s)", (keys.mint(TENANT_A),)).fetchone()[0] == TENANT_A
    assert sqlstate(app, "SELECT tenant.current_id()") == NO_CONTEXT


def test_sealed_transaction_refuses_another_tenant_but_allows_a_refresh(app, keys):
    with app.transaction():
        app.execute("SELECT tenant.authenticate(%s)", (keys.mint(TENANT_A),))
        app.execute("SELECT tenant.authenticate(%s)", (keys.mint(TENANT_A, alg="RS256", sub="refreshed"),))
        assert app.execute("SELECT tenant.subject()").fetchone()[0] == "refreshed"
    app.execute("BEGIN")
    app.execute("SELECT tenant.authenticate(%s)", (keys.mint(TENANT_A),))
    assert sqlstate(app, "SELECT tenant.authenticate(%s)", (keys.mint(TENANT_B),)) == SEALED
    assert app.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    app.execute("ROLLBACK")
    # a new transaction may belong to B
    with app.transaction():
        assert app.execute("SELECT tenant.authenticate(%s)", (keys.mint(TENANT_B),)).fetchone()[0] == TENANT_B


# --- session scope -----------------------------------------------------------------------------------------------

def test_session_scope_lasts_until_reset(app, keys):
    app.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(TENANT_A),))
    assert current(app) == TENANT_A
    with app.transaction():
        assert bodies(app) == ["a1", "a2"]
    app.execute("SELECT tenant.reset()")
    assert sqlstate(app, "SELECT tenant.current_id()") == NO_CONTEXT


def test_session_scope_is_cleared_by_discard_all(app, keys):
    app.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(TENANT_B),))
    assert current(app) == TENANT_B
    app.execute("DISCARD ALL")
    assert sqlstate(app, "SELECT tenant.current_id()") == NO_CONTEXT


def test_session_scope_set_in_a_rolled_back_transaction_is_undone(app, keys):
    app.execute("BEGIN")
    app.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(TENANT_A),))
    app.execute("ROLLBACK")
    assert sqlstate(app, "SELECT tenant.current_id()") == NO_CONTEXT


def test_session_token_expiring_mid_session_ends_the_context(admin, keys):
    admin.execute(f"ALTER ROLE {APP} SET tenant_guard.clock_skew = 0")
    try:
        with psycopg.connect(dsn(user=APP), autocommit=True) as app:
            token = keys.mint(TENANT_A, lifetime=2)
            app.execute("SELECT tenant.authenticate(%s, 'session')", (token,))
            assert current(app) == TENANT_A
            time.sleep(3)
            try:
                app.execute("SELECT tenant.current_id()")
                raise AssertionError("expired session token still gave a tenant")
            except psycopg.Error as e:
                assert (e.sqlstate, e.diag.message_primary) == NO_CONTEXT
                assert e.diag.message_detail == "The token in tenant_guard.token was rejected: token has expired."
            assert sqlstate(app, "SELECT tenant.authenticate(%s)", (token,)) == \
                ("28000", "token rejected: token has expired")
    finally:
        admin.execute(f"ALTER ROLE {APP} RESET tenant_guard.clock_skew")


# --- the setting and connection-option paths ---------------------------------------------------------------------

def test_set_local_token_sets_the_context_for_the_transaction(app, keys):
    token = keys.mint(TENANT_B)
    with app.transaction():
        app.execute(f"SET LOCAL tenant_guard.token = '{token}'")
        assert current(app) == TENANT_B
        assert bodies(app) == ["b1"]
    assert sqlstate(app, "SELECT tenant.current_id()") == NO_CONTEXT


def test_connection_option_token_sets_the_context(database, keys):
    token = keys.mint(TENANT_A)
    with psycopg.connect(dsn(user=APP, options=f"-c tenant_guard.token={token}"), autocommit=True) as c:
        assert current(c) == TENANT_A
        with c.transaction():
            assert bodies(c) == ["a1", "a2"]


@pytest.mark.parametrize("bad", ["forged", "expired", "garbage"])
def test_connection_option_with_a_bad_token_yields_no_context(database, keys, bad):
    token = keys.mint(TENANT_A)
    if bad == "forged":
        token = Keys().mint(TENANT_B)
    elif bad == "expired":
        token = keys.mint(TENANT_A, iat=int(time.time()) - 600, exp=int(time.time()) - 300)
    else:
        token = "aaaa.bbbb.cccc"
    with psycopg.connect(dsn(user=APP, options=f"-c tenant_guard.token={token}"), autocommit=True) as c:
        assert sqlstate(c, "SELECT tenant.current_id()") == NO_CONTEXT
        assert sqlstate(c, "SELECT * FROM public.docs") == NO_CONTEXT


def test_oversized_token_in_the_setting_yields_no_context(app):
    app.execute(f"SET tenant_guard.token = '{'a' * 9000}'")
    try:
        app.execute("SELECT tenant.current_id()")
        raise AssertionError("an oversized token gave a tenant")
    except psycopg.Error as e:
        assert (e.sqlstate, e.diag.message_primary) == NO_CONTEXT
        assert e.diag.message_detail == "The token in tenant_guard.token was rejected: token is longer than 8192 bytes."
    app.execute("RESET tenant_guard.token")
    assert sqlstate(app, "SELECT tenant.authenticate(%s)", ("a" * 9000,)) == \
        ("28000", "token rejected: token is longer than 8192 bytes")


# --- spoofing from a real client ---------------------------------------------------------------------------------

def test_spoofing_attempts_never_change_the_tenant(app, keys):
    app.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(TENANT_A),))
    attempts = [
        f"SET tenant_guard.token = '{TENANT_B}'",
        "SET tenant_guard.tenant_claim = 'sub'",
        "SET tenant_guard.clock_skew = 300",
        f"ALTER ROLE {APP} SET tenant_guard.max_token_lifetime = 604800",
        f"SELECT set_config('tenant_guard.token', '{TENANT_B}', false)",
        "SELECT set_config('tenant_guard.tenant_claim', 'sub', false)",
        "UPDATE tenant.trusted_issuer SET audience = NULL",
        f"SELECT tenant.trust_issuer('{ISS}', '{{\"keys\":[]}}'::jsonb)",
    ]
    for sql in attempts:
        err = sqlstate(app, sql)
        if err is None:
            # a plain SET of the token succeeds, but stores an unsigned value: no tenant at all
            assert sql.startswith("SET tenant_guard.token"), sql
            assert sqlstate(app, "SELECT tenant.current_id()") == NO_CONTEXT
            app.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(TENANT_A),))
        else:
            assert err[0] == "42501", (sql, err)
        assert current(app) == TENANT_A, sql


def test_tokens_are_not_readable_back(app, keys):
    app.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(TENANT_A),))
    assert sqlstate(app, "SHOW tenant_guard.token")[0] == "42501"
    assert sqlstate(app, "SELECT current_setting('tenant_guard.token')")[0] == "42501"
    names = [r[0] for r in app.execute("SELECT name FROM pg_settings WHERE name LIKE 'tenant_guard.%' ORDER BY 1")]
    assert names == ["tenant_guard.admin_reach_extensions", "tenant_guard.allow_explain", "tenant_guard.allow_large_objects",
                     "tenant_guard.allow_session_scope", "tenant_guard.clock_skew",
                     "tenant_guard.hide_planner_statistics", "tenant_guard.hide_statistics",
                     "tenant_guard.max_token_lifetime", "tenant_guard.pooler_statement_prefix",
                     "tenant_guard.replay_cache_size", "tenant_guard.stats_max_tenants",
                     "tenant_guard.tenant_claim", "tenant_guard.tenant_key_cache_seconds",
                     "tenant_guard.track_tenants", "tenant_guard.verification_cache_size"]


# --- prepared statements and plan caching -------------------------------------------------------------------------

def test_prepared_statements_follow_tenant_switches(app, keys):
    app.execute("PREPARE who AS SELECT tenant.current_id()")
    app.execute("PREPARE rows_of AS SELECT string_agg(body, ',' ORDER BY body) FROM public.docs")
    app.execute("SET plan_cache_mode = force_generic_plan")
    tokens = {TENANT_A: keys.mint(TENANT_A), TENANT_B: keys.mint(TENANT_B)}
    expected = {TENANT_A: "a1,a2", TENANT_B: "b1"}
    for i in range(12):
        tenant = TENANT_A if i % 2 == 0 else TENANT_B
        with app.transaction():
            app.execute("SELECT tenant.authenticate(%s)", (tokens[tenant],))
            assert app.execute("EXECUTE who").fetchone()[0] == tenant
            assert app.execute("EXECUTE rows_of").fetchone()[0] == expected[tenant]
            # and the driver's own server-side prepared statement
            got = app.execute("SELECT count(*) FROM public.docs WHERE body <> %s", ("x",), prepare=True).fetchone()
            assert got[0] == len(expected[tenant].split(","))
    assert sqlstate(app, "EXECUTE rows_of") == NO_CONTEXT


# --- key rotation across backends ---------------------------------------------------------------------------------

def test_key_rotation_reaches_other_backends_without_restart(admin, database):
    rot = "https://rotation.e2e.test"
    old, new = Keys("-2025"), Keys("-2026")
    jwks = lambda *sets: psycopg.types.json.Jsonb({"keys": [k.public_jwk("ES256") for k in sets]})
    admin.execute("SELECT tenant.trust_issuer(%s, %s, %s)", (rot, jwks(old), AUD))
    try:
        with psycopg.connect(dsn(user=APP), autocommit=True) as app:
            t_old = old.mint(TENANT_A, alg="ES256", iss=rot)
            t_new = new.mint(TENANT_A, alg="ES256", iss=rot)
            app.execute("SELECT tenant.authenticate(%s, 'session')", (t_old,))
            assert current(app) == TENANT_A
            assert sqlstate(app, "SELECT tenant.authenticate(%s)", (t_new,)) == \
                ("28000", "token rejected: token kid does not name a key of its issuer (see tenant.issuers)")
            # overlap: both keys published
            admin.execute("SELECT tenant.trust_issuer(%s, %s, %s)", (rot, jwks(old, new), AUD))
            assert app.execute("SELECT tenant.authenticate(%s)", (t_new,)).fetchone()[0] == TENANT_A
            assert current(app) == TENANT_A
            # retire the old key: the session's cached verification is dropped at its next transaction
            admin.execute("SELECT tenant.trust_issuer(%s, %s, %s)", (rot, jwks(new), AUD))
            err = None
            try:
                app.execute("SELECT tenant.current_id()")
            except psycopg.Error as e:
                err = (e.sqlstate, e.diag.message_primary, e.diag.message_detail)
            assert err == NO_CONTEXT + ("The token in tenant_guard.token was rejected: token kid does not name a key "
                                        "of its issuer (see tenant.issuers).",)
            assert app.execute("SELECT tenant.authenticate(%s, 'session')", (t_new,)).fetchone()[0] == TENANT_A
            # untrust the issuer: nothing it signed verifies any more
            admin.execute("SELECT tenant.untrust_issuer(%s)", (rot,))
            assert sqlstate(app, "SELECT tenant.current_id()") == NO_CONTEXT
    finally:
        admin.execute("SELECT tenant.untrust_issuer(%s)", (rot,))


def test_issuers_view_shows_keys_without_material(admin, keys):
    rows = admin.execute("SELECT kid, alg, kty, audience FROM tenant.issuers WHERE issuer = %s ORDER BY kid",
                         (ISS,)).fetchall()
    assert rows == [("ES256", "ES256", "EC", AUD), ("EdDSA", "EdDSA", "OKP", AUD),
                    ("HS256", "HS256", "oct", AUD), ("RS256", "RS256", "RSA", AUD)]
    cols = [r[0] for r in admin.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'tenant.issuers'::regclass AND attnum > 0 ORDER BY attnum")]
    assert cols == ["issuer", "kid", "alg", "kty", "audience", "tenant_claim", "updated_at", "scoped_tenants",
                    "require_cert_binding", "require_jti", "discovery_url", "jwks_uri", "last_fetch", "last_success",
                    "last_error", "next_fetch"]


def test_admin_functions_are_not_executable_by_public(admin):
    rows = admin.execute("""
        SELECT p.proname, has_function_privilege('tg_app', p.oid, 'EXECUTE')
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'tenant' ORDER BY 1, 2""").fetchall()
    allowed = {name for name, ok in rows if ok}
    # protect() runs SECURITY LABEL as the caller (PostgreSQL checks ownership); _policy_intact backs
    # tenant.scoped_tables (with _policy_expression, a pure function of a column name); the trusted-code
    # helpers read only catalogs every role can read, and the tamper guard runs them as the role it checks;
    # _citus_coordinator says whether this node is a Citus coordinator
    assert allowed == {"authenticate", "claim", "claims", "current_id", "reset", "subject",
                       "protect", "_policy_intact", "_policy_expression", "_policy_expression_per_row",
                       "_citus_coordinator", "_minimum_server_version",
                       "_trusted_function", "_callees", "_untrusted_code", "_crossing_foreign_keys",
                       "_first_normal_oid", "_label_column", "_protect", "_code_nodes", "_code_objects",
                       "_node_code", "_untrusted_calls", "_untrusted_column_calls", "_untrusted_partition_keys", "_unique_without_tenant",
                       "_written_here", "_xid_here",
                       "encrypt", "decrypt", "encrypt_bytea", "decrypt_bytea", "key_version", "client_certificate",
                       # which tenant a database is bound to: what a router reads, as tenant.placement
                       "database_tenant"}
    assert {"trust_issuer", "untrust_issuer", "_table_changed"} <= {name for name, _ in rows}


def test_volatility_and_parallel_safety(admin):
    rows = dict(admin.execute("""
        SELECT p.proname || '/' || p.pronargs, p.provolatile::text || p.proparallel::text
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'tenant'""").fetchall())
    assert rows["current_id/0"] == "ss"  # STABLE, PARALLEL SAFE: never IMMUTABLE
    assert rows["claims/0"] == "ss" and rows["claim/1"] == "ss" and rows["subject/0"] == "ss"
    assert rows["authenticate/1"] == "vu" and rows["authenticate/2"] == "vu"


# --- nothing secret in the server log -----------------------------------------------------------------------------

def test_rejected_tokens_do_not_reach_the_server_log(app, keys):
    import os

    log = os.environ.get("TG_LOG")
    if not log or not os.access(log, os.R_OK):
        pytest.skip("server log not readable here")
    token = keys.mint(TENANT_A, exp=int(time.time()) - 1000, iat=int(time.time()) - 1100)
    assert sqlstate(app, "SELECT tenant.authenticate(%s)", (token,))[0] == "28000"
    time.sleep(0.2)
    with open(log, errors="replace") as f:
        text = f.read()
    assert "token rejected: token has expired" in text
    assert token.split(".")[1] not in text and token.split(".")[2] not in text
