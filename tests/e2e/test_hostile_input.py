"""Hostile input to every SQL function of the extension: NULLs, empty values, very long values, invalid UTF-8 and
binary garbage. Each call must succeed or raise a clean error; none may crash the backend (a crash would end this
connection and restart the server)."""

import itertools
import json
import os

import psycopg
import pytest
from conftest import dsn, sqlstate

LONG = 1 << 20
GARBAGE = bytes(range(256)) * 8

# Values per argument type: NULL, empty, very long, odd.
VALUES = {
    "text": [None, "", "x" * LONG, "\u00e9\u0000".replace("\u0000", "") * 1000, "{" * 10000, "eyJ" + "A" * 9000,
             "a.b.c", "...", "\U0001F600" * 1000],
    "bytea": [None, b"", os.urandom(LONG), GARBAGE, b"\x01", b"\x01" + b"\x00" * 32, b"\xff\xfe\xfd"],
    "uuid": [None, "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"],
    "jsonb": [None, "{}", "[]", "null", '{"keys": []}', '{"keys": [{}]}', '{"keys": [' + "[" * 200 + "]" * 200 + "]}",
              '{"keys": [{"kty": "oct", "k": ""}]}', '{"keys": "x"}'],
    "oid": [None, 0, 4294967295, 1259],
    "oid[]": [None, [], [0], [4294967295, 1259, 0]],
    "uuid[]": [None, [], [None], ["00000000-0000-0000-0000-000000000000"] * 3],
    "text[]": [None, [], [None], ["", "h" * LONG, "a:b:c", "[::1]:99999", "u@h", "\U0001F600"]],
    "regclass": [None, "pg_class", "pg_catalog.pg_proc"],
    "name": [None, "", "n" * 63],
    "integer": [None, 0, -1, 2147483647, -2147483648],
    "smallint": [None, 0, -1, 32767, -32768],
    "xid": [None, 0, 1, 2, 3, 4294967295],
    "pg_node_tree": [None],   # no input function: only NULL can be passed
    "timestamp with time zone": [None, "infinity", "-infinity", "epoch", "294276-12-31 23:59:59+00"],
    "boolean": [None, True, False],
}
# Calls that would change the shared test database beyond repair are made as the app role only, where the
# privilege check refuses them first; everything else runs as a superuser too.
APP_ONLY = {"untrust_issuer", "rewrap_keys", "shred", "rotate_key", "create_key", "bind_database", "unbind_database",
            "place_tenant", "unplace_tenant", "purge", "stats_reset"}


def functions(conn):
    return conn.execute("""
        SELECT p.proname, p.oid::regprocedure::text,
               array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) t)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'tenant' AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
         ORDER BY 2""").fetchall()


def calls(name, argtypes):
    pools = [VALUES[t] for t in argtypes]
    if not pools:
        yield ()
        return
    # every value of each argument, with the others NULL or their first non-NULL value
    for i, pool in enumerate(pools):
        for v in pool:
            for filler in (0, 1):
                yield tuple(v if j == i else (p[filler] if len(p) > filler else None) for j, p in enumerate(pools))
    # and a bounded sample of combinations
    yield from itertools.islice(itertools.product(*pools), 200)


def call(conn, name, argtypes, args):
    placeholders = ", ".join(f"%s::{t}" for t in argtypes)
    try:
        conn.execute(f"SELECT tenant.{name}({placeholders})", args)
        return "ok"
    except psycopg.Error as e:
        assert not conn.broken and not conn.closed, (name, "the backend died")
        assert e.sqlstate and not e.sqlstate.startswith("XX0") or e.sqlstate == "XX001", \
            (name, e.sqlstate, e.diag.message_primary)
        return e.sqlstate


