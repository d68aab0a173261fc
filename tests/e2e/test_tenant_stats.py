"""Per-tenant statistics (tenant.stats, tenant.stats_rejections, tenant.stats_summary(), tenant.stats_reset()):
exact counts per tenant, attribution of refusals, who may read them, eviction, and the switch."""

import os
import subprocess
import time
import uuid

import psycopg
import pytest
from conftest import APP, AUD, DB, ISS, dsn, free_port, sqlstate

MONITOR = "tg_stats_monitor"
COLUMNS = ("transactions, rollbacks, statements, rows_read, rows_written, auth_accepted, auth_rejected, "
           "encryptions, decryptions")


@pytest.fixture(scope="module")
def monitor(database):
    """A monitoring login role: pg_monitor, no privileges on any table."""
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP ROLE IF EXISTS {MONITOR}")
        c.execute(f"CREATE ROLE {MONITOR} LOGIN IN ROLE pg_monitor")
    yield MONITOR


def stats(admin, tenant):
    return admin.execute(f"SELECT {COLUMNS} FROM tenant.stats WHERE tenant = %s", (tenant,)).fetchone()


def rejections(admin, tenant):
    if tenant is None:
        rows = admin.execute("SELECT reason, count FROM tenant.stats_rejections WHERE tenant IS NULL").fetchall()
    else:
        rows = admin.execute("SELECT reason, count FROM tenant.stats_rejections WHERE tenant = %s",
                             (tenant,)).fetchall()
    return dict(rows)


def app_conn(**kw):
    return psycopg.connect(dsn(user=APP, **kw), autocommit=True)


def test_counts_one_tenants_transactions_statements_rows_and_encryption(keys, admin):
    t = uuid.uuid4()
    with app_conn() as c:
        c.execute("BEGIN")
        c.execute("SELECT tenant.authenticate(%s)", (keys.mint(t),))                       # read 1
        c.execute("INSERT INTO docs (tenant_id, body) SELECT %s, 'x' || g FROM generate_series(1, 3) g",
                  (t,))                                                                      # written 3
        assert len(c.execute("SELECT id FROM docs").fetchall()) == 3                         # read 3
        c.execute("UPDATE docs SET body = 'y' WHERE body IN ('x1', 'x2')")                   # written 2
        c.execute("SELECT tenant.encrypt('secret ' || g) FROM generate_series(1, 2) g")      # read 2, 2 encryptions
        ct = c.execute("SELECT tenant.encrypt('one')").fetchone()[0]                         # read 1, 1 encryption
        assert c.execute("SELECT tenant.decrypt(%s)", (ct,)).fetchone()[0] == "one"          # read 1, 1 decryption
        c.execute("COMMIT")
        c.execute("BEGIN")
        c.execute("SELECT tenant.authenticate(%s)", (keys.mint(t),))                       # read 1
        c.execute("DELETE FROM docs WHERE body = 'x3'")                                      # written 1
        c.execute("ROLLBACK")
    assert stats(admin, t) == (2, 1, 11, 9, 6, 2, 0, 3, 1)   # COMMIT and ROLLBACK are statements too
    cpu, wall, last = admin.execute(
        "SELECT cpu_time, wall_time, last_activity FROM tenant.stats WHERE tenant = %s", (t,)).fetchone()
    assert 0 <= cpu and 0 < wall and last is not None
    assert admin.execute("SELECT last_activity > now() - interval '1 minute' FROM tenant.stats WHERE tenant = %s",
                         (t,)).fetchone()[0]


