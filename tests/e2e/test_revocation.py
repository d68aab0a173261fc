"""Revocation and suspension: tenant.revoke_token, revoke_subject, suspend_tenant / resume_tenant, the
tenant.revocations view. Each takes effect in every backend from its next statement on, for tokens that backend
had already verified and cached too, and survives a restart and a dump/restore."""

import os
import subprocess
import threading
import time
import uuid

import psycopg
import pytest
from conftest import APP, AUD, DB, HOST, ISS, PG, PORT, dsn, free_port, sqlstate

SUPPORT = os.path.join(os.path.dirname(__file__), "..", "support")
CLUSTER = os.path.join(SUPPORT, "cluster.sh")
BIN = f"/usr/lib/postgresql/{PG}/bin"

NO_CONTEXT = "no tenant context"
REVOKED = "token has been revoked: its jti is listed in tenant.revocations"
SUBJECT_REVOKED = "token has been revoked: its subject's tokens issued before a time are listed in tenant.revocations"
SUSPENDED = "tenant is suspended (see tenant.revocations)"


def rejected(why):
    return ("28000", "token rejected: " + why)


def detail(conn, sql, params=None):
    """(sqlstate, message, detail) of the error `sql` raises."""
    try:
        conn.execute(sql, params)
    except psycopg.Error as e:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR and not conn.autocommit:
            conn.rollback()
        return (e.sqlstate, e.diag.message_primary, e.diag.message_detail)
    return None


def refused_because(why):
    return ("42501", NO_CONTEXT, f"The token in tenant_guard.token was rejected: {why}.")


@pytest.fixture
def clean(admin):
    yield admin
    admin.execute("DELETE FROM tenant.revoked_token; DELETE FROM tenant.revoked_subject; "
                  "DELETE FROM tenant.suspended_tenant")


def session_app(token):
    c = psycopg.connect(dsn(user=APP), autocommit=True)
    c.execute("SELECT tenant.authenticate(%s, 'session')", (token,))
    return c


def test_revoke_token_reaches_a_session_that_already_verified_it(keys, clean):
    tenant = uuid.uuid4()
    token = keys.mint(tenant, jti="jti-revoked-1")
    other = keys.mint(tenant, jti="jti-kept-1")
    with session_app(token) as app, session_app(other) as app2:
        assert app.execute("SELECT tenant.current_id()").fetchone()[0] == tenant
        # a transaction that is already open and sealed sees it at its next statement too
        app2.execute("BEGIN")
        app2.execute("SELECT tenant.authenticate(%s)", (token,))
        assert app2.execute("SELECT tenant.current_id()").fetchone()[0] == tenant
        assert clean.execute("SELECT tenant.revoke_token('jti-revoked-1')").fetchone()[0] is True
        assert clean.execute("SELECT tenant.revoke_token('jti-revoked-1')").fetchone()[0] is False
        assert detail(app, "SELECT tenant.current_id()") == refused_because(REVOKED)
        assert detail(app2, "SELECT tenant.current_id()") == refused_because(REVOKED)
        app2.execute("ROLLBACK")
        assert sqlstate(app, "SELECT tenant.authenticate(%s)", (token,)) == rejected(REVOKED)
        # the same tenant's other tokens, and tokens without jti, are untouched
        assert app.execute("SELECT tenant.authenticate(%s)", (other,)).fetchone()[0] == tenant
        assert app.execute("SELECT tenant.authenticate(%s)", (keys.mint(tenant),)).fetchone()[0] == tenant
        # revoked whoever issued it: the jti alone is listed
        assert clean.execute("SELECT kind, issuer, subject, jti, tenant, issued_before IS NULL "
                             "FROM tenant.revocations").fetchall() == \
            [("token", None, None, "jti-revoked-1", None, True)]
        # lifting it (an administrator deletes the row) works from the next statement on
        clean.execute("DELETE FROM tenant.revoked_token WHERE jti = 'jti-revoked-1'")
        assert app.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == tenant


