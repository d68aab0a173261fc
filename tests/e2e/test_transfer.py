"""Moving a tenant between databases, and exporting one: tenant.export, tenant.import, tenant.purge, with
tenant.place_tenant and tenant.bind_database. A tenant moves from the pool to a silo on the same server while
another tenant keeps writing; nothing is lost, nothing of another tenant moves, its ciphertexts decrypt in the
silo, and the pool refuses it."""

import copy
import json
import threading
import uuid

import psycopg
import pytest
from conftest import APP, AUD, DB, ISS, dsn, sqlstate

SILO = "tg_e2e_move"
SCHEMA = """
    CREATE SCHEMA IF NOT EXISTS vault;
    CREATE TABLE IF NOT EXISTS vault.accounts (tenant_id uuid NOT NULL, id int NOT NULL, name text NOT NULL,
                                               secret bytea, opened timestamptz NOT NULL DEFAULT now(),
                                               PRIMARY KEY (tenant_id, id));
    CREATE TABLE IF NOT EXISTS vault.entries (tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY,
                                              account_id int NOT NULL, amount numeric NOT NULL,
                                              cents bigint GENERATED ALWAYS AS ((amount * 100)::bigint) STORED,
                                              PRIMARY KEY (tenant_id, id),
                                              FOREIGN KEY (tenant_id, account_id) REFERENCES vault.accounts);
    CREATE TABLE IF NOT EXISTS vault.events (tenant_id uuid NOT NULL, at date NOT NULL, what text)
        PARTITION BY RANGE (at);
    CREATE TABLE IF NOT EXISTS vault.events_2026 PARTITION OF vault.events
        FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    CREATE TABLE IF NOT EXISTS vault.events_2027 PARTITION OF vault.events
        FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
    SECURITY LABEL FOR tenant_guard ON SCHEMA vault IS 'tenant_scoped';
    SECURITY LABEL FOR tenant_guard ON TABLE vault.accounts IS 'tenant_scoped';
    SECURITY LABEL FOR tenant_guard ON TABLE vault.entries IS 'tenant_scoped';
    SECURITY LABEL FOR tenant_guard ON TABLE vault.events IS 'tenant_scoped';
    GRANT USAGE ON SCHEMA vault TO tg_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA vault TO tg_app;
"""
TABLES = ("vault.accounts", "vault.entries", "vault.events")


@pytest.fixture(scope="module")
def move(database, keys):
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {SILO} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {SILO}")
    with psycopg.connect(dsn(dbname=SILO), autocommit=True) as c:
        c.execute("CREATE EXTENSION tenant_guard")
        c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (ISS, psycopg.types.json.Jsonb(keys.jwks()), AUD))
        c.execute(SCHEMA)
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(SCHEMA)
    yield SILO
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("DROP SCHEMA vault CASCADE")   # the shared database's protected tables are other suites' too
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {SILO} WITH (FORCE)")


def app(keys, tenant, dbname=DB):
    c = psycopg.connect(dsn(user=APP, dbname=dbname), autocommit=True)
    c.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(tenant, lifetime=600),))
    return c


def su(dbname=DB):
    return psycopg.connect(dsn(dbname=dbname), autocommit=True)


def fill(c, tenant, accounts, first=1):
    for i in range(first, first + accounts):
        c.execute("INSERT INTO vault.accounts (id, name, secret) VALUES (%s, %s, tenant.encrypt(%s, %s))",
                  (i, f"account {i}", f"secret {i} of {tenant}", f"vault.accounts.secret:{i}"))
        c.execute("INSERT INTO vault.entries (account_id, amount) VALUES (%s, 1.25), (%s, 2.5)", (i, i))
        c.execute("INSERT INTO vault.events (at, what) VALUES ('2026-05-01', %s), ('2027-02-01', %s)",
                  (f"opened {i}", f"audited {i}"))


def counts(c, tenant):
    return {t: c.execute(f"SELECT count(*) FROM {t} WHERE tenant_id = %s", (tenant,)).fetchone()[0] for t in TABLES}