def test_tenants_are_counted_apart_and_statements_before_the_context_are_nobodys(keys, admin):
    a, b = uuid.uuid4(), uuid.uuid4()
    with app_conn() as ca, app_conn() as cb:
        ca.execute("SELECT 1 FROM generate_series(1, 5)")            # no token yet: nobody's
        for _ in range(3):
            ca.execute("BEGIN")
            ca.execute(f"SET LOCAL tenant_guard.token = '{keys.mint(a)}'")  # before the context: nobody's
            ca.execute("SELECT count(*) FROM docs")                  # the statement that seals: read 1
            ca.execute("COMMIT")
        cb.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(b),))
        cb.execute("SELECT * FROM docs")                             # read 0 (b has no rows)
    assert stats(admin, a) == (3, 0, 6, 3, 0, 3, 0, 0, 0)   # the SELECT and the COMMIT
    assert stats(admin, b) == (2, 0, 2, 1, 0, 2, 0, 0, 0)


def test_copy_and_fetch_count_their_rows(keys, admin):
    t = uuid.uuid4()
    with app_conn() as c:
        c.execute("BEGIN")
        c.execute("SELECT tenant.authenticate(%s)", (keys.mint(t),))                       # 1: read 1
        c.execute("INSERT INTO docs (tenant_id, body) VALUES (%s, 'c1'), (%s, 'c2')", (t, t))  # 2: written 2
        c.execute("CREATE TEMP TABLE scratch (x int)")                                     # 3
        with c.cursor().copy("COPY scratch FROM STDIN") as copy:                           # 4: written 4
            for i in range(4):
                copy.write_row((i,))
        with c.cursor().copy("COPY docs (body) TO STDOUT") as copy:                        # 5: read 2
            assert sorted(r[0] for r in copy.rows()) == ["c1", "c2"]
        c.execute("DECLARE cur CURSOR FOR SELECT x FROM scratch")                          # 6
        assert len(c.execute("FETCH 3 FROM cur").fetchall()) == 3                          # 7: read 3
        c.execute("CLOSE cur")                                                             # 8
        c.execute("COMMIT")
    assert admin.execute(
        "SELECT transactions, statements, rows_read, rows_written FROM tenant.stats WHERE tenant = %s",
        (t,)).fetchone() == (1, 9, 6, 6)   # and the COMMIT


BURN = "SELECT 1 / (count(*) - count(*)) FROM generate_series(1, 3000000) g"   # fails at the end, not when planned


@pytest.mark.parametrize("statement", [BURN, f"CREATE TEMP TABLE burnt ON COMMIT DROP AS {BURN}"])
def test_a_statement_that_fails_still_counts_its_time(keys, admin, statement):
    t = uuid.uuid4()
    with app_conn() as c:
        c.execute("BEGIN")
        c.execute("SELECT tenant.authenticate(%s)", (keys.mint(t),))
        assert sqlstate(c, statement)[0] == "22012"
        c.execute("ROLLBACK")
    statements, rows_read, cpu, wall = admin.execute(
        "SELECT statements, rows_read, cpu_time, wall_time FROM tenant.stats WHERE tenant = %s", (t,)).fetchone()
    assert (statements, rows_read) == (2, 1)
    # summing three million rows takes hundreds of milliseconds here; 20 is far below, and far above nothing
    assert cpu > 20 and wall > 20, (cpu, wall)


def test_forged_and_unverifiable_tokens_are_counted_under_no_tenant_and_create_no_entry(keys, admin):
    victim = uuid.uuid4()
    before = rejections(admin, None)
    head, signature = keys.mint(victim).rsplit(".", 1)
    forged = head + "." + signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    other = type(keys)("-stats-other").mint(victim)               # signed by a key nobody trusts
    with app_conn() as c:
        assert sqlstate(c, "SELECT tenant.authenticate(%s)", (forged,))[0] == "28000"
        assert sqlstate(c, "SELECT tenant.authenticate(%s)", (other,))[0] == "28000"
        assert sqlstate(c, "SELECT tenant.authenticate(%s)", ("not a token",))[0] == "28000"
    after = rejections(admin, None)
    assert after.get("bad_signature", 0) - before.get("bad_signature", 0) == 1
    assert after.get("unknown_key", 0) - before.get("unknown_key", 0) == 1
    assert after.get("malformed", 0) - before.get("malformed", 0) == 1
    assert stats(admin, victim) is None
    assert rejections(admin, victim) == {}


