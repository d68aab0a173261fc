"""Replay protection: an issuer trusted with require_jti => true has each token (jti) usable in one transaction only,
across every backend of the server; the shared table of used jtis refuses new tokens when full (53400) rather than
accepting them unchecked."""

import os
import subprocess
import threading
import uuid

import psycopg
import psycopg.sql
import pytest
from conftest import APP, AUD, DB, ISS, PG, TENANT_A, dsn, free_port, sqlstate

SUPPORT = os.path.join(os.path.dirname(__file__), "..", "support")
CLUSTER = os.path.join(SUPPORT, "cluster.sh")
ONCE = "https://once.e2e.test"
REPLAYED = ("28000", "token rejected: token has been used already, in another transaction; its issuer requires "
                     "each token (jti) once")
NO_JTI = ("28000", "token rejected: token has no jti claim, and its issuer requires one, used once")


def after_the_start_leeway(conn):
    """Tokens issued before the server started, or within the clock leeway (30 s) after, are refused: wait until the
    server is older than that, so that tokens minted now are accepted."""
    import time
    age = conn.execute("SELECT extract(epoch FROM now() - pg_postmaster_start_time())").fetchone()[0]
    if age < 32:
        time.sleep(32 - float(age))


@pytest.fixture(scope="module")
def once(database, keys):
    with psycopg.connect(dsn(), autocommit=True) as c:
        after_the_start_leeway(c)
        c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s, require_jti => true)",
                  (ONCE, psycopg.types.json.Jsonb(keys.jwks()), AUD))
    yield lambda tenant=TENANT_A, **claims: keys.mint(tenant, iss=ONCE, **{"jti": str(uuid.uuid4()), **claims})
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("SELECT tenant.untrust_issuer(%s)", (ONCE,))


def test_a_token_is_usable_in_one_transaction_only(once, app):
    token = once()
    with app.transaction():
        assert app.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == TENANT_A
        # within its transaction: as often as needed
        assert app.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == TENANT_A
        for _ in range(3):
            assert app.execute("SELECT tenant.current_id()").fetchone()[0] == TENANT_A
        assert app.execute("SELECT body FROM public.docs ORDER BY body").fetchall() == [("a1",), ("a2",)]
    # the next transaction, here or in another backend: refused
    assert sqlstate(app, "SELECT tenant.authenticate(%s)", (token,)) == REPLAYED
    with psycopg.connect(dsn(user=APP), autocommit=True) as other:
        assert sqlstate(other, "SELECT tenant.authenticate(%s)", (token,)) == REPLAYED
        # set without authenticate: no context, saying why
        other.execute("BEGIN")
        other.execute(psycopg.sql.SQL("SET LOCAL tenant_guard.token = {}").format(psycopg.sql.Literal(token)))
        try:
            other.execute("SELECT tenant.current_id()")
            raise AssertionError("a replayed token gave a context")
        except psycopg.errors.InsufficientPrivilege as e:
            assert e.diag.message_detail == f"The token in tenant_guard.token was rejected: {REPLAYED[1][16:]}."
        other.execute("ROLLBACK")


def test_a_session_scoped_token_serves_one_transaction(once, app):
    token = once()
    app.execute("SELECT tenant.authenticate(%s, 'session')", (token,))
    assert sqlstate(app, "SELECT tenant.current_id()")[0] == "42501"   # the next statement is another transaction
    app.execute("SELECT tenant.reset()")


def test_a_token_without_jti_is_refused_and_other_issuers_are_unaffected(once, app, keys):
    assert sqlstate(app, "SELECT tenant.authenticate(%s)", (once(jti=None),)) == NO_JTI
    plain = keys.mint(TENANT_A, jti="reused")
    for _ in range(3):
        assert app.execute("SELECT tenant.authenticate(%s)", (plain,)).fetchone()[0] == TENANT_A


def test_parallel_workers_act_for_their_leader(once):
    with psycopg.connect(dsn(user=APP)) as c:
        c.execute("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0")
        c.execute("SET debug_parallel_query = on" if PG != "15" else "SET force_parallel_mode = on")
        c.execute("SELECT tenant.authenticate(%s)", (once(),))
        for _ in range(3):
            assert c.execute("SELECT count(*) FROM public.docs").fetchone()[0] == 2


def test_two_backends_racing_for_one_token_one_wins(once):
    for _ in range(10):
        token = once()
        barrier = threading.Barrier(4)
        results = []

        def attempt():
            with psycopg.connect(dsn(user=APP), autocommit=True) as c:
                barrier.wait()
                results.append(sqlstate(c, "SELECT tenant.authenticate(%s)", (token,)))
        threads = [threading.Thread(target=attempt) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results, key=str) == sorted([None, REPLAYED, REPLAYED, REPLAYED], key=str)


def test_retrusting_keeps_the_requirement(once, admin, keys):
    admin.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (ONCE, psycopg.types.json.Jsonb(keys.jwks()), AUD))
    assert admin.execute("SELECT DISTINCT require_jti FROM tenant.issuers WHERE issuer = %s", (ONCE,)).fetchall() == \
        [(True,)]