def test_revoke_subject_refuses_tokens_issued_before_the_cut_only(keys, clean):
    tenant = uuid.uuid4()
    now = int(time.time())
    old = keys.mint(tenant, sub="alice", iat=now - 60)
    no_iat = keys.mint(tenant, sub="alice", iat=None)
    bob = keys.mint(tenant, sub="bob", iat=now - 60)
    with session_app(old) as app:
        clean.execute("SELECT tenant.revoke_subject(%s, 'alice', to_timestamp(%s))", (ISS, now - 30))
        assert detail(app, "SELECT tenant.current_id()") == refused_because(SUBJECT_REVOKED)
        assert sqlstate(app, "SELECT tenant.authenticate(%s)", (no_iat,)) == rejected(SUBJECT_REVOKED)
        # issued within tenant_guard.clock_skew (30 s) after the cut: the issuer's clock may run ahead, refused too
        assert sqlstate(app, "SELECT tenant.authenticate(%s)", (keys.mint(tenant, sub="alice", iat=now - 10),)) == \
            rejected(SUBJECT_REVOKED)
        # a token issued after the cut plus the leeway (a fresh login) is accepted; so is another subject
        fresh = keys.mint(tenant, sub="alice", iat=now)
        assert app.execute("SELECT tenant.authenticate(%s)", (fresh,)).fetchone()[0] == tenant
        assert app.execute("SELECT tenant.authenticate(%s)", (bob,)).fetchone()[0] == tenant
        # the same subject name at another issuer is another subject
        assert clean.execute("SELECT tenant.revoke_subject('https://elsewhere.test', 'bob')").fetchone()[0] is True
        assert app.execute("SELECT tenant.authenticate(%s)", (bob,)).fetchone()[0] == tenant
        # revoking again moves the cut (default now()): the fresh token is refused as well
        assert clean.execute("SELECT tenant.revoke_subject(%s, 'alice', now() + interval '5 seconds')",
                             (ISS,)).fetchone()[0] is False
        assert sqlstate(app, "SELECT tenant.authenticate(%s)", (fresh,)) == rejected(SUBJECT_REVOKED)
        assert clean.execute("SELECT kind, issuer, subject FROM tenant.revocations ORDER BY issuer").fetchall() == \
            [("subject", "https://elsewhere.test", "bob"), ("subject", ISS, "alice")]


def test_a_suspended_tenant_gets_no_reads_writes_or_encryption(keys, clean):
    suspended, other = uuid.uuid4(), uuid.uuid4()
    clean.execute("DROP TABLE IF EXISTS public.susp")
    clean.execute("CREATE TABLE public.susp (id int, tenant_id uuid NOT NULL DEFAULT tenant.current_id(), v text)")
    clean.execute("SECURITY LABEL FOR tenant_guard ON TABLE public.susp IS 'tenant_scoped'")
    clean.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON public.susp TO tg_app")
    try:
        with session_app(keys.mint(suspended)) as app, session_app(keys.mint(other)) as app2:
            app.execute("INSERT INTO public.susp (id, v) VALUES (1, 'kept')")
            app.execute("SELECT tenant.encrypt('x')")
            assert clean.execute("SELECT tenant.suspend_tenant(%s)", (suspended,)).fetchone()[0] is True
            assert clean.execute("SELECT tenant.suspend_tenant(%s)", (suspended,)).fetchone()[0] is False
            for sql in ("SELECT count(*) FROM public.susp", "INSERT INTO public.susp (id, v) VALUES (2, 'no')",
                        "UPDATE public.susp SET v = 'no'", "DELETE FROM public.susp", "SELECT tenant.encrypt('x')",
                        "SELECT tenant.current_id()"):
                assert detail(app, sql) == refused_because(SUSPENDED), sql
            assert sqlstate(app, "SELECT tenant.authenticate(%s)", (keys.mint(suspended, jti="new"),)) == \
                rejected(SUSPENDED)
            # another tenant is untouched
            assert app2.execute("SELECT tenant.current_id()").fetchone()[0] == other
            app2.execute("INSERT INTO public.susp (id, v) VALUES (3, 'other')")
            assert clean.execute("SELECT kind, tenant FROM tenant.revocations").fetchall() == [("tenant", suspended)]
            assert clean.execute("SELECT tenant.resume_tenant(%s)", (suspended,)).fetchone()[0] is True
            assert clean.execute("SELECT tenant.resume_tenant(%s)", (suspended,)).fetchone()[0] is False
            assert app.execute("SELECT id, v FROM public.susp").fetchall() == [(1, "kept")]
    finally:
        clean.execute("DROP TABLE public.susp")