def test_a_refusal_of_a_proven_token_is_the_tenants(keys, admin):
    a, b = uuid.uuid4(), uuid.uuid4()
    with app_conn() as c:
        c.execute("BEGIN")
        c.execute("SELECT tenant.authenticate(%s)", (keys.mint(a),))
        assert sqlstate(c, "SELECT tenant.authenticate(%s)", (keys.mint(b),))[0] == "28000"   # sealed to a
        c.execute("ROLLBACK")
    assert rejections(admin, b) == {"sealed": 1}
    assert stats(admin, b) == (0, 0, 0, 0, 0, 0, 1, 0, 0)
    # the failed statement counts (its time, not its rows); the error ended the transaction: ROLLBACK is nobody's
    assert stats(admin, a) == (1, 1, 2, 1, 0, 1, 0, 0, 0)


def test_a_session_token_while_session_scope_is_off_is_an_origin_refusal(keys, admin):
    before = rejections(admin, None).get("origin", 0)
    admin.execute(f"ALTER ROLE {APP} SET tenant_guard.allow_session_scope = off")
    try:
        with app_conn() as c:
            assert sqlstate(c, f"SET tenant_guard.token = '{keys.mint(uuid.uuid4())}'")[0] == "42501"
            assert sqlstate(c, "SELECT tenant.authenticate(%s, 'session')", (keys.mint(uuid.uuid4()),))[0] == "42501"
    finally:
        admin.execute(f"ALTER ROLE {APP} RESET tenant_guard.allow_session_scope")
    assert rejections(admin, None).get("origin", 0) - before == 2


def test_only_administrators_and_monitoring_read_them(keys, admin, monitor):
    t = uuid.uuid4()
    with app_conn() as c:
        c.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(t),))
        for sql in ("SELECT * FROM tenant.stats", "SELECT * FROM tenant.stats_rejections",
                    "SELECT * FROM tenant.stats_tenants()", "SELECT * FROM tenant.stats_summary()",
                    "SELECT tenant.stats_reset()", f"SELECT tenant.stats_reset('{t}')"):
            assert sqlstate(c, sql)[0] == "42501", sql
        assert sqlstate(c, "SET tenant_guard.track_tenants = off") == (
            "55P02", 'parameter "tenant_guard.track_tenants" cannot be changed now')
    with psycopg.connect(dsn(user=monitor), autocommit=True) as m:
        assert m.execute("SELECT transactions FROM tenant.stats WHERE tenant = %s", (t,)).fetchone() == (1,)
        m.execute("SELECT * FROM tenant.stats_rejections")
        assert m.execute("SELECT capacity, collecting FROM tenant.stats_summary()").fetchone() == (10000, True)
        assert sqlstate(m, "SELECT tenant.stats_reset()")[0] == "42501"
        # no tenant data: the monitoring role still reads no protected row
        assert sqlstate(m, "SELECT * FROM docs")[0] == "42501"


def test_reset_one_tenant_or_all(keys, admin):
    a, b = uuid.uuid4(), uuid.uuid4()
    with app_conn() as c:
        c.execute("SELECT tenant.authenticate(%s)", (keys.mint(a),))
        c.execute("SELECT tenant.authenticate(%s)", (keys.mint(b),))
    assert admin.execute("SELECT tenant.stats_reset(%s)", (a,)).fetchone() == (1,)
    assert stats(admin, a) is None and stats(admin, b) is not None
    assert admin.execute("SELECT tenant.stats_reset(%s)", (a,)).fetchone() == (0,)
    with app_conn() as c:
        c.execute("SELECT tenant.authenticate(%s)", (keys.mint(a),))
    assert stats(admin, a) == (1, 0, 1, 1, 0, 1, 0, 0, 0)


# ---------------------------------------------------------------------------------------------------------------
# On a cluster of its own: a table of 16 tenants, and the switch