def test_every_function_survives_hostile_arguments(admin, app, keys):
    admin.execute("SELECT tenant.trust_issuer('https://hostile.test', %s::jsonb)",
                  ('{"keys":[{"kty":"oct","kid":"k","k":"' + "A" * 43 + '"}]}',))
    fns = functions(admin)
    assert sorted({f[0] for f in fns}) == sorted([
        "_audit", "_audit_citus", "_callees", "_citus_coordinator", "_citus_digest", "_code_nodes", "_code_objects", "_crossing_foreign_keys", "_first_normal_oid",
        "_label_column", "_minimum_server_version", "_node_code", "_protect", "_settings_with_credentials",
        "_trust_issuer", "_trusted_function", "_unique_without_tenant", "_untrusted_calls", "_untrusted_code", "_untrusted_partition_keys",
        "_untrusted_column_calls", "_policy_expression", "_policy_expression_per_row", "_policy_intact",
        "_replica_issuers", "_replica_keys", "_table_changed", "_written_here", "_xid_here", "audit",
        "authenticate", "claim", "claims", "client_certificate", "create_key", "current_id", "decrypt", "decrypt_bytea", "encrypt", "encrypt_bytea",
        "key_version", "protect", "reencrypt", "refresh_issuer", "reset", "resume_tenant", "revoke_subject",
        "revoke_token", "rewrap_keys", "rotate_key", "scope_issuer", "shred", "subject", "suspend_tenant",
        "trust_issuer", "trust_issuer_discovery", "untrust_issuer", "verification_cache_stats",
        "bind_database", "database_tenant", "export", "import", "place_tenant", "purge", "set_key_provider",
        "stats_reasons", "stats_reset", "_export", "_import", "stats_summary", "stats_tenants", "unbind_database", "unplace_tenant"]), \
        "a new function: add its argument types to VALUES"
    outcomes = {}
    for conn, role in ((app, "app"), (admin, "superuser")):
        conn.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(keys_tenant()),))
        for name, signature, argtypes in fns:
            if role == "superuser" and name in APP_ONLY:
                continue
            for args in calls(name, argtypes):
                state = call(conn, name, argtypes, args)
                outcomes.setdefault((role, signature), set()).add(state)
            # the backend is alive and the connection usable after every function
            assert conn.execute("SELECT 1").fetchone() == (1,), signature
    admin.execute("SELECT tenant.untrust_issuer('https://hostile.test')")
    admin.execute("DELETE FROM tenant.revoked_token; DELETE FROM tenant.revoked_subject; "
                  "DELETE FROM tenant.suspended_tenant")
    # nothing was ever an internal error (XX000) and every function was called
    assert len(outcomes) >= 2 * len(fns) - 2 * len(APP_ONLY)
    # the app role was refused every admin function before it ran ("ok" only where PostgreSQL folds a STRICT call
    # with a NULL argument to NULL at plan time, which runs nothing)
    for name in ("trust_issuer", "_trust_issuer", "untrust_issuer", "rewrap_keys", "shred", "rotate_key",
                 "create_key", "reencrypt", "_table_changed", "audit", "_audit", "trust_issuer_discovery",
                 "refresh_issuer", "verification_cache_stats", "bind_database", "unbind_database", "place_tenant",
                 "unplace_tenant", "export", "import", "purge", "set_key_provider", "stats_reset", "stats_tenants",
                 "stats_reasons", "stats_summary", "_export", "_import"):
        got = [outcomes[("app", sig)] for n, sig, _ in fns if n == name]
        assert got and all("42501" in o and o <= {"42501", "ok"} for o in got), (name, got)


def keys_tenant():
    import uuid
    return uuid.UUID("dddddddd-4444-4444-8444-dddddddddddd")


@pytest.mark.parametrize("encoding", ["SQL_ASCII", "LATIN1"])
def test_the_extension_needs_a_utf8_database(admin, encoding):
    """Text in a database that is not UTF8 reaches tenant_guard's functions as bytes that are not UTF-8 (SQL_ASCII
    takes any bytes): CREATE EXTENSION refuses such a database, whole, with nothing left behind."""
    db = f"tg_e2e_{encoding.lower()}"
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {db}")
        c.execute(f"CREATE DATABASE {db} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    try:
        with psycopg.connect(dsn(dbname=db), autocommit=True) as c:
            with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
                c.execute("CREATE EXTENSION tenant_guard")
            assert refused.value.diag.message_primary == \
                f"tenant_guard needs a UTF8 database; this database's encoding is {encoding}"
            assert refused.value.diag.message_hint == ("Create the extension in a database created WITH ENCODING "
                                                       "'UTF8' (a database cannot change its encoding).")
            assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant'").fetchone() == (0,)
            assert c.execute("SELECT count(*) FROM pg_extension WHERE extname = 'tenant_guard'").fetchone() == (0,)
    finally:
        with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {db}")


@pytest.mark.parametrize("payload", [b'{"tenant_id": "\xc3\x28"}', b'{"sub": "\xff\xfe"}', b'{"\xed\xa0\x80": 1}'],
                         ids=["tenant_id", "sub", "encoded surrogate in a member name"])
def test_invalid_utf8_inside_a_signed_token_is_a_clean_rejection(app, keys, payload):
    """The bytes of a token's payload are the issuer's, and a validly signed token may carry bytes that are not
    UTF-8: they are rejected as a token (28000), not passed on as text, and the backend lives on."""
    import hmac
    import hashlib
    from conftest import b64url
    header = b64url(json.dumps({"alg": "HS256", "kid": keys.kid("HS256")}).encode())
    body = b64url(payload)
    signature = b64url(hmac.new(keys.secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
    token = f"{header}.{body}.{signature}"
    assert sqlstate(app, "SELECT tenant.authenticate(%s)", (token,)) == (
        "28000", "token rejected: token claim set is not valid JSON")
    assert sqlstate(app, "SELECT tenant.current_id()") == ("42501", "no tenant context")
    assert app.execute("SELECT 1").fetchone() == (1,)


def test_server_log_shows_no_crash(admin):
    """Read through the server (the log is server.log in the data directory, where the test clusters write it): a
    missing log is a failure, never a silent pass."""
    text = admin.execute("SELECT pg_read_file('server.log')").fetchone()[0]
    assert "database system is ready to accept connections" in text
    assert "terminated by signal" not in text
    assert "was terminated" not in text
    assert "PANIC" not in text
    assert "stack backtrace" not in text