def test_a_tenant_moves_from_the_pool_to_a_silo_while_others_keep_working(keys, move):
    a, b = uuid.uuid4(), uuid.uuid4()
    with app(keys, a) as ca, app(keys, b) as cb:
        fill(ca, a, 5)
        with su() as pool:
            assert pool.execute("SELECT tenant.rotate_key(%s)", (a,)).fetchone() == (2,)
        fill(ca, a, 1, first=6)                                  # under key version 2
        fill(cb, b, 3)
    with su() as pool:
        before_a, before_b = counts(pool, a), counts(pool, b)
    assert before_a == {"vault.accounts": 6, "vault.entries": 12, "vault.events": 12}

    # b keeps writing to the pool during the whole move
    stop, written, failures = threading.Event(), [0], []

    def keep_writing():
        try:
            with app(keys, b) as c:
                while not stop.is_set():
                    c.execute("INSERT INTO vault.entries (account_id, amount) VALUES (1, 0.01)")
                    written[0] += 1
        except Exception as e:  # noqa: BLE001
            failures.append(repr(e))

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        with su() as pool, su(move) as silo:
            document = pool.execute("SELECT tenant.export(%s)", (a,)).fetchone()[0]
            assert document["format"] == "tenant_guard tenant export v1" and document["tenant"] == str(a)
            assert {t["table"]: t["count"] for t in document["tables"]} == before_a
            assert [(k["version"], k["state"]) for k in document["keys"]] == [(1, "retired"), (2, "active")]
            # nothing of another tenant is in it
            for t in document["tables"]:
                assert {r["tenant_id"] for r in t["rows"]} <= {str(a)}
            imported = dict(silo.execute("SELECT * FROM tenant.import(%s)",
                                         (psycopg.types.json.Jsonb(document),)).fetchall())
            assert imported == before_a
            silo.execute("SELECT tenant.bind_database(%s)", (a,))
            assert pool.execute("SELECT tenant.place_tenant(%s, %s)", (a, move)).fetchone() == (None,)
            assert pool.execute("SELECT tenant.purge(%s)", (a,)).fetchone() == (30,)
    finally:
        stop.set()
        writer.join()
    assert failures == [] and written[0] > 0

    with su() as pool, su(move) as silo:
        assert counts(pool, a) == {t: 0 for t in TABLES}
        assert pool.execute("SELECT state FROM tenant.keys WHERE tenant = %s", (a,)).fetchall() == [
            ("destroyed",), ("destroyed",)]
        after_b = counts(pool, b)
        assert after_b["vault.entries"] == before_b["vault.entries"] + written[0]
        assert after_b["vault.accounts"] == before_b["vault.accounts"]
        assert counts(silo, a) == before_a
        assert silo.execute("SELECT count(*) FROM vault.accounts WHERE tenant_id <> %s", (a,)).fetchone() == (0,)
        # the silo's copy has the same checksums
        again = silo.execute("SELECT tenant.export(%s)", (a,)).fetchone()[0]
        assert [(t["table"], t["checksum"]) for t in again["tables"]] == [
            (t["table"], t["checksum"]) for t in document["tables"]]
    # the application's SQL, unchanged, in the silo: the ciphertexts decrypt there
    with app(keys, a, move) as c:
        rows = c.execute("SELECT id, tenant.decrypt(secret, 'vault.accounts.secret:' || id) FROM vault.accounts "
                         "ORDER BY id").fetchall()
        assert rows == [(i, f"secret {i} of {a}") for i in range(1, 7)]
        assert c.execute("SELECT sum(cents) FROM vault.entries").fetchone() == (2250,)
    # the pool refuses the moved tenant, naming the move
    with psycopg.connect(dsn(user=APP), autocommit=True) as c:
        assert sqlstate(c, "SELECT tenant.authenticate(%s)", (keys.mint(a),)) == (
            "28000", f'token rejected: tenant {a} moved to database "{move}" (see tenant.placement): connect there')
    with su() as pool:
        pool.execute("SELECT tenant.unplace_tenant(%s)", (a,))
    with su(move) as silo:
        silo.execute("SELECT tenant.unbind_database()")
        assert silo.execute("SELECT tenant.purge(%s)", (a,)).fetchone() == (30,)