def test_a_suspension_reaches_parallel_workers(keys, clean):
    tenant = uuid.uuid4()
    with session_app(keys.mint(tenant)) as app:
        app.execute("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0")
        app.execute("SET debug_parallel_query = on" if PG != "15" else "SET force_parallel_mode = on")
        assert app.execute("SELECT count(*) FROM public.docs").fetchone()[0] == 0
        clean.execute("SELECT tenant.suspend_tenant(%s)", (tenant,))
        assert detail(app, "SELECT count(*) FROM public.docs") == refused_because(SUSPENDED)


def test_only_administrators_revoke_and_read_revocations(app, clean):
    for sql in ("SELECT tenant.revoke_token('x')", "SELECT tenant.revoke_subject('i', 's')",
                "SELECT tenant.suspend_tenant(gen_random_uuid())", "SELECT tenant.resume_tenant(gen_random_uuid())"):
        assert sqlstate(app, sql)[0] == "42501", sql
    for table in ("revocations", "revoked_token", "revoked_subject", "suspended_tenant"):
        assert sqlstate(app, f"SELECT * FROM tenant.{table}")[0] == "42501", table
    for table in ("revoked_token", "revoked_subject", "suspended_tenant"):
        assert sqlstate(app, f"DELETE FROM tenant.{table}")[0] == "42501", table
        assert sqlstate(app, f"INSERT INTO tenant.{table} DEFAULT VALUES")[0] == "42501", table
    clean.execute("DROP ROLE IF EXISTS tg_revoker")
    clean.execute("CREATE ROLE tg_revoker LOGIN IN ROLE tenant_guard_admin")
    try:
        with psycopg.connect(dsn(user="tg_revoker"), autocommit=True) as c:
            assert c.execute("SELECT tenant.revoke_token('by-admin')").fetchone()[0] is True
            assert c.execute("SELECT tenant.suspend_tenant('cccccccc-3333-4333-8333-cccccccccccc')").fetchone()[0]
            assert c.execute("SELECT count(*) FROM tenant.revocations").fetchone()[0] == 2
            assert c.execute("SELECT tenant.resume_tenant('cccccccc-3333-4333-8333-cccccccccccc')").fetchone()[0]
            # administrators lift revocations by deleting rows; they do not insert around the functions' checks
            c.execute("DELETE FROM tenant.revoked_token WHERE jti = 'by-admin'")
            assert sqlstate(c, "INSERT INTO tenant.revoked_token (jti) VALUES ('x')")[0] == "42501"
    finally:
        clean.execute("DROP ROLE tg_revoker")


@pytest.mark.parametrize("sql, message", [
    ("SELECT tenant.revoke_token(NULL)", "jti must not be NULL"),
    ("SELECT tenant.revoke_token('')", "jti must be between 1 and 1024 bytes long"),
    ("SELECT tenant.revoke_token(repeat('j', 1025))", "jti must be between 1 and 1024 bytes long"),
    ("SELECT tenant.revoke_subject(NULL, 's')", "issuer must not be NULL"),
    ("SELECT tenant.revoke_subject('i', '')", "subject must be between 1 and 1024 bytes long"),
    ("SELECT tenant.revoke_subject('i', 's', NULL)", "issued_before must not be NULL"),
    ("SELECT tenant.revoke_subject('i', 's', 'infinity')", "issued_before must be a finite time"),
    ("SELECT tenant.suspend_tenant(NULL)", "tenant must not be NULL"),
    ("SELECT tenant.resume_tenant(NULL)", "tenant must not be NULL"),
])
def test_bad_arguments_say_what_to_fix(clean, sql, message):
    assert sqlstate(clean, sql) == ("22023", message)


