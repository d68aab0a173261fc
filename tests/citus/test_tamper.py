"""The tamper guard on the workers' shards, and the audit over every shard: a shard is protected like its table,
whoever connects to the worker, whatever Citus settings they set."""

import psycopg
import pytest

from conftest import (OWNER, PORT, TENANT_A, TENANT_B, WORKERS, app_conn, connect, fill, make_table, mint, rows,
                      sqlstate)

MANUAL = "SET citus.enable_manual_changes_to_shards = on"


@pytest.fixture(scope="module")
def shards(cluster):
    with connect(user=OWNER) as owner:
        make_table(owner, "tam_orders")
        owner.execute("GRANT TRUNCATE ON tam_orders TO tg_app")   # a grant the audit warns about
    fill("tam_orders")
    with connect() as admin:
        placed = rows(admin, "SELECT p.nodeport, shard_name(s.logicalrelid, s.shardid) FROM pg_dist_shard s "
                             "JOIN pg_dist_placement pl USING (shardid) JOIN pg_dist_node p USING (groupid) "
                             "WHERE s.logicalrelid = 'tam_orders'::regclass ORDER BY s.shardid")
    return placed


def on_worker(port, user, *statements, options=None):
    """The SQLSTATE of the last statement, run after the others on a fresh connection to a worker."""
    with connect(port, user=user, **({"options": options} if options else {})) as c:
        for s in statements[:-1]:
            c.execute(s)
        return sqlstate(c, statements[-1])


@pytest.mark.parametrize("user", ["tg_app", OWNER])
def test_truncate_a_shard_is_refused(shards, user):
    port, shard = shards[0]
    assert on_worker(port, user, MANUAL, f"TRUNCATE {shard}") == "42501"


@pytest.mark.parametrize("statement", [
    "ALTER TABLE {s} DISABLE ROW LEVEL SECURITY",
    "ALTER TABLE {s} NO FORCE ROW LEVEL SECURITY",
    "DROP POLICY tenant_isolation ON {s}",
    "ALTER POLICY tenant_access ON {s} USING (true)",
    "CREATE POLICY wide ON {s} USING (true)",
    "ALTER TABLE {s} RENAME TO hidden",
    "ALTER TABLE {s} SET SCHEMA pg_temp",
    "ALTER TABLE {s} OWNER TO tg_app",
    "ALTER TABLE {s} DROP COLUMN tenant_id",
    "ALTER TABLE {s} ADD CONSTRAINT oracle CHECK (item <> 'b0')",
    "DROP TABLE {s}",
])
def test_the_owner_cannot_weaken_a_shard(shards, statement):
    port, shard = shards[0]
    assert on_worker(port, OWNER, MANUAL, statement.format(s=shard)) in ("42501",)


def test_spoofed_internal_application_name_changes_nothing(shards):
    port, shard = shards[0]
    assert on_worker(port, OWNER, "SET application_name = 'citus_internal gpid=10000000001'",
                     f"ALTER TABLE {shard} NO FORCE ROW LEVEL SECURITY") == "42501"


def test_shards_carry_the_label_themselves(shards):
    """Renaming the worker's copy of the table or deleting Citus's shard metadata leaves every shard protected."""
    for port, shard in shards:
        with connect(port) as w:
            assert rows(w, "SELECT label FROM pg_seclabel WHERE provider = 'tenant_guard' AND objoid = %s::regclass",
                        (shard,)) == [("tenant_scoped",)], shard