def test_an_import_that_does_not_match_its_export_writes_nothing(keys, move):
    a, intruder = uuid.uuid4(), uuid.uuid4()
    with app(keys, a) as c:
        fill(c, a, 2)
    with su() as pool:
        document = pool.execute("SELECT tenant.export(%s)", (a,)).fetchone()[0]
        pool.execute("SELECT tenant.purge(%s)", (a,))
    with su(move) as silo:
        # another tenant's row slipped into the document: refused, and nothing at all is written
        forged = copy.deepcopy(document)
        accounts = next(t for t in forged["tables"] if t["table"] == "vault.accounts")
        accounts["rows"].append(dict(accounts["rows"][0], tenant_id=str(intruder), id=99))
        accounts["count"] += 1
        err = sqlstate(silo, "SELECT * FROM tenant.import(%s)", (psycopg.types.json.Jsonb(forged),))
        assert err == ("XX001", "the rows imported into vault.accounts do not match the export (3 expected, 2 found, "
                                "or their checksum differs): nothing was imported")
        # a changed value: the checksum differs
        changed = copy.deepcopy(document)
        entries = next(t for t in changed["tables"] if t["table"] == "vault.entries")
        entries["rows"][0]["amount"] = 1000
        assert sqlstate(silo, "SELECT * FROM tenant.import(%s)", (psycopg.types.json.Jsonb(changed),))[0] == "XX001"
        assert silo.execute("SELECT count(*) FROM vault.accounts WHERE tenant_id IN (%s, %s)",
                            (a, intruder)).fetchone() == (0,)
        assert silo.execute("SELECT count(*) FROM tenant.keys WHERE tenant = %s", (a,)).fetchone() == (0,)
        # the document as exported imports
        assert dict(silo.execute("SELECT * FROM tenant.import(%s)", (psycopg.types.json.Jsonb(document),))
                    .fetchall())["vault.accounts"] == 2
        silo.execute("SELECT tenant.purge(%s)", (a,))


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.update(format="something else"),
     ("22023", 'not a tenant export: its format is not "tenant_guard tenant export v1"')),
    (lambda d: d.update(tenant="not a uuid"), ("22023", 'not a tenant export: "tenant" is not a uuid')),
    (lambda d: d.pop("tables"), ("22023", 'not a tenant export: it has no "tables"')),
    (lambda d: d["tables"].append(dict(d["tables"][0], table="public.nowhere")),
     ("42P01", "the export holds rows of table public.nowhere, which this database does not have or does not protect")),
    (lambda d: d["tables"][0].update(columns=["tenant_id", "id"]),
     ("42804", "table vault.accounts has other columns or another tenant column here than in the export")),
])
def test_bad_documents_are_refused_with_what_is_wrong(keys, move, change, expected):
    a = uuid.uuid4()
    with app(keys, a) as c:
        fill(c, a, 1)
    with su() as pool:
        document = pool.execute("SELECT tenant.export(%s)", (a,)).fetchone()[0]
        pool.execute("SELECT tenant.purge(%s)", (a,))
    change(document)
    with su(move) as silo:
        assert sqlstate(silo, "SELECT * FROM tenant.import(%s)", (psycopg.types.json.Jsonb(document),)) == expected


def test_a_tenant_with_other_keys_here_is_not_imported_and_a_bound_silo_takes_no_other_tenant(keys, move):
    a, b = uuid.uuid4(), uuid.uuid4()
    with app(keys, a) as c:
        fill(c, a, 1)
    with app(keys, a, move) as c:
        c.execute("SELECT tenant.encrypt('made here first')")     # a key of its own in the silo
    with su() as pool:
        document = pool.execute("SELECT tenant.export(%s)", (a,)).fetchone()[0]
        pool.execute("SELECT tenant.purge(%s)", (a,))
    with su(move) as silo:
        assert sqlstate(silo, "SELECT * FROM tenant.import(%s)", (psycopg.types.json.Jsonb(document),)) == (
            "55000", f"tenant {a} already has other data keys in this database")
        silo.execute("SELECT tenant.bind_database(%s)", (b,))
        try:
            assert sqlstate(silo, "SELECT * FROM tenant.import(%s)", (psycopg.types.json.Jsonb(document),)) == (
                "55000", "this database is already bound to another tenant; call tenant.unbind_database() first")
        finally:
            silo.execute("SELECT tenant.unbind_database()")


def test_only_administrators_export_import_and_purge(keys, move):
    a = uuid.uuid4()
    with app(keys, a) as c:
        for sql in (f"SELECT tenant.export('{a}')", "SELECT * FROM tenant.import('{}')",
                    f"SELECT tenant.purge('{a}')"):
            assert sqlstate(c, sql)[0] == "42501", sql