def test_a_crash_restart_empties_the_table_and_tokens_issued_before_are_refused(keys):
    """A backend killed by a signal makes the postmaster reinitialize shared memory (red team, round 6: a token
    refused before was accepted after): tokens issued before the table was made, or within the clock leeway after,
    are refused, since whether they were used cannot be known."""
    import signal
    import time
    port, data = free_port(), f"/tmp/tenant_guard-e2e-replay-crash-{os.getpid()}"
    subprocess.run([CLUSTER, "stop", data], check=True)
    subprocess.run([CLUSTER, "start", data, str(port)], check=True, stdout=subprocess.DEVNULL)
    try:
        with psycopg.connect(dsn(port=port, dbname="postgres"), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {DB}")
            c.execute(f"CREATE ROLE {APP} LOGIN NOSUPERUSER NOBYPASSRLS")
            c.execute(f"ALTER ROLE {APP} SET tenant_guard.clock_skew = 0")   # no leeway: a short test
        with psycopg.connect(dsn(port=port), autocommit=True) as c:
            c.execute("CREATE EXTENSION tenant_guard")
            c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s, require_jti => true)",
                      (ONCE, psycopg.types.json.Jsonb(keys.jwks()), AUD))
        time.sleep(1.1)
        used = keys.mint(TENANT_A, iss=ONCE, jti="before-crash")
        with psycopg.connect(dsn(port=port, user=APP), autocommit=True) as c:
            c.execute("SELECT tenant.authenticate(%s)", (used,))
            assert sqlstate(c, "SELECT tenant.authenticate(%s)", (used,)) == REPLAYED
        with psycopg.connect(dsn(port=port, dbname="postgres"), autocommit=True) as c:
            victim = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            os.kill(victim, signal.SIGKILL)
        deadline = time.time() + 30
        while True:
            try:
                psycopg.connect(dsn(port=port, user=APP), autocommit=True).close()
                break
            except psycopg.OperationalError:
                assert time.time() < deadline, "the server did not come back"
                time.sleep(0.2)
        time.sleep(1.1)
        with psycopg.connect(dsn(port=port, user=APP), autocommit=True) as c:
            assert sqlstate(c, "SELECT tenant.authenticate(%s)", (used,)) == \
                ("28000", "token rejected: token was issued before the server last started (or within "
                          "tenant_guard.clock_skew after), and its issuer requires each token (jti) once: whether "
                          "it was used before cannot be known")
            assert c.execute("SELECT tenant.authenticate(%s)",
                             (keys.mint(TENANT_A, iss=ONCE, jti="after-crash"),)).fetchone()[0] == TENANT_A
    finally:
        subprocess.run([CLUSTER, "stop", data], check=True)


def test_a_full_table_refuses_rather_than_accepts(keys):
    """tenant_guard.replay_cache_size at its minimum (128): the 129th unexpired token is refused with 53400."""
    port, data = free_port(), f"/tmp/tenant_guard-e2e-replay-{os.getpid()}"
    subprocess.run([CLUSTER, "stop", data], check=True)
    subprocess.run([CLUSTER, "start", data, str(port)], check=True, stdout=subprocess.DEVNULL)
    try:
        with psycopg.connect(dsn(port=port, dbname="postgres"), autocommit=True) as c:
            c.execute("ALTER SYSTEM SET tenant_guard.replay_cache_size = 128")
            c.execute(f"CREATE DATABASE {DB}")
            c.execute(f"CREATE ROLE {APP} LOGIN NOSUPERUSER NOBYPASSRLS")
            c.execute(f"ALTER ROLE {APP} SET tenant_guard.clock_skew = 0")   # no leeway after the start
        subprocess.run([CLUSTER, "restart", data], check=True)
        import time
        time.sleep(1.1)
        with psycopg.connect(dsn(port=port), autocommit=True) as c:
            c.execute("CREATE EXTENSION tenant_guard")
            c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s, require_jti => true)",
                      (ONCE, psycopg.types.json.Jsonb(keys.jwks()), AUD))
        with psycopg.connect(dsn(port=port, user=APP), autocommit=True) as c:
            for i in range(128):
                c.execute("SELECT tenant.authenticate(%s)", (keys.mint(TENANT_A, iss=ONCE, jti=f"fill-{i}"),))
            try:
                c.execute("SELECT tenant.authenticate(%s)", (keys.mint(TENANT_A, iss=ONCE, jti="one-too-many"),))
                raise AssertionError("a token was accepted unchecked")
            except psycopg.Error as e:
                assert (e.sqlstate, e.diag.message_primary) == \
                    ("53400", "tenant_guard's replay table is full: 128 unexpired jti values are remembered")
            # a used token is still refused, not forgotten (while full, without looking: the table is not scanned)
            assert sqlstate(c, "SELECT tenant.authenticate(%s)",
                            (keys.mint(TENANT_A, iss=ONCE, jti="fill-0"),))[0] in ("28000", "53400")
    finally:
        subprocess.run([CLUSTER, "stop", data], check=True)