def test_pg_dump_and_restore_keep_revocations(keys, clean):
    tenant = uuid.uuid4()
    clean.execute("SELECT tenant.revoke_token('dumped-jti')")
    clean.execute("SELECT tenant.revoke_subject(%s, 'dumped-sub', now() + interval '1 minute')", (ISS,))
    clean.execute("SELECT tenant.suspend_tenant(%s)", (tenant,))
    before = clean.execute("SELECT * FROM tenant.revocations ORDER BY kind").fetchall()
    dump = f"/tmp/tenant_guard-e2e-revocations-{os.getpid()}.dump"
    target = "tg_revocations_restored"
    conn = ["-h", HOST, "-p", str(PORT), "-U", "postgres"]
    subprocess.run([f"{BIN}/pg_dump", *conn, "-Fc", "-f", dump, DB], check=True)
    try:
        clean.execute(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
        clean.execute(f"CREATE DATABASE {target}")
        subprocess.run([f"{BIN}/pg_restore", *conn, "-d", target, "--exit-on-error", dump], check=True)
        with psycopg.connect(dsn(dbname=target), autocommit=True) as r:
            assert r.execute("SELECT * FROM tenant.revocations ORDER BY kind").fetchall() == before
        with psycopg.connect(dsn(user=APP, dbname=target), autocommit=True) as app:
            for token, why in ((keys.mint(uuid.uuid4(), jti="dumped-jti"), REVOKED),
                               (keys.mint(uuid.uuid4(), sub="dumped-sub"), SUBJECT_REVOKED),
                               (keys.mint(tenant), SUSPENDED)):
                assert sqlstate(app, "SELECT tenant.authenticate(%s)", (token,)) == rejected(why)
    finally:
        os.unlink(dump)
        clean.execute(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")


OWN_PORT = free_port()   # not PORT + n: the suites of several majors may run at once
OWN_DIR = f"/tmp/tenant_guard-e2e-revocations-{os.getpid()}"


def test_revocations_survive_a_restart(keys):
    subprocess.run([CLUSTER, "stop", OWN_DIR], check=True)
    subprocess.run([CLUSTER, "start", OWN_DIR, str(OWN_PORT)], check=True, stdout=subprocess.DEVNULL)
    try:
        with psycopg.connect(dsn(port=OWN_PORT, dbname="postgres"), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {DB}")
            c.execute(f"DROP ROLE IF EXISTS {APP}")
            c.execute(f"CREATE ROLE {APP} LOGIN NOSUPERUSER NOBYPASSRLS")
        tenant = uuid.uuid4()
        with psycopg.connect(dsn(port=OWN_PORT), autocommit=True) as c:
            c.execute("CREATE EXTENSION tenant_guard")
            c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)",
                      (ISS, psycopg.types.json.Jsonb(keys.jwks()), AUD))
            c.execute("SELECT tenant.revoke_token('restart-jti')")
            c.execute("SELECT tenant.suspend_tenant(%s)", (tenant,))
        subprocess.run([CLUSTER, "restart", OWN_DIR], check=True, stdout=subprocess.DEVNULL)
        with psycopg.connect(dsn(user=APP, port=OWN_PORT), autocommit=True) as app:
            assert sqlstate(app, "SELECT tenant.authenticate(%s)", (keys.mint(uuid.uuid4(), jti="restart-jti"),)) == \
                rejected(REVOKED)
            assert sqlstate(app, "SELECT tenant.authenticate(%s)", (keys.mint(tenant),)) == rejected(SUSPENDED)
            assert app.execute("SELECT tenant.authenticate(%s)", (keys.mint(uuid.uuid4()),)).fetchone()[0]
    finally:
        subprocess.run([CLUSTER, "stop", OWN_DIR], check=True)


@pytest.mark.parametrize("how", ["revoke_token", "suspend_tenant"])
def test_a_cursor_opened_before_stops_at_its_next_fetch(keys, clean, admin, how):
    """A FETCH is a statement too: rows a cursor's InitPlan evaluated the tenant for stop coming once the token is
    revoked or the tenant suspended, also when the cursor was declared before the context was set."""
    for declare_first in (False, True):
        tenant = uuid.uuid4()
        admin.execute("INSERT INTO public.docs (tenant_id, body) SELECT %s, 'c' || g FROM generate_series(1, 5) g",
                      (tenant,))
        try:
            token = keys.mint(tenant, jti=f"cursor-{how}-{declare_first}")
            with psycopg.connect(dsn(user=APP)) as app:   # one transaction
                if declare_first:
                    app.execute("DECLARE c CURSOR FOR SELECT body FROM public.docs ORDER BY body")
                app.execute("SELECT tenant.authenticate(%s)", (token,))
                if not declare_first:
                    app.execute("DECLARE c CURSOR FOR SELECT body FROM public.docs ORDER BY body")
                assert app.execute("FETCH 2 FROM c").fetchall() == [("c1",), ("c2",)]
                if how == "revoke_token":
                    clean.execute("SELECT tenant.revoke_token(%s)", (f"cursor-{how}-{declare_first}",))
                    why = REVOKED
                else:
                    clean.execute("SELECT tenant.suspend_tenant(%s)", (tenant,))
                    why = SUSPENDED
                assert detail(app, "FETCH 2 FROM c") == refused_because(why)
        finally:
            admin.execute("DELETE FROM public.docs WHERE tenant_id = %s", (tenant,))


def revoked_cursor(keys, clean, admin, jti, declare_first=False):
    """An app transaction (returned open) holding cursor c over a fresh tenant's 5 rows, fetched once, whose token
    `jti` is then revoked."""
    tenant = uuid.uuid4()
    admin.execute("INSERT INTO public.docs (tenant_id, body) SELECT %s, 'c' || g FROM generate_series(1, 5) g",
                  (tenant,))
    app = psycopg.connect(dsn(user=APP))
    if declare_first:
        app.execute("DECLARE c CURSOR FOR SELECT body FROM public.docs ORDER BY body")
    app.execute("SELECT tenant.authenticate(%s)", (keys.mint(tenant, jti=jti),))
    if not declare_first:
        app.execute("DECLARE c CURSOR FOR SELECT body FROM public.docs ORDER BY body")
    assert app.execute("FETCH 1 FROM c").fetchall() == [("c1",)]
    clean.execute("SELECT tenant.revoke_token(%s)", (jti,))
    return app, tenant


@pytest.mark.parametrize("fetch", [
    "SELECT cursor_to_xml('c', 100, false, true, '')",
    "SELECT pg_temp.fetch_all('c')",
    "FETCH ALL FROM c",
])
@pytest.mark.parametrize("declare_first", [False, True])
def test_a_cursor_fetched_by_a_function_stops_too(keys, clean, admin, fetch, declare_first):
    """Red team, round 5: a FETCH run by a function (cursor_to_xml, PL/pgSQL) ran below the top level, unchecked;
    a cursor declared before the context was set got one unchecked run after the revocation."""
    app, tenant = revoked_cursor(keys, clean, admin, f"fn-{abs(hash((fetch, declare_first)))}", declare_first)
    try:
        if "pg_temp" in fetch:
            app.execute("SAVEPOINT f")
            app.execute("CREATE FUNCTION pg_temp.fetch_all(c refcursor) RETURNS bigint LANGUAGE plpgsql AS $$ "
                        "DECLARE r record; n bigint := 0; BEGIN LOOP FETCH c INTO r; EXIT WHEN NOT FOUND; n := n + 1; "
                        "END LOOP; RETURN n; END $$")
        assert detail(app, fetch) == refused_because(REVOKED)
    finally:
        app.close()
        admin.execute("DELETE FROM public.docs WHERE tenant_id = %s", (tenant,))


def test_a_cursor_stops_after_the_context_is_reset(keys, clean, admin):
    tenant = uuid.uuid4()
    admin.execute("INSERT INTO public.docs (tenant_id, body) SELECT %s, 'c' || g FROM generate_series(1, 5) g",
                  (tenant,))
    try:
        with psycopg.connect(dsn(user=APP)) as app:
            app.execute("SELECT tenant.authenticate(%s)", (keys.mint(tenant),))
            app.execute("DECLARE c CURSOR FOR SELECT body FROM public.docs ORDER BY body")
            assert app.execute("FETCH 1 FROM c").fetchall() == [("c1",)]
            app.execute("SELECT tenant.reset()")
            assert detail(app, "SELECT cursor_to_xml('c', 100, false, true, '')")[:2] == ("42501", NO_CONTEXT)
    finally:
        admin.execute("DELETE FROM public.docs WHERE tenant_id = %s", (tenant,))


def test_revocations_written_around_the_triggers_setting_still_reach_every_backend(keys, clean):
    """Red team, round 5: a logical-replication apply worker or pg_restore --disable-triggers writes with
    session_replication_role = replica; the invalidation triggers fire ALWAYS."""
    tenant = uuid.uuid4()
    token = keys.mint(tenant, jti="replica-written")
    with session_app(token) as app:
        assert app.execute("SELECT tenant.current_id()").fetchone()[0] == tenant
        clean.execute("BEGIN")
        clean.execute("SET LOCAL session_replication_role = replica")
        clean.execute("INSERT INTO tenant.revoked_token (jti) VALUES ('replica-written')")
        clean.execute("COMMIT")
        assert detail(app, "SELECT tenant.current_id()") == refused_because(REVOKED)
    assert clean.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid::regclass::text LIKE 'tenant.%' "
                         "AND tgname LIKE '%changed' AND tgenabled <> 'A'").fetchone()[0] == 0
    assert clean.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid::regclass::text LIKE 'tenant.%' "
                         "AND tgname LIKE '%replicated' AND tgenabled = 'R'").fetchone()[0] == 9