def test_the_owners_code_runs_with_the_owners_rights_never_raised(keys, move):
    """A table owner's trigger fires while an administrator imports or purges: it runs as the owner (in the tenant's
    context), so it cannot make the owner a superuser, nor see another tenant's rows."""
    a, b = uuid.uuid4(), uuid.uuid4()
    owner = "tg_vault_owner"
    setup = f"""
        DROP SCHEMA IF EXISTS owned CASCADE;
        DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{owner}') THEN
            CREATE ROLE {owner} LOGIN NOSUPERUSER NOBYPASSRLS; END IF; END $$;
        CREATE SCHEMA owned AUTHORIZATION {owner};
        SET ROLE {owner};
        CREATE TABLE owned.notes (tenant_id uuid NOT NULL, body text NOT NULL);
        CREATE TABLE owned.seen (who text, superuser boolean, visible bigint);
        GRANT INSERT ON owned.seen TO PUBLIC;
        CREATE FUNCTION owned.escalate() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN
            INSERT INTO owned.seen SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                                          (SELECT count(*) FROM owned.notes);
            IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                EXECUTE 'ALTER ROLE {owner} SUPERUSER';
            END IF;
            RETURN NULL;
        END $f$;
        RESET ROLE;
        SECURITY LABEL FOR tenant_guard ON TABLE owned.notes IS 'tenant_scoped';
        CREATE TRIGGER escalate AFTER INSERT OR DELETE ON owned.notes FOR EACH STATEMENT
            EXECUTE FUNCTION owned.escalate();
        GRANT USAGE ON SCHEMA owned TO tg_app;
        GRANT SELECT, INSERT ON owned.notes TO tg_app;
    """
    with su() as pool, su(move) as silo:
        pool.execute(setup)
        silo.execute(setup)
    try:
        for t in (a, b):
            with app(keys, t) as c:
                c.execute("INSERT INTO owned.notes (body) VALUES ('n1'), ('n2')")
        with su() as pool, su(move) as silo:
            pool.execute("DELETE FROM owned.seen")
            document = pool.execute("SELECT tenant.export(%s)", (a,)).fetchone()[0]
            assert dict(silo.execute("SELECT * FROM tenant.import(%s)", (psycopg.types.json.Jsonb(document),))
                        .fetchall()) == {"owned.notes": 2}
            assert pool.execute("SELECT tenant.purge(%s)", (a,)).fetchone() == (2,)
            # the trigger ran as the owner, saw the tenant's rows only, and could not escalate
            for db in (pool, silo):
                for who, superuser, visible in db.execute("SELECT * FROM owned.seen").fetchall():
                    assert (who, superuser) == (owner, False) and visible <= 2
            assert pool.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (owner,)).fetchone() == (False,)
            assert pool.execute("SELECT count(*) FROM owned.notes WHERE tenant_id = %s", (b,)).fetchone() == (2,)
            silo.execute("SELECT tenant.purge(%s)", (a,))
    finally:
        with su() as pool, su(move) as silo:
            for db in (pool, silo):
                db.execute("DROP SCHEMA owned CASCADE")
            pool.execute(f"ALTER ROLE {owner} NOSUPERUSER")


def test_values_nested_deeper_than_any_parser_limit_move_unchanged(keys, move):
    a = uuid.uuid4()
    deep = "[" * 500 + "1" + "]" * 500
    ddl = """CREATE SCHEMA deep; CREATE TABLE deep.docs (tenant_id uuid NOT NULL, body jsonb NOT NULL);
             SECURITY LABEL FOR tenant_guard ON TABLE deep.docs IS 'tenant_scoped';
             GRANT USAGE ON SCHEMA deep TO tg_app; GRANT SELECT, INSERT ON deep.docs TO tg_app;"""
    with su() as pool, su(move) as silo:
        pool.execute(ddl)
        silo.execute(ddl)
    try:
        with app(keys, a) as c:
            c.execute("INSERT INTO deep.docs (body) VALUES (%s::jsonb)", (deep,))
        with su() as pool, su(move) as silo:
            document = pool.execute("SELECT tenant.export(%s)::text", (a,)).fetchone()[0]
            assert dict(silo.execute("SELECT * FROM tenant.import(%s::jsonb, %s)", (document, a)).fetchall()) == {
                "deep.docs": 1}
            assert silo.execute("SELECT body::text = %s::jsonb::text FROM deep.docs", (deep,)).fetchone() == (True,)
            silo.execute("SELECT tenant.purge(%s)", (a,))
            pool.execute("SELECT tenant.purge(%s)", (a,))
    finally:
        with su() as pool, su(move) as silo:
            pool.execute("DROP SCHEMA deep CASCADE")
            silo.execute("DROP SCHEMA deep CASCADE")