def test_metadata_gone_shard_still_guarded(shards):
    port, shard = shards[0]
    shard_id = int(shard.rsplit("_", 1)[1])
    with connect(port, user=OWNER) as c:
        with c.transaction():
            c.execute("SET LOCAL application_name = 'citus_internal gpid=10000000001'")
            assert sqlstate(c, "SELECT citus_internal.delete_shard_metadata(%s)", (shard_id,)) == "42501"
    with connect(port) as c:   # a superuser did it: the shard still carries its own label
        with c.transaction():
            c.execute("SET LOCAL application_name = 'citus_internal gpid=10000000001'")
            c.execute("SELECT citus_internal.delete_shard_metadata(%s)", (shard_id,))
            c.execute("SET LOCAL ROLE tg_owner")
            assert sqlstate(c, f"ALTER TABLE {shard} NO FORCE ROW LEVEL SECURITY") == "42501"
            c.execute("SET LOCAL citus.enable_ddl_propagation = off")
            assert sqlstate(c, "ALTER TABLE tam_orders RENAME TO tam_elsewhere") in (None, "42501")
            assert sqlstate(c, f"ALTER TABLE {shard} NO FORCE ROW LEVEL SECURITY") == "42501"
            raise psycopg.Rollback()


def test_reading_a_shard_directly_is_confined(shards):
    for port, shard in shards:
        with app_conn(port) as c:
            assert sqlstate(c, f"SELECT * FROM {shard}") == "42501"   # no context
            with c.transaction():
                c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
                assert {r[0] for r in rows(c, f"SELECT tenant_id FROM {shard}")} <= {TENANT_A}


def test_the_worker_copy_is_confined_too(shards):
    with app_conn(WORKERS[0]) as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
        assert sorted(r[0] for r in rows(c, "SELECT item FROM tam_orders")) == ["b0", "b1", "b2"]


def test_audit_reports_an_unprotected_shard(shards, admin):
    port, shard = shards[-1]
    with connect(port) as w:   # a superuser on the worker, going around everything
        w.execute(MANUAL)
        w.execute(f"ALTER TABLE {shard} NO FORCE ROW LEVEL SECURITY")
    try:
        found = [r for r in rows(admin, "SELECT severity, check_name, object FROM tenant.audit()")
                 if r[1] == "citus_shard_unprotected"]
        shard_id = shard.rsplit("_", 1)[1]
        assert found == [("critical", "citus_shard_unprotected",
                          f"shard {shard_id} of public.tam_orders on 127.0.0.1:{port}")]
    finally:
        with connect(port) as w:
            w.execute(MANUAL)
            w.execute(f"ALTER TABLE {shard} FORCE ROW LEVEL SECURITY")
    assert [r for r in rows(admin, "SELECT check_name FROM tenant.audit()") if r[0] == "citus_shard_unprotected"] == []


def test_a_new_parent_cannot_open_a_shard(shards):
    """A relation created in the transaction is exempt only from the rules on validations, and only while nothing
    inherits from it: it cannot be made an unprotected parent of a shard (red team, round 2)."""
    port, shard = shards[0]
    with connect(port, user=OWNER) as c:
        c.execute("SET citus.override_table_visibility = off")
        with c.transaction():
            c.execute("CREATE TABLE rt_evil (LIKE tam_orders)")
            c.execute("SECURITY LABEL FOR tenant_guard ON TABLE rt_evil IS 'tenant_scoped'")
            assert sqlstate(c, "ALTER TABLE rt_evil DISABLE ROW LEVEL SECURITY") == "42501"
            assert sqlstate(c, "ALTER TABLE rt_evil NO FORCE ROW LEVEL SECURITY") == "42501"
            raise psycopg.Rollback()
        with c.transaction():
            c.execute("CREATE TABLE rt_evil (LIKE tam_orders)")
            assert sqlstate(c, f"ALTER TABLE {shard} INHERIT rt_evil") == "42501"   # an unprotected parent
            raise psycopg.Rollback()