@pytest.fixture
def subscriber(database, keys):
    """A database of the same cluster subscribed, by logical replication, to the revocations, suspensions and
    issuers of another (each with tenant_guard): (publisher connection, subscriber database name)."""
    pub, sub = "tg_repl_pub", "tg_repl_sub"
    slot = "tg_repl_slot"
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        for db in (sub, pub):
            c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {db}")
        if c.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone():
            c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    tables = "tenant.trusted_issuer, tenant.issuer_tenant, tenant.revoked_token, tenant.revoked_subject, " \
             "tenant.suspended_tenant"
    for db in (pub, sub):
        with psycopg.connect(dsn(dbname=db), autocommit=True) as c:
            c.execute("CREATE EXTENSION tenant_guard")
            c.execute(f"GRANT USAGE ON SCHEMA tenant TO {APP}")
    publisher = psycopg.connect(dsn(dbname=pub), autocommit=True)
    publisher.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)",
                      (ISS, psycopg.types.json.Jsonb(keys.jwks()), AUD))
    publisher.execute(f"CREATE PUBLICATION tg_repl FOR TABLE {tables}")
    # a subscription to the same cluster needs its slot made beforehand
    publisher.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    with psycopg.connect(dsn(dbname=sub), autocommit=True) as c:
        c.execute(f"CREATE SUBSCRIPTION tg_repl CONNECTION 'host={HOST} port={PORT} user=postgres dbname={pub}' "
                  f"PUBLICATION tg_repl WITH (create_slot = false, slot_name = '{slot}', copy_data = true)")
        for _ in range(200):   # the initial copy
            if c.execute("SELECT count(*) FROM tenant.trusted_issuer").fetchone()[0] == 1:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the subscriber did not copy the issuers")
    try:
        yield publisher, sub
    finally:
        publisher.close()
        with psycopg.connect(dsn(dbname=sub), autocommit=True) as c:
            c.execute("ALTER SUBSCRIPTION tg_repl DISABLE")
            c.execute("ALTER SUBSCRIPTION tg_repl SET (slot_name = NONE)")
            c.execute("DROP SUBSCRIPTION tg_repl")
        with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
            c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            for db in (sub, pub):
                c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def applied(sub, sql, expected):
    with psycopg.connect(dsn(dbname=sub), autocommit=True) as c:
        for _ in range(200):
            if c.execute(sql).fetchone()[0] == expected:
                return
            time.sleep(0.05)
    raise AssertionError(f"the subscriber did not apply: {sql}")