OWN_PORT = free_port()   # not PORT + n: the suites of several majors may run at once
OWN_DIR = f"/tmp/tenant_guard-e2e-stats-{OWN_PORT}"
CLUSTER = os.path.join(os.path.dirname(__file__), "..", "support", "cluster.sh")


@pytest.fixture(scope="module")
def small(keys):
    subprocess.run([CLUSTER, "stop", OWN_DIR], check=True)
    subprocess.run([CLUSTER, "start", OWN_DIR, str(OWN_PORT)], check=True, stdout=subprocess.DEVNULL)
    try:
        with psycopg.connect(dsn(port=OWN_PORT, dbname="postgres"), autocommit=True) as c:
            c.execute("ALTER SYSTEM SET tenant_guard.stats_max_tenants = 16")
            c.execute(f"CREATE DATABASE {DB}")
            c.execute(f"DROP ROLE IF EXISTS {APP}")
            c.execute(f"CREATE ROLE {APP} LOGIN NOSUPERUSER NOBYPASSRLS")
        subprocess.run([CLUSTER, "restart", OWN_DIR], check=True)
        with psycopg.connect(dsn(port=OWN_PORT), autocommit=True) as c:
            c.execute("CREATE EXTENSION tenant_guard")
            c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)",
                      (ISS, psycopg.types.json.Jsonb(keys.jwks()), AUD))
        yield OWN_PORT
    finally:
        subprocess.run([CLUSTER, "stop", OWN_DIR], check=True)


def test_a_full_table_evicts_the_least_recently_active_tenant_and_counts_it(keys, small):
    tenants = [uuid.uuid4() for _ in range(17)]
    with psycopg.connect(dsn(port=small), autocommit=True) as admin:
        admin.execute("SELECT tenant.stats_reset()")
        with app_conn(port=small) as c:
            for t in tenants[:16]:
                c.execute("SELECT tenant.authenticate(%s)", (keys.mint(t),))
                time.sleep(0.002)
            c.execute("SELECT tenant.authenticate(%s)", (keys.mint(tenants[0]),))    # the first is active again
            c.execute("SELECT tenant.authenticate(%s)", (keys.mint(tenants[16]),))
        assert admin.execute("SELECT capacity, tenants, evicted FROM tenant.stats_summary()").fetchone() == (16, 16, 1)
        present = {r[0] for r in admin.execute("SELECT tenant FROM tenant.stats").fetchall()}
        assert present == set(tenants) - {tenants[1]}
        assert admin.execute("SELECT transactions FROM tenant.stats WHERE tenant = %s",
                             (tenants[0],)).fetchone() == (2,)
        admin.execute("SELECT tenant.stats_reset()")
        assert admin.execute("SELECT tenants, evicted FROM tenant.stats_summary()").fetchone() == (0, 0)


def test_track_tenants_off_counts_nothing(keys, small):
    t = uuid.uuid4()
    with psycopg.connect(dsn(port=small), autocommit=True) as admin:
        admin.execute("ALTER SYSTEM SET tenant_guard.track_tenants = off")
        admin.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        try:
            with app_conn(port=small) as c:
                c.execute("SELECT tenant.authenticate(%s)", (keys.mint(t),))
                assert sqlstate(c, "SELECT tenant.authenticate('x.y.z')")[0] == "28000"
            assert admin.execute("SELECT count(*) FROM tenant.stats WHERE tenant = %s", (t,)).fetchone() == (0,)
            assert admin.execute("SELECT collecting FROM tenant.stats_summary()").fetchone() == (False,)
        finally:
            admin.execute("ALTER SYSTEM RESET tenant_guard.track_tenants")
            admin.execute("SELECT pg_reload_conf()")
            time.sleep(0.5)
        with app_conn(port=small) as c:
            c.execute("SELECT tenant.authenticate(%s)", (keys.mint(t),))
        assert admin.execute("SELECT transactions FROM tenant.stats WHERE tenant = %s", (t,)).fetchone() == (1,)