def test_nil_tenant_cannot_be_written_through_a_folded_function(shards):
    """tenant.current_id() is the nil uuid only while a query is planned and nothing was executed since: a function
    the planner folds cannot write or read under it (red team, round 2)."""
    with app_conn(WORKERS[0]) as c:
        c.execute("SET citus.enable_ddl_propagation = off")
        c.execute("CREATE FUNCTION pg_temp.ins() RETURNS int VOLATILE LANGUAGE plpgsql AS $$ BEGIN "
                  "INSERT INTO tam_orders (tenant_id, item) VALUES ('00000000-0000-0000-0000-000000000000', 'nil'); "
                  "RETURN 1; END $$")
        c.execute("CREATE FUNCTION pg_temp.imm() RETURNS int IMMUTABLE LANGUAGE plpgsql AS "
                  "$$ BEGIN PERFORM pg_temp.ins(); RETURN 1; END $$")
        assert sqlstate(c, "SELECT pg_temp.imm()") == "42501"
        c.execute("CREATE FUNCTION pg_temp.cid() RETURNS uuid IMMUTABLE LANGUAGE sql AS $$ SELECT tenant.current_id() $$")
        assert sqlstate(c, "SELECT pg_temp.cid()") == "42501"
    with connect() as admin:
        assert rows(admin, "SELECT count(*) FROM tam_orders WHERE item = 'nil'") == [(0,)]


@pytest.mark.parametrize("call", [
    "SELECT undistribute_table('tam_orders')",
    "SELECT alter_distributed_table('tam_orders', shard_count := 4)",
    "SELECT isolate_tenant_to_new_shard('tam_orders', '" + str(TENANT_A) + "')",
])
def test_shard_rewrites_are_for_administrators(shards, call):
    """Citus copies the rows as its caller, whom the policies confine, then drops the old shards (red team, round 2:
    the owner with one tenant's token undistributed a table and lost every other tenant's rows)."""
    with connect(user=OWNER) as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        assert sqlstate(c, call) == "42501"
    with connect() as admin:
        assert rows(admin, "SELECT count(DISTINCT tenant_id) FROM tam_orders") == [(3,)]


def test_attaching_a_shard_to_ask_about_its_rows_is_refused(shards):
    """A partition bound over another tenant's values, checked against every row of a shard, would answer yes or
    no about them (red team, round 3)."""
    port, shard = shards[0]
    with connect(port, user=OWNER) as c:
        c.execute("SET citus.override_table_visibility = off")
        with c.transaction():
            c.execute("SET LOCAL citus.enable_ddl_propagation = off")
            c.execute(f"CREATE TABLE rt_probe (LIKE {shard}) PARTITION BY LIST ((item = 'b0'))")
            c.execute("SECURITY LABEL FOR tenant_guard ON TABLE rt_probe IS 'tenant_scoped'")
            assert sqlstate(c, f"ALTER TABLE rt_probe ATTACH PARTITION {shard} FOR VALUES IN (false)") == "42501"
            raise psycopg.Rollback()


@pytest.mark.parametrize("column", [
    "cnt bigint GENERATED ALWAYS AS IDENTITY",
    "cnt bigserial",
    "cnt bigint DEFAULT nextval('rt_seq')",
])
def test_a_sequence_cannot_count_a_shards_rows(shards, column):
    """A shard holds the few tenants hashed to it: a sequence filling a new column would count their rows (red team,
    round 3). Citus refuses these on the distributed table, so only a direct change of a shard brings them."""
    port, shard = shards[0]
    with connect(port, user=OWNER) as c:
        c.execute("SET citus.override_table_visibility = off")
        with c.transaction():
            c.execute(MANUAL)
            c.execute("CREATE SEQUENCE rt_seq")
            assert sqlstate(c, f"ALTER TABLE {shard} ADD COLUMN {column}") == "42501"
            raise psycopg.Rollback()


@pytest.mark.parametrize("statement", ["VACUUM (VERBOSE) {s}", "ANALYZE VERBOSE {s}", "VACUUM (VERBOSE, ANALYZE) {s}"])
def test_verbose_maintenance_of_a_shard_is_refused(shards, statement):
    """Its report counts the live rows of the tenants hashed to the shard (red team, round 3)."""
    port, shard = shards[0]
    assert on_worker(port, OWNER, "SET citus.override_table_visibility = off", statement.format(s=shard)) == "42501"