@pytest.mark.parametrize("change", ["revoke_token", "revoke_subject", "suspend_tenant", "untrust_issuer"])
def test_a_change_replicated_to_a_subscriber_reaches_every_backend_there(keys, subscriber, change):
    """Red team, round 9: a logical-replication apply worker fires no statement trigger; row triggers enabled
    for replica tell the subscriber's backends, those that had verified and cached the token too."""
    publisher, sub = subscriber
    tenant = uuid.uuid4()
    token = keys.mint(tenant, jti="replicated-" + change, sub="replicated-subject")
    sql, check, why = {
        "revoke_token": (f"SELECT tenant.revoke_token('replicated-{change}')",
                         "SELECT count(*) FROM tenant.revoked_token", rejected(REVOKED)),
        "revoke_subject": (f"SELECT tenant.revoke_subject('{ISS}', 'replicated-subject', now() + interval '1 minute')",
                           "SELECT count(*) FROM tenant.revoked_subject", rejected(SUBJECT_REVOKED)),
        "suspend_tenant": (f"SELECT tenant.suspend_tenant('{tenant}')",
                           "SELECT count(*) FROM tenant.suspended_tenant", rejected(SUSPENDED)),
        "untrust_issuer": (f"SELECT tenant.untrust_issuer('{ISS}')", "SELECT 1 - count(*) FROM tenant.trusted_issuer",
                           rejected("token issuer is not trusted (see tenant.issuers)")),
    }[change]
    with psycopg.connect(dsn(user=APP, dbname=sub), autocommit=True) as kept:
        assert kept.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == tenant
        publisher.execute(sql)
        applied(sub, check, 1)
        assert sqlstate(kept, "SELECT tenant.authenticate(%s)", (token,)) == why
    with psycopg.connect(dsn(user=APP, dbname=sub), autocommit=True) as fresh:
        assert sqlstate(fresh, "SELECT tenant.authenticate(%s)", (token,)) == why


def waiting_on_a_lock(admin, user):
    for _ in range(200):
        if admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'",
                         (user,)).fetchone()[0]:
            return
        time.sleep(0.05)
    raise AssertionError("the backend did not wait on the lock")


@pytest.mark.parametrize("table", ["tenant.revoked_token", "tenant.trusted_issuer"])
def test_a_revocation_committed_while_a_backend_reads_the_issuers_reaches_it_at_its_next_statement(
        keys, clean, table):
    """Red team, round 10: the revocation commits while the backend loads its view (it waits for a lock an
    administrator holds); the invalidation PostgreSQL processes as the backend takes the lock must not be lost,
    or the backend would keep the view without the revocation until the next change."""
    tenant = uuid.uuid4()
    jti = "loading-" + uuid.uuid4().hex
    token = keys.mint(tenant, jti=jti)
    with psycopg.connect(dsn()) as holder, psycopg.connect(dsn(user=APP), autocommit=True) as app:
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        first = {}
        reader = threading.Thread(target=lambda: first.update(r=sqlstate(app, "SELECT tenant.authenticate(%s)",
                                                                          (token,))))
        reader.start()
        waiting_on_a_lock(clean, APP)
        holder.execute("SELECT tenant.revoke_token(%s)", (jti,))
        holder.commit()
        reader.join(timeout=30)
        assert not reader.is_alive()
        # the statement that was loading may have seen either; the next ones see the revocation
        assert first["r"] in (None, rejected(REVOKED))
        for _ in range(2):
            assert sqlstate(app, "SELECT tenant.authenticate(%s)", (token,)) == rejected(REVOKED)


def test_a_backend_that_changes_the_clock_leeway_verifies_again(keys, clean):
    """Red team, round 10: a subject's revocation cut allows for the clock leeway, so a token this backend accepted
    under one leeway is checked again under another (superusers set it; here a session's SET)."""
    tenant = uuid.uuid4()
    clean.execute("SELECT tenant.revoke_subject(%s, 'leeway-subject', now() - interval '20 seconds')", (ISS,))
    token = keys.mint(tenant, sub="leeway-subject", iat=int(time.time()) - 5)
    with psycopg.connect(dsn(), autocommit=True) as su:
        su.execute("SET tenant_guard.clock_skew = 0")
        assert su.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == tenant
        su.execute("SET tenant_guard.clock_skew = 60")
        assert sqlstate(su, "SELECT tenant.authenticate(%s)", (token,)) == rejected(SUBJECT_REVOKED)


@pytest.mark.parametrize("claim", ["jti", "sub"])
def test_a_token_no_revocation_could_name_is_refused(keys, app, claim):
    """Red team, round 5: a jti or sub longer than revoke_token/revoke_subject accept, or with a NUL, could never be
    revoked."""
    for value in ("x" * 1025, "abc\u0000"):
        assert sqlstate(app, "SELECT tenant.authenticate(%s)", (keys.mint(uuid.uuid4(), **{claim: value}),)) == \
            rejected(f"token claim {claim} is longer than 1024 bytes or contains a NUL character "
                     "(no revocation could name it)")


def test_revoking_a_subject_of_an_untrusted_issuer_warns(clean):
    notices = []
    clean.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized, d.message_primary)))
    assert clean.execute("SELECT tenant.revoke_subject('https://issuer.e2e.test/', 'alice')").fetchone()[0] is True
    assert notices == [("WARNING", "the subject is revoked for an issuer that is not trusted: no token matches it "
                                   "until one is")]