@pytest.mark.parametrize("level", ["debug1", "debug2", "debug5"])
@pytest.mark.parametrize("statement", ["ANALYZE {s}", "VACUUM {s}", "VACUUM (ANALYZE) {s}", "ANALYZE", "VACUUM"])
def test_maintenance_reporting_at_debug_levels_is_refused(shards, statement, level):
    """PostgreSQL prints VERBOSE's report at DEBUG2 without VERBOSE (red team, round 4: live and dead rows of a
    shard's tenants)."""
    port, shard = shards[0]
    assert on_worker(port, OWNER, "SET citus.override_table_visibility = off", f"SET client_min_messages = {level}",
                     statement.format(s=shard)) == "42501"
    # at the default level, and at LOG, it runs (and prints nothing); VACUUM outside a transaction block
    for quiet in ("notice", "log"):
        with connect(port, user=OWNER) as c:
            c.execute("SET citus.override_table_visibility = off")
            c.execute(f"SET client_min_messages = {quiet}")
            c.execute(statement.format(s=shard))


@pytest.mark.parametrize("column", ["n int NOT NULL", "n int NOT NULL DEFAULT (CASE WHEN random() < 0.5 THEN 1 END)",
                                    "n int DEFAULT (CASE WHEN random() < 0.5 THEN 1 END) NOT NULL",
                                    "n timestamptz NOT NULL DEFAULT clock_timestamp()"])
def test_a_not_null_column_cannot_ask_about_a_shards_rows(shards, column):
    """NOT NULL is checked on every row: without a constant DEFAULT it says whether the shard's tenants have rows,
    and a DEFAULT that varies estimates how many (red team, round 4). A constant DEFAULT is fine."""
    port, shard = shards[0]
    with connect(port, user=OWNER) as c:
        c.execute("SET citus.override_table_visibility = off")
        with c.transaction():
            c.execute(MANUAL)
            assert sqlstate(c, f"ALTER TABLE {shard} ADD COLUMN {column}") == "42501"
            assert sqlstate(c, f"ALTER TABLE {shard} ADD COLUMN k int NOT NULL DEFAULT 0") is None
            assert sqlstate(c, f"ALTER TABLE {shard} ADD COLUMN k2 text NOT NULL DEFAULT 'x'::text") is None
            raise psycopg.Rollback()
    with connect(user=OWNER) as c, c.transaction():
        assert sqlstate(c, "ALTER TABLE tam_orders ADD COLUMN n int NOT NULL") == "42501"
        raise psycopg.Rollback()


@pytest.mark.parametrize("call", [
    "SELECT * FROM worker_save_query_explain_analyze('SELECT item FROM tam_orders', '{}') AS (a text)",
    "SELECT worker_last_saved_explain_analyze()",
])
@pytest.mark.parametrize("node", ["coordinator", "worker"])
def test_citus_explain_analyze_functions_are_refused(shards, call, node):
    """They run a query under EXPLAIN ANALYZE: Rows Removed by Filter counts other tenants' rows (red team,
    round 4)."""
    port = shards[0][0] if node == "worker" else None
    for user in ("tg_app", OWNER):
        with connect(port or PORT, user=user) as c, c.transaction():
            c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
            assert sqlstate(c, call) == "42501"


def test_the_owner_drops_its_local_tables_in_a_database_with_protected_ones(shards):
    """Citus's drop trigger calls its shard-dropping functions for every dropped table, local ones included: those
    are the owner's to drop (red team, round 4). Distributed and reference tables, protected or not, are dropped by
    administrators while the database has protected tables (the workers cannot tell which table Citus's
    shard-dropping functions are called for); protected ones in any case."""
    with connect(user=OWNER) as c:
        c.execute("DROP TABLE IF EXISTS plain_x")
        c.execute("CREATE TABLE plain_x (tenant_id uuid NOT NULL, v int)")
        c.execute("DROP TABLE plain_x")
        assert rows(c, "SELECT to_regclass('plain_x')") == [(None,)]
        c.execute("CREATE TABLE plain_x (tenant_id uuid NOT NULL, v int)")
        c.execute("SELECT create_distributed_table('plain_x', 'tenant_id')")
        assert sqlstate(c, "DROP TABLE plain_x") == "42501"
        assert sqlstate(c, "DROP TABLE tam_orders") == "42501"
    with connect() as admin:
        admin.execute("DROP TABLE plain_x")
