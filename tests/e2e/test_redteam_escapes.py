"""Red-team suite, second part: the escapes an independent red team found in plain SQL (threats A20-A28), each
closed as a class. Every scenario is named after its threat and the member of the class it tries; each asserts the
exact SQLSTATE, message and rows, as the application role (NOSUPERUSER NOBYPASSRLS, owns nothing) or as a login
member of the NOLOGIN table owner (the `owner` fixture). Where a defence has a setting, a negative control shows the
leak with the setting off, so that the test can fail.

Schema and fixtures: redteam.py (tenant A has orders 1, 2; tenant B has orders 1, 2, 3).
"""

import re
import threading
import time

import psycopg
import pytest

from redteam import (A, A_ORDERS, ALL_ORDERS, B, B_ORDERS, DB, NO_CONTEXT, attacker, begin_as, developer,  # noqa: F401
                     dsn, fails, owner, redteam_db, rows, su, superuser_orders)

TOKEN_DEFAULT = ("42501", "tenant_guard.token cannot be stored as a default")
SESSION_REFUSED = ("42501",
                   "a session-scoped tenant context is not allowed here (tenant_guard.allow_session_scope is off)")
def temp_refused(what):
    return ("42501", f"{what} that outlives its transaction is not allowed here "
                     "(tenant_guard.allow_session_scope is off)")


def hidden(function):
    return ("42501", f"function {function} is hidden from roles confined by tenant_guard")


def connect_app(**extra):
    return psycopg.connect(dsn(user="rt_app", dbname=DB, **extra), autocommit=True)


@pytest.fixture
def pooled_role(su):
    """rt_app as behind a transaction pooler: tenant_guard.allow_session_scope = off (role default)."""
    su.execute("ALTER ROLE rt_app SET tenant_guard.allow_session_scope = off")
    try:
        yield
    finally:
        su.execute("ALTER ROLE rt_app RESET ALL")


# ---------------------------------------------------------------------------------------------------------------
# A20. A token as a stored default, or outliving its transaction


@pytest.mark.parametrize("statement", [
    "ALTER ROLE rt_app SET tenant_guard.token = '{t}'",
    "ALTER ROLE rt_app IN DATABASE tg_redteam SET tenant_guard.token = '{t}'",
    "ALTER ROLE ALL SET tenant_guard.token = '{t}'",
    "ALTER DATABASE tg_redteam SET tenant_guard.token = '{t}'",
    "ALTER SYSTEM SET tenant_guard.token = '{t}'",
    "CREATE FUNCTION app.as_a() RETURNS uuid LANGUAGE sql SET tenant_guard.token = '{t}' AS 'SELECT tenant.current_id()'",
    "CREATE PROCEDURE app.as_a() LANGUAGE sql SET tenant_guard.token = '{t}' AS 'SELECT 1'",
], ids=["role", "role in database", "all roles", "database", "alter system", "function", "procedure"])
def test_A20_a_token_is_refused_as_every_kind_of_stored_default(su, keys, statement):
    assert fails(su, statement.format(t=keys.mint(A))) == TOKEN_DEFAULT
    assert rows(su, "SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') ~ 'token'") == [(0,)]


def test_A20_a_function_cannot_take_the_token_as_its_set_clause_later(su, keys):
    su.execute("CREATE FUNCTION app.as_a() RETURNS uuid LANGUAGE sql AS 'SELECT tenant.current_id()'")
    try:
        assert fails(su, f"ALTER FUNCTION app.as_a() SET tenant_guard.token = '{keys.mint(A)}'") == TOKEN_DEFAULT
    finally:
        su.execute("DROP FUNCTION app.as_a()")


def test_A20_a_token_stored_as_a_role_default_before_the_check_never_yields_a_tenant(su, keys):
    """What 0.1.0 accepted: a role default holding tenant A's token. Every later connection started as tenant A."""
    su.execute("INSERT INTO pg_db_role_setting VALUES (0, 'rt_app'::regrole, ARRAY['tenant_guard.token=' || %s])",
               (keys.mint(A),))
    try:
        warnings = []
        with connect_app() as c:
            c.add_notice_handler(lambda d: warnings.append(d.message_primary))
            assert fails(c, "SELECT count(*) FROM app.orders") == NO_CONTEXT
            c.execute("DISCARD ALL")
            assert fails(c, "SELECT count(*) FROM app.orders") == NO_CONTEXT
            c.execute("BEGIN")
            assert fails(c, "INSERT INTO app.orders (id, customer_id) VALUES (99, 1)") == NO_CONTEXT
            c.execute("ROLLBACK")
        # and the audit reports the stored token, readable by every role
        assert [r[:3] for r in rows(su, "SELECT * FROM tenant.audit() WHERE check_name = 'stored_token'")] == [
            ("critical", "stored_token", "role rt_app")]
    finally:
        su.execute("DELETE FROM pg_db_role_setting WHERE setrole = 'rt_app'::regrole")
    assert superuser_orders(su) == ALL_ORDERS


def test_A20_a_token_stored_in_a_function_set_clause_before_the_check_never_yields_a_tenant(su, attacker, keys):
    su.execute("CREATE FUNCTION app.as_a() RETURNS uuid LANGUAGE sql AS 'SELECT tenant.current_id()'")
    su.execute("UPDATE pg_proc SET proconfig = ARRAY['tenant_guard.token=' || %s] WHERE oid = 'app.as_a'::regproc",
               (keys.mint(A),))
    su.execute("GRANT EXECUTE ON FUNCTION app.as_a() TO rt_app")
    try:
        assert fails(attacker, "SELECT app.as_a()") == NO_CONTEXT
        assert [r[:3] for r in rows(su, "SELECT * FROM tenant.audit() WHERE check_name = 'stored_token'")] == [
            ("critical", "stored_token", "app.as_a()")]
    finally:
        su.execute("DROP FUNCTION app.as_a()")


def test_A20_a_connection_option_token_is_refused_when_session_scope_is_off(pooled_role, keys):
    with connect_app(options=f"-c tenant_guard.token={keys.mint(A)}") as c:
        assert fails(c, "SELECT count(*) FROM app.orders") == SESSION_REFUSED
        c.execute("BEGIN")
        assert fails(c, "SELECT tenant.current_id()") == SESSION_REFUSED
        c.execute("ROLLBACK")


def test_A20_a_session_level_set_config_is_refused_when_session_scope_is_off(su, pooled_role, keys):
    # set_config reads the value back, which only pg_read_all_settings members may: they can store a session token
    su.execute("GRANT pg_read_all_settings TO rt_app")
    try:
        with connect_app() as c:
            c.execute("SELECT set_config('tenant_guard.token', %s, false)", (keys.mint(A),))
            assert fails(c, "SELECT count(*) FROM app.orders") == SESSION_REFUSED
            c.execute("BEGIN")
            c.execute("SELECT set_config('tenant_guard.token', %s, true)", (keys.mint(B),))  # transaction scope: fine
            assert rows(c, "SELECT count(*) FROM app.orders") == [(3,)]
            c.execute("COMMIT")
            assert fails(c, "SELECT count(*) FROM app.orders") == SESSION_REFUSED  # the session value is back
    finally:
        su.execute("REVOKE pg_read_all_settings FROM rt_app")


def test_A20_with_session_scope_on_the_session_forms_still_work(keys):
    with connect_app(options=f"-c tenant_guard.token={keys.mint(A)}") as c:
        assert rows(c, "SELECT count(*) FROM app.orders") == [(2,)]


# ---------------------------------------------------------------------------------------------------------------
# A21. Statistics and cost channels that count other tenants' rows


@pytest.fixture
def secret_index(su):
    """B has 1,000 orders noted 'secret', found through an index that does not lead with the tenant column."""
    su.execute("CREATE INDEX rt_orders_note ON app.orders (note)")
    su.execute("INSERT INTO app.orders SELECT %s, g, 1, 'secret' FROM generate_series(100, 1099) g", (B,))
    su.execute("ANALYZE app.orders")
    try:
        yield "app.rt_orders_note"
    finally:
        su.execute("DELETE FROM app.orders WHERE id >= 100")
        su.execute("DROP INDEX app.rt_orders_note")


def index_counter_moved(conn, keys):
    """Runs A's query for 'secret' (0 rows for A) through the index, returns how far the index counter moved."""
    begin_as(conn, keys, A)
    conn.execute("SET LOCAL enable_seqscan = off")
    conn.execute("SET LOCAL enable_bitmapscan = off")
    before = rows(conn, "SELECT pg_stat_get_xact_tuples_returned('app.rt_orders_note'::regclass)")[0][0]
    assert rows(conn, "SELECT count(*) FROM app.orders WHERE note = 'secret'") == [(0,)]
    after = rows(conn, "SELECT pg_stat_get_xact_tuples_returned('app.rt_orders_note'::regclass)")[0][0]
    conn.execute("ROLLBACK")
    return after - before


def test_A21_the_index_counter_that_counted_other_tenants_rows_is_hidden(secret_index, attacker, keys):
    begin_as(attacker, keys, A)
    assert fails(attacker, "SELECT pg_stat_get_xact_tuples_returned('app.rt_orders_note'::regclass)") == \
        hidden("pg_stat_get_xact_tuples_returned")
    attacker.execute("ROLLBACK")


def test_A21_negative_control_with_hide_statistics_off_the_counter_leaks(secret_index, keys):
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
        c.execute("SET tenant_guard.hide_statistics = off")
        c.execute("SET ROLE rt_app")
        assert index_counter_moved(c, keys) == 1000  # B's 1,000 'secret' entries, seen from A's empty result


@pytest.mark.parametrize("query", [
    "SELECT pg_stat_get_tuples_returned('app.orders'::regclass)",
    "SELECT pg_stat_get_tuples_fetched('app.orders'::regclass)",
    "SELECT pg_stat_get_live_tuples('app.orders'::regclass)",
    "SELECT pg_stat_get_xact_tuples_inserted('app.orders'::regclass)",
    "SELECT pg_stat_get_numscans('app.orders_pkey'::regclass)",
    "SELECT pg_stat_get_blocks_fetched('app.orders'::regclass)",
    "SELECT pg_stat_get_db_tuples_returned(oid) FROM pg_database WHERE datname = current_database()",
    "SELECT * FROM pg_stat_user_tables",
    "SELECT * FROM pg_stat_xact_user_tables",
    "SELECT * FROM pg_stat_user_indexes",
    "SELECT * FROM pg_statio_user_tables",
    "SELECT * FROM pg_stat_database",
    "SELECT * FROM pg_stat_activity",
    "SELECT * FROM pg_stat_progress_create_index",
    "SELECT pg_relation_size('app.orders')",
    "SELECT pg_total_relation_size('app.orders')",
    "SELECT * FROM pg_stat_statements",
    "SELECT currtid2('app.orders', '(0,1)')",  # follows another tenant's updated row
    "SELECT * FROM pgrowlocks('app.orders')",  # other tenants' locked rows
    "SELECT pg_prewarm('app.orders')",  # the table's size in blocks
    "SELECT pg_database_size(current_database())",
])
def test_A21_every_statistics_channel_is_hidden_from_the_app_role(su, attacker, keys, query):
    for extension in ("pg_stat_statements", "pgrowlocks", "pg_prewarm"):
        su.execute(f"CREATE EXTENSION IF NOT EXISTS {extension}")
    begin_as(attacker, keys, A)
    state, message = fails(attacker, query)
    attacker.execute("ROLLBACK")
    assert state == "42501" and re.fullmatch(r"function \w+ is hidden from roles confined by tenant_guard", message), \
        (query, message)


def test_A21_statistics_reached_through_functions_are_hidden_too(su, owner, attacker):
    owner.execute("CREATE FUNCTION app.peek(regclass) RETURNS bigint LANGUAGE sql "
                  "AS 'SELECT pg_stat_get_tuples_returned($1)'")  # inlined into the caller's query
    owner.execute("CREATE FUNCTION app.peek_dynamic(regclass) RETURNS bigint LANGUAGE plpgsql AS $$ "
                  "DECLARE n bigint; BEGIN EXECUTE 'SELECT pg_stat_get_tuples_returned($1)' INTO n USING $1; "
                  "RETURN n; END $$")
    try:
        assert fails(attacker, "SELECT app.peek('app.orders')") == hidden("pg_stat_get_tuples_returned")
        assert fails(attacker, "SELECT app.peek_dynamic('app.orders')") == hidden("pg_stat_get_tuples_returned")
    finally:
        owner.execute("DROP FUNCTION app.peek(regclass), app.peek_dynamic(regclass)")


def test_A21_monitoring_roles_and_administrators_keep_statistics(su):
    su.execute("DROP ROLE IF EXISTS rt_monitor")
    su.execute("CREATE ROLE rt_monitor LOGIN IN ROLE pg_monitor")
    su.execute("CREATE ROLE rt_dba LOGIN IN ROLE tenant_guard_admin")
    try:
        for role in ("rt_monitor", "rt_dba"):
            with psycopg.connect(dsn(user=role, dbname=DB), autocommit=True) as c:
                assert rows(c, "SELECT count(*) > 0 FROM pg_stat_user_tables WHERE schemaname = 'app'") == [(True,)]
    finally:
        su.execute("DROP ROLE rt_monitor")
        su.execute("DROP ROLE rt_dba")


def test_A21_statistics_are_hidden_in_databases_without_tenant_guard_too(su, redteam_db, keys):
    """The counters and pg_stat_activity cover the whole cluster: from another database, the app role would see the
    tenant database's counters and its sessions' statement text."""
    with psycopg.connect(dsn(user="rt_app", dbname="postgres"), autocommit=True) as c:
        for query, function in [
            ("SELECT tup_fetched FROM pg_stat_database WHERE datname = 'tg_redteam'", "pg_stat_get_db_tuples_fetched"),
            ("SELECT query FROM pg_stat_activity WHERE usename = 'rt_app'", "pg_stat_get_activity"),
        ]:
            state, message = fails(c, query)
            assert state == "42501" and message.endswith("is hidden from roles confined by tenant_guard"), message
    # a database that should keep them can have them back, by a superuser's decision
    su.execute("ALTER DATABASE postgres SET tenant_guard.hide_statistics = off")
    try:
        with psycopg.connect(dsn(user="rt_app", dbname="postgres"), autocommit=True) as c:
            assert rows(c, "SELECT count(*) > 0 FROM pg_stat_database") == [(True,)]
    finally:
        su.execute("ALTER DATABASE postgres RESET tenant_guard.hide_statistics")


def estimates(conn, keys):
    """A's row estimates for a value B holds 1,000 times and for an absent one."""
    begin_as(conn, keys, A)

    def estimate(value):
        plan = rows(conn, "EXPLAIN SELECT * FROM app.orders WHERE note = %s", (value,))[0][0]
        return int(re.search(r"rows=(\d+)", plan).group(1))

    try:
        return estimate("secret"), estimate("absent")
    finally:
        conn.execute("ROLLBACK")


def test_A21_plain_explain_is_refused(secret_index, attacker, keys):
    begin_as(attacker, keys, A)
    assert fails(attacker, "EXPLAIN SELECT * FROM app.orders WHERE note = 'secret'") == (
        "42501", "EXPLAIN is refused: table app.orders is protected by tenant_guard")
    attacker.execute("ROLLBACK")


def test_A21_plans_of_the_app_role_do_not_depend_on_other_tenants_values(secret_index, developer, keys):
    """The plan the planner chooses shows in the order of a tenant's own rows and in the time a query takes: with
    planner statistics hidden, a value B holds 1,000 times plans like an absent one."""
    secret, absent = estimates(developer, keys)
    assert secret == absent, (secret, absent)


def test_A21_negative_control_with_planner_statistics_the_plans_tell(secret_index, developer, keys):
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
        c.execute("SET tenant_guard.allow_explain = on")
        c.execute("SET tenant_guard.hide_planner_statistics = off")
        c.execute("SET ROLE rt_app")
        secret, absent = estimates(c, keys)
    assert secret >= 100 * absent, (secret, absent)


def test_A21_log_messages_such_as_plans_never_reach_the_app_role(attacker, su, keys):
    received = []
    attacker.add_notice_handler(lambda d: received.append((d.severity_nonlocalized, d.message_primary)))
    attacker.execute("SET client_min_messages = log")
    attacker.execute("SET debug_print_plan = on")  # the plan tree, with its row estimates, at LOG level
    assert [r for r in as_tenant_rows(attacker, keys)] == A_ORDERS
    assert [r for r in received if r[0] == "LOG"] == []
    # negative control: a superuser's client does receive the plan
    seen = []
    su.add_notice_handler(lambda d: seen.append(d.severity_nonlocalized))
    su.execute("SET client_min_messages = log")
    su.execute("SET debug_print_plan = on")
    su.execute("SELECT count(*) FROM app.countries")
    assert "LOG" in seen


def as_tenant_rows(conn, keys):
    begin_as(conn, keys, A)
    try:
        return rows(conn, "SELECT id, note FROM app.orders ORDER BY id")
    finally:
        conn.execute("COMMIT")


# ---------------------------------------------------------------------------------------------------------------
# A22. Deferred execution: nothing carries a tenant's rows out of its transaction


HOLD_KEPT = ("42501", "a holdable cursor cannot keep rows of table app.orders past COMMIT: it is protected by "
                      "tenant_guard")


def commit_fails(conn):
    try:
        conn.execute("COMMIT")
    except psycopg.Error as e:
        return (e.sqlstate, e.diag.message_primary)
    raise AssertionError("COMMIT succeeded")


@pytest.mark.parametrize("make,query", [
    ("CREATE FUNCTION app.rt_notes() RETURNS SETOF text LANGUAGE plpgsql "
     "AS 'BEGIN RETURN QUERY SELECT note FROM app.orders; END'", "SELECT * FROM app.rt_notes()"),
    ("CREATE FUNCTION app.rt_notes() RETURNS SETOF text LANGUAGE sql VOLATILE "
     "AS 'SELECT note FROM app.orders; SELECT note FROM app.orders'", "SELECT * FROM app.rt_notes()"),
    ("CREATE FUNCTION app.rt_notes() RETURNS text LANGUAGE sql "
     "AS 'SELECT 1'", "SELECT query_to_xml('SELECT note FROM app.orders', false, false, '')"),
], ids=["plpgsql function", "sql function", "query_to_xml"])
def test_A22_a_holdable_cursor_through_a_function_cannot_keep_rows_past_commit(su, attacker, keys, make, query):
    su.execute(make)
    su.execute("GRANT EXECUTE ON FUNCTION app.rt_notes() TO rt_app")
    try:
        begin_as(attacker, keys, A)
        attacker.execute(f"DECLARE c CURSOR WITH HOLD FOR {query}")  # its plan names no protected table
        assert commit_fails(attacker) == HOLD_KEPT
        # the next transaction on this connection, another tenant's, finds nothing to fetch
        begin_as(attacker, keys, B)
        assert fails(attacker, "FETCH ALL FROM c") == ("34000", 'cursor "c" does not exist')
        attacker.execute("ROLLBACK")
    finally:
        su.execute("DROP FUNCTION app.rt_notes()")


def test_A22_a_holdable_cursor_over_a_function_is_refused_at_its_first_fetch_too(su, attacker, keys):
    """A FETCH before COMMIT fills the function's result, which the run at COMMIT would reuse without running it."""
    su.execute("CREATE FUNCTION app.rt_notes() RETURNS SETOF text LANGUAGE plpgsql "
               "AS 'BEGIN RETURN QUERY SELECT note FROM app.orders; END'")
    su.execute("GRANT EXECUTE ON FUNCTION app.rt_notes() TO rt_app")
    try:
        begin_as(attacker, keys, A)
        attacker.execute("DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT * FROM app.rt_notes()")
        assert fails(attacker, "FETCH 1 FROM c") == HOLD_KEPT
        attacker.execute("ROLLBACK")
    finally:
        su.execute("DROP FUNCTION app.rt_notes()")


def test_A22_a_procedure_loop_cannot_keep_protected_rows_across_its_own_commit(su, attacker, keys):
    su.execute("CREATE PROCEDURE app.rt_batch(token text) LANGUAGE plpgsql AS $$ DECLARE r record; BEGIN "
               "PERFORM tenant.authenticate(token); FOR r IN SELECT note FROM app.orders LOOP COMMIT; END LOOP; END $$")
    su.execute("GRANT EXECUTE ON PROCEDURE app.rt_batch(text) TO rt_app")
    try:
        assert fails(attacker, "CALL app.rt_batch(%s)", (keys.mint(A),)) == HOLD_KEPT
    finally:
        su.execute("DROP PROCEDURE app.rt_batch(text)")


def test_A22_a_holdable_cursor_over_an_inlined_function_or_a_view_is_refused_at_declare(su, attacker, keys):
    su.execute("CREATE FUNCTION app.rt_orders() RETURNS SETOF app.orders LANGUAGE sql STABLE "
               "AS 'SELECT * FROM app.orders'")
    su.execute("CREATE VIEW app.rt_view WITH (security_invoker = true) AS SELECT note FROM app.orders")
    su.execute("GRANT SELECT ON app.rt_view TO rt_app")
    try:
        begin_as(attacker, keys, A)
        for query in ("SELECT * FROM app.rt_orders()", "SELECT * FROM app.rt_view"):
            assert fails(attacker, f"DECLARE c CURSOR WITH HOLD FOR {query}") == (
                "42501", "DECLARE ... WITH HOLD is refused: table app.orders is protected by tenant_guard")
        attacker.execute("ROLLBACK")
    finally:
        su.execute("DROP VIEW app.rt_view")
        su.execute("DROP FUNCTION app.rt_orders()")


def test_A22_a_holdable_cursor_over_shared_data_still_works(su, attacker, keys):
    su.execute("INSERT INTO app.countries VALUES ('FR')")
    su.execute("GRANT SELECT ON app.countries TO rt_app")
    try:
        begin_as(attacker, keys, A)
        attacker.execute("DECLARE c CURSOR WITH HOLD FOR SELECT code FROM app.countries")
        attacker.execute("COMMIT")
        assert rows(attacker, "FETCH ALL FROM c") == [("FR",)]
        attacker.execute("CLOSE c")
    finally:
        su.execute("DELETE FROM app.countries")


@pytest.mark.parametrize("statement,what", [
    ("CREATE TEMP TABLE rt_t (note text)", "a temporary table"),
    ("CREATE TEMP TABLE IF NOT EXISTS rt_t (note text)", "a temporary table"),
    ("CREATE TEMP TABLE rt_t (note text) ON COMMIT PRESERVE ROWS", "a temporary table"),
    ("CREATE TEMP TABLE rt_t (note text) ON COMMIT DELETE ROWS", "a temporary table"),  # it would shadow a name
    ("CREATE TEMP TABLE rt_t AS SELECT 'x' AS note", "a temporary table"),
    ("SELECT 'x' AS note INTO TEMP rt_t", "a temporary table"),
    ("CREATE TABLE pg_temp.rt_t AS SELECT 'x' AS note", "a temporary table"),
    ("CREATE TABLE pg_temp.rt_t (note text)", "a temporary table"),
    ("BEGIN; SET LOCAL search_path = pg_temp; CREATE TABLE rt_t (note text)", "a temporary table"),
    ("CREATE TEMP VIEW orders AS SELECT * FROM app.orders", "a temporary view"),
    ("CREATE VIEW pg_temp.orders AS SELECT * FROM app.orders", "a temporary view"),
    ("CREATE FUNCTION pg_temp.hook() RETURNS boolean LANGUAGE sql AS 'SELECT true'", "a temporary function"),
    ("CREATE TEMP SEQUENCE rt_s", "a temporary sequence"),
    ("CREATE TYPE pg_temp.rt_c AS (x int)", "a temporary type"),
    ("CREATE TYPE pg_temp.rt_e AS ENUM ('x')", "a temporary type"),
    ("CREATE DOMAIN pg_temp.rt_d AS text", "a temporary domain"),
    ("CREATE AGGREGATE pg_temp.rt_a (int) (sfunc = int4pl, stype = int)", "a temporary object"),
], ids=["temp", "if not exists", "preserve rows", "delete rows", "as", "select into", "pg_temp as", "pg_temp",
        "search path", "temp view", "pg_temp view", "function", "sequence", "composite", "enum", "domain",
        "aggregate"])
def test_A22_nothing_outlives_the_transaction_in_the_temporary_schema_behind_a_pooler(pooled_role, statement, what):
    """Rows left in a temporary table pass to the next client on the server connection; a temporary view or function
    would shadow that client's unqualified names (pg_temp is searched first) and run in its transaction."""
    with connect_app() as c:
        *setup, statement = statement.split("; ")
        for s in setup:
            c.execute(s)
        assert fails(c, statement) == temp_refused(what)


def test_A22_a_temporary_table_dropped_at_commit_is_allowed(pooled_role, keys):
    with connect_app() as c:
        begin_as(c, keys, B)
        c.execute("CREATE TEMP TABLE rt_d ON COMMIT DROP AS SELECT note FROM app.orders")
        assert rows(c, "SELECT count(*) FROM rt_d") == [(3,)]
        c.execute("COMMIT")
        assert fails(c, "SELECT * FROM rt_d")[0] == "42P01"


# ---------------------------------------------------------------------------------------------------------------
# A23. Reaching a protected table through another relation


UNPROTECTED_PARENT = ("42501", "{} is refused: protected table app.orders would become a child of {}, which is not "
                               "protected the same way")


def test_A23_the_owner_cannot_attach_a_protected_table_under_an_unprotected_parent(owner, attacker):
    owner.execute("CREATE TABLE app.rt_shadow (LIKE app.orders) PARTITION BY RANGE (id)")
    try:
        assert fails(owner, "ALTER TABLE app.rt_shadow ATTACH PARTITION app.orders FOR VALUES FROM (MINVALUE) TO "
                            "(MAXVALUE)") == (UNPROTECTED_PARENT[0],
                                              UNPROTECTED_PARENT[1].format("ATTACH PARTITION", "app.rt_shadow"))
        owner.execute("GRANT SELECT ON app.rt_shadow TO rt_app")
        assert rows(attacker, "SELECT count(*) FROM app.rt_shadow") == [(0,)]  # nothing reached through it
    finally:
        owner.execute("DROP TABLE app.rt_shadow")


def test_A23_the_owner_cannot_put_a_protected_table_under_an_unprotected_inheritance_parent(owner):
    owner.execute("CREATE TABLE app.rt_shadow (LIKE app.orders)")
    try:
        assert fails(owner, "ALTER TABLE app.orders INHERIT app.rt_shadow") == (
            UNPROTECTED_PARENT[0], UNPROTECTED_PARENT[1].format("INHERIT", "app.rt_shadow"))
    finally:
        owner.execute("DROP TABLE app.rt_shadow")


def test_A23_a_new_inheritance_child_of_a_protected_table_is_protected_too(owner, attacker, keys):
    owner.execute("CREATE TABLE app.rt_archive () INHERITS (app.orders)")
    try:
        owner.execute("GRANT SELECT, INSERT ON app.rt_archive TO rt_app")
        with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
            c.execute("INSERT INTO app.rt_archive VALUES (%s, 50, 1, 'b-archived')", (B,))
        begin_as(attacker, keys, A)
        assert rows(attacker, "SELECT note FROM app.rt_archive") == []
        assert rows(attacker, "SELECT note FROM app.orders WHERE id = 50") == []
        attacker.execute("COMMIT")
        assert fails(attacker, "SELECT note FROM app.rt_archive") == NO_CONTEXT
    finally:
        owner.execute("DROP TABLE app.rt_archive")


def test_A23_the_owner_cannot_attach_a_table_that_carries_its_own_trigger(owner):
    owner.execute("CREATE TABLE app.rt_log (body text)")
    owner.execute("CREATE FUNCTION app.rt_copy() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS "
                  "'BEGIN INSERT INTO app.rt_log VALUES (NEW.body); RETURN NEW; END'")
    owner.execute("CREATE TABLE app.rt_events_c (LIKE app.events)")
    owner.execute("CREATE TRIGGER rt_copy AFTER INSERT ON app.rt_events_c FOR EACH ROW EXECUTE FUNCTION app.rt_copy()")
    try:
        assert fails(owner, "ALTER TABLE app.events ATTACH PARTITION app.rt_events_c FOR VALUES IN ('c')") == (
            "42501", "ATTACH PARTITION is refused: trigger rt_copy, which calls function app.rt_copy() would run "
                     "over every tenant's rows of table app.rt_events_c")
        assert fails(owner, "ALTER TABLE app.rt_events_c INHERIT app.events") == (
            "42501", "INHERIT is refused: trigger rt_copy, which calls function app.rt_copy() would run over every "
                     "tenant's rows of table app.rt_events_c")
    finally:
        owner.execute("DROP TABLE app.rt_events_c, app.rt_log")
        owner.execute("DROP FUNCTION app.rt_copy()")


def test_A23_a_table_labelled_otherwise_cannot_be_attached_under_a_protected_parent(owner):
    owner.execute("CREATE TABLE app.rt_evil (LIKE app.events)")
    owner.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.rt_evil IS 'global'")
    try:
        assert fails(owner, "ALTER TABLE app.events ATTACH PARTITION app.rt_evil FOR VALUES IN ('c')") == (
            "42501", "ATTACH PARTITION is refused: app.rt_evil would become a child of protected table app.events "
                     "without its protection")
    finally:
        owner.execute("DROP TABLE app.rt_evil")


def test_A23_a_child_of_an_unprotected_parent_cannot_be_protected(owner):
    owner.execute("CREATE TABLE app.rt_upar (tenant_id uuid, v text) PARTITION BY LIST (v)")
    owner.execute("CREATE TABLE app.rt_kid PARTITION OF app.rt_upar DEFAULT")
    try:
        assert fails(owner, "SECURITY LABEL FOR tenant_guard ON TABLE app.rt_kid IS 'tenant_scoped'") == (
            "42501", "protecting app.rt_kid is refused: it is a child of app.rt_upar, which is not protected the same "
                     "way")
    finally:
        owner.execute("DROP TABLE app.rt_upar")


# ---------------------------------------------------------------------------------------------------------------
# A24. Check-then-act races: the guard decides on the object the statement alters


def wait_for_lock(su, pid):
    for _ in range(200):
        if rows(su, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)) == [("Lock",)]:
            return
        time.sleep(0.05)
    raise AssertionError("the statement never waited for its lock")


def test_A24_a_rename_race_cannot_switch_the_table_the_guard_checked(su, owner, redteam_db):
    """A decoy is locked; the owner's ALTER TABLE on the decoy waits; meanwhile the decoy and the protected table
    swap names. The statement must be judged on the table it finally alters."""
    owner.execute("CREATE TABLE app.rt_decoy (tenant_id uuid)")
    result = {}
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as locker, \
            psycopg.connect(dsn(user="rt_deployer", dbname=DB), autocommit=True) as victim:
        victim.execute("SET ROLE rt_owner")
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE app.rt_decoy IN ACCESS EXCLUSIVE MODE")

        def alter():
            try:
                victim.execute("ALTER TABLE app.rt_decoy DISABLE ROW LEVEL SECURITY, NO FORCE ROW LEVEL SECURITY")
                result["outcome"] = None
            except psycopg.Error as e:
                result["outcome"] = (e.sqlstate, e.diag.message_primary)

        t = threading.Thread(target=alter)
        t.start()
        wait_for_lock(su, victim.info.backend_pid)
        locker.execute("ALTER TABLE app.rt_decoy RENAME TO rt_decoy_old")
        locker.execute("ALTER TABLE app.orders RENAME TO rt_decoy")
        locker.execute("COMMIT")
        t.join(30)
    try:
        assert result["outcome"] == (
            "42501", "DISABLE ROW LEVEL SECURITY is refused: table app.rt_decoy is protected by tenant_guard")
        assert rows(su, "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                        "WHERE oid = 'app.rt_decoy'::regclass") == [(True, True)]
    finally:
        su.execute("ALTER TABLE app.rt_decoy RENAME TO orders")
        su.execute("DROP TABLE app.rt_decoy_old")


def test_A24_a_drop_policy_race_is_judged_on_the_table_it_drops_from(su, owner, redteam_db):
    owner.execute("CREATE TABLE app.rt_decoy (tenant_id uuid)")
    owner.execute("ALTER TABLE app.rt_decoy ENABLE ROW LEVEL SECURITY")
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
        c.execute("CREATE POLICY tenant_isolation ON app.rt_decoy USING (true)")
    result = {}
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as locker, \
            psycopg.connect(dsn(user="rt_deployer", dbname=DB), autocommit=True) as victim:
        victim.execute("SET ROLE rt_owner")
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE app.rt_decoy IN ACCESS EXCLUSIVE MODE")

        def drop():
            try:
                victim.execute("DROP POLICY tenant_isolation ON app.rt_decoy")
                result["outcome"] = None
            except psycopg.Error as e:
                result["outcome"] = (e.sqlstate, e.diag.message_primary)

        t = threading.Thread(target=drop)
        t.start()
        wait_for_lock(su, victim.info.backend_pid)
        locker.execute("ALTER TABLE app.rt_decoy RENAME TO rt_decoy_old")
        locker.execute("ALTER TABLE app.orders RENAME TO rt_decoy")
        locker.execute("COMMIT")
        t.join(30)
    try:
        assert result["outcome"] == ("42501", "DROP POLICY is refused: table app.rt_decoy is protected by tenant_guard")
        assert rows(su, "SELECT policy_intact FROM tenant.scoped_tables WHERE table_name = 'app.rt_decoy'::regclass"
                    ) == [(True,)]
    finally:
        su.execute("ALTER TABLE app.rt_decoy RENAME TO orders")
        su.execute("DROP TABLE app.rt_decoy_old")


# ---------------------------------------------------------------------------------------------------------------
# A25. Owner code and schema changes over other tenants' rows


@pytest.fixture
def owner_tools(owner, su):
    """What an owner would write to see other tenants' rows: a log table, leaky functions, a copying trigger, a domain
    and an operator that call them, tables to point foreign keys at, a type."""
    owner.execute("CREATE TABLE app.rt_log (note text)")
    owner.execute("CREATE FUNCTION app.rt_grab() RETURNS int LANGUAGE plpgsql AS "
                  "'BEGIN INSERT INTO app.rt_log SELECT note FROM app.orders; RETURN 0; END'")
    owner.execute("CREATE FUNCTION app.rt_le(text, text) RETURNS boolean LANGUAGE plpgsql AS "
                  "'BEGIN INSERT INTO app.rt_log VALUES ($1); RETURN $1 OPERATOR(pg_catalog.<=) $2; END'")
    owner.execute("CREATE OPERATOR app.<= (LEFTARG = text, RIGHTARG = text, FUNCTION = app.rt_le)")
    owner.execute("CREATE TABLE app.rt_ref (t uuid PRIMARY KEY)")
    owner.execute("CREATE TABLE app.rt_ref2 (t uuid, v text, PRIMARY KEY (t, v))")
    owner.execute("CREATE TYPE app.rt_type AS (tenant_id uuid, id int, customer_id int, note text)")
    owner.execute("CREATE FUNCTION app.rt_leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS "
                  "'BEGIN INSERT INTO app.rt_log VALUES ($1); RETURN true; END'")
    owner.execute("CREATE FUNCTION app.rt_leak_text(text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS "
                  "'BEGIN INSERT INTO app.rt_log VALUES ($1); RETURN $1; END'")
    owner.execute("CREATE FUNCTION app.rt_copy() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS "
                  "'BEGIN INSERT INTO app.rt_log VALUES (NEW.note); RETURN NEW; END'")
    owner.execute("CREATE DOMAIN app.rt_note AS text")
    owner.execute("CREATE DOMAIN app.rt_spied AS text CHECK (app.rt_leak(VALUE))")
    owner.execute("SET search_path = app, pg_catalog")  # app.<= shadows pg_catalog.<= in this session
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
        c.execute("CREATE TABLE app.rt_notes (tenant_id uuid, body app.rt_note)")
        c.execute("ALTER TABLE app.rt_notes OWNER TO rt_owner")
        c.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.rt_notes IS 'tenant_scoped'")
        c.execute("INSERT INTO app.rt_notes VALUES (%s, 'b-note')", (B,))
    try:
        yield owner
    finally:
        assert rows(su, "SELECT count(*) FROM app.rt_log") == [(0,)], "owner code saw rows"
        su.execute("DROP TABLE IF EXISTS app.rt_log, app.rt_notes, app.rt_ref, app.rt_ref2, app.rt_probe CASCADE")
        su.execute("DROP TYPE app.rt_type; DROP DOMAIN app.rt_note, app.rt_spied")
        su.execute("DROP FUNCTION app.rt_leak(text), app.rt_leak_text(text), app.rt_copy(), app.rt_grab(), "
                   "app.rt_le(text, text) CASCADE")


VALIDATES = "{} is refused: it would read every tenant's rows of table app.orders, which is protected by tenant_guard"
CODE = "{} is refused: {}, which calls function {} would run over every tenant's rows of table app.orders"
FK = "{} is refused: foreign key {} between {} and {} crosses the tenant boundary"


@pytest.mark.parametrize("statement,message", [
    ("CREATE TRIGGER rt_copy AFTER INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.rt_copy()",
     CODE.format("CREATE TRIGGER", "trigger rt_copy", "app.rt_copy()")),
    ("CREATE TRIGGER rt_copy AFTER INSERT ON app.orders FOR EACH ROW WHEN (app.rt_leak(NEW.note)) "
     "EXECUTE FUNCTION suppress_redundant_updates_trigger()",
     CODE.format("CREATE TRIGGER", "trigger rt_copy", "app.rt_leak(text)")),
    ("CREATE TRIGGER rt_copy AFTER INSERT ON app.orders FOR EACH ROW WHEN (pg_notify('x', NEW.note) IS NULL) "
     "EXECUTE FUNCTION suppress_redundant_updates_trigger()",
     CODE.format("CREATE TRIGGER", "trigger rt_copy", "pg_notify(text,text)")),
    ("CREATE TRIGGER rt_copy AFTER INSERT ON app.orders FOR EACH ROW "
     "WHEN (query_to_xml('SELECT app.rt_leak(''x'')', false, false, '') IS NULL) "
     "EXECUTE FUNCTION suppress_redundant_updates_trigger()",
     CODE.format("CREATE TRIGGER", "trigger rt_copy", "query_to_xml(text,boolean,boolean,text)")),
    ("CREATE RULE rt_copy AS ON INSERT TO app.orders DO ALSO INSERT INTO app.rt_log VALUES (NEW.note)",
     "CREATE RULE is refused: table app.orders is protected by tenant_guard"),
    ("CREATE POLICY rt_leak ON app.orders AS RESTRICTIVE USING (app.rt_leak(note))",
     "CREATE POLICY is refused: table app.orders is protected by tenant_guard"),
    ("ALTER TABLE app.orders ALTER COLUMN note TYPE text USING app.rt_leak_text(note)",
     VALIDATES.format('changing the type of column "note"')),
    ("ALTER TABLE app.orders ALTER COLUMN note TYPE integer USING note::integer",  # the error names a value
     VALIDATES.format('changing the type of column "note"')),
    ("ALTER TABLE app.orders ADD CHECK (app.rt_leak(note))", VALIDATES.format("adding a CHECK constraint")),
    ("ALTER TABLE app.orders ADD CHECK (note <> 'b-order-3')", VALIDATES.format("adding a CHECK constraint")),
    ("ALTER TABLE app.orders ADD CONSTRAINT rt_leak CHECK (app.rt_leak(note)) NOT VALID",
     CODE.format("ALTER TABLE", "constraint rt_leak", "app.rt_leak(text)")),
    ("ALTER TABLE app.orders ADD CONSTRAINT rt_leak CHECK (pg_notify('x', note)::text = '') NOT VALID",
     CODE.format("ALTER TABLE", "constraint rt_leak", "pg_notify(text,text)")),
    ("ALTER TABLE app.orders ALTER COLUMN note SET DEFAULT app.rt_grab()",
     CODE.format("ALTER TABLE", "default of column note", "app.rt_grab()")),
    ("ALTER TABLE app.orders ADD COLUMN rt_x int DEFAULT 0, ALTER COLUMN rt_x SET DEFAULT app.rt_grab()",
     CODE.format("ALTER TABLE", "default of column rt_x", "app.rt_grab()")),
    ("ALTER TABLE app.orders ADD COLUMN rt_x app.rt_spied", CODE.format("ALTER TABLE", "column rt_x", "app.rt_leak(text)")),
    ("ALTER DOMAIN app.rt_note ADD CONSTRAINT rt_c CHECK (app.rt_leak(VALUE)) NOT VALID",
     CODE.format("ALTER DOMAIN", "column body", "app.rt_leak(text)").replace("app.orders", "app.rt_notes")),
    ("ALTER DOMAIN app.rt_note SET DEFAULT app.rt_grab()::text",
     CODE.format("ALTER DOMAIN", "column body", "app.rt_grab()").replace("app.orders", "app.rt_notes")),
    ("ALTER TABLE app.orders ADD CONSTRAINT rt_between CHECK (note BETWEEN '' AND 'z') NOT VALID",  # app.<= first
     CODE.format("ALTER TABLE", "constraint rt_between", "app.rt_le(text,text)")),
    ("ALTER TABLE app.orders ADD CONSTRAINT rt_cast CHECK (note::app.rt_spied IS NOT NULL) NOT VALID",
     CODE.format("ALTER TABLE", "constraint rt_cast", "app.rt_leak(text)")),
    ("ALTER TABLE app.orders ADD CONSTRAINT rt_fk FOREIGN KEY (tenant_id) REFERENCES app.rt_ref (t) "
     "ON UPDATE CASCADE NOT VALID", FK.format("ALTER TABLE", "rt_fk", "app.orders", "app.rt_ref")),
    ("ALTER TABLE app.orders ADD CONSTRAINT rt_fk FOREIGN KEY (tenant_id, note) REFERENCES app.rt_ref2 NOT VALID",
     FK.format("ALTER TABLE", "rt_fk", "app.orders", "app.rt_ref2")),
    ("CREATE TABLE app.rt_probe (id int, t uuid, FOREIGN KEY (t, id) REFERENCES app.orders (tenant_id, id))",
     FK.format("CREATE TABLE", "rt_probe_t_id_fkey", "app.rt_probe", "app.orders")),
    ("ALTER TABLE app.orders OF app.rt_type",
     VALIDATES.format("ALTER TABLE ... OF (its columns would follow a type that ALTER TYPE rewrites)")),
    ("ALTER TABLE app.orders ADD UNIQUE (note)", VALIDATES.format("adding a UNIQUE constraint")),
    ("ALTER TABLE app.orders ADD FOREIGN KEY (tenant_id, customer_id) REFERENCES app.customers",
     VALIDATES.format("adding a FOREIGN KEY constraint")),
    ("ALTER TABLE app.orders ALTER COLUMN note SET NOT NULL", VALIDATES.format('SET NOT NULL on column "note"')),
    # NOT NULL checked on every row: whether any row exists, or (a varying DEFAULT) how many (red team, round 4)
    ("ALTER TABLE app.orders ADD COLUMN rt_nn int NOT NULL",
     VALIDATES.format('adding NOT NULL column "rt_nn" without a constant DEFAULT')),
    ("ALTER TABLE app.orders ADD COLUMN rt_nn int NOT NULL DEFAULT (CASE WHEN random() < 0.5 THEN 1 END)",
     VALIDATES.format('adding NOT NULL column "rt_nn" without a constant DEFAULT')),
    ("ALTER TABLE app.orders ADD COLUMN rt_nn int DEFAULT (CASE WHEN random() < 0.5 THEN 1 END) NOT NULL",
     VALIDATES.format('adding NOT NULL column "rt_nn" without a constant DEFAULT')),
    ("ALTER TABLE app.orders ADD COLUMN rt_nn timestamptz NOT NULL DEFAULT clock_timestamp()",
     VALIDATES.format('adding NOT NULL column "rt_nn" without a constant DEFAULT')),
    ("ALTER TABLE app.orders ADD COLUMN rt_g text GENERATED ALWAYS AS (app.rt_leak_text(note)) STORED",
     VALIDATES.format('adding generated column "rt_g"')),
    ("ALTER TABLE app.orders ADD COLUMN rt_c text CHECK (note <> 'b-order-3')",
     VALIDATES.format('adding column "rt_c" with a CHECK constraint')),
    ("CREATE INDEX ON app.orders (app.rt_leak_text(note))", VALIDATES.format("an index on an expression")),
    ("CREATE UNIQUE INDEX ON app.orders (note)", VALIDATES.format("CREATE UNIQUE INDEX")),  # names a duplicate
    ("CREATE INDEX ON app.orders (note) WHERE app.rt_leak(note)", VALIDATES.format("CREATE INDEX ... WHERE")),
    ("CREATE STATISTICS app.rt_s ON (app.rt_leak_text(note)), id FROM app.orders",
     VALIDATES.format("CREATE STATISTICS on expressions")),
    ("ALTER DOMAIN app.rt_note ADD CHECK (app.rt_leak(VALUE))",
     "validating a domain constraint is refused: it would read every tenant's rows of table app.rt_notes, which is "
     "protected by tenant_guard"),
    ("SECURITY LABEL FOR tenant_guard ON TABLE app.orders IS NULL",
     "removing or changing the protection of app.orders is refused"),
    ("SECURITY LABEL FOR tenant_guard ON TABLE app.orders IS 'tenant_scoped column=customer_id'",
     "removing or changing the protection of app.orders is refused"),
])
def test_A25_the_owner_cannot_run_code_or_validation_over_other_tenants_rows(owner_tools, su, statement, message):
    assert fails(owner_tools, statement) == ("42501", message)
    assert superuser_orders(su) == ALL_ORDERS
    assert rows(su, "SELECT bool_and(policy_intact AND rls_forced) FROM tenant.scoped_tables") == [(True,)]


def test_A25_what_the_owner_may_still_do(owner_tools, su, attacker, keys):
    """The line: the shape of the table, plain indexes, NOT VALID constraints and triggers with trusted code."""
    su.execute("CREATE FUNCTION app.rt_touch() RETURNS trigger LANGUAGE plpgsql AS "
               "'BEGIN NEW.note := coalesce(NEW.note, ''-''); RETURN NEW; END'")  # a superuser's: trusted
    try:
        for statement in [
            "ALTER TABLE app.orders ADD COLUMN rt_extra text",
            "ALTER TABLE app.orders ALTER COLUMN rt_extra SET DEFAULT 'x'",
            "ALTER TABLE app.orders ADD COLUMN rt_state text NOT NULL DEFAULT 'new'",
            "ALTER TABLE app.orders ADD COLUMN rt_n bigint NOT NULL DEFAULT 0::bigint",
            "CREATE INDEX rt_idx ON app.orders (tenant_id, note)",
            "ALTER TABLE app.orders ADD CONSTRAINT rt_nv CHECK (note <> '') NOT VALID",
            "CREATE TRIGGER rt_touch BEFORE INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.rt_touch()",
            "COMMENT ON TABLE app.orders IS 'orders'",
            "GRANT SELECT ON app.orders TO rt_other",
        ]:
            owner_tools.execute(statement)
        begin_as(attacker, keys, A)
        attacker.execute("INSERT INTO app.orders (id, customer_id) VALUES (70, 1)")
        assert rows(attacker, "SELECT note FROM app.orders WHERE id = 70") == [("-",)]
        attacker.execute("ROLLBACK")
    finally:
        su.execute("DROP TRIGGER rt_touch ON app.orders; DROP INDEX app.rt_idx; "
                   "ALTER TABLE app.orders DROP CONSTRAINT rt_nv, DROP COLUMN rt_extra, DROP COLUMN rt_state, "
                   "DROP COLUMN rt_n; "
                   "DROP FUNCTION app.rt_touch(); COMMENT ON TABLE app.orders IS NULL; "
                   "REVOKE SELECT ON app.orders FROM rt_other")


def test_A25_the_type_of_a_typed_protected_table_cannot_be_altered(su, owner):
    """ALTER TYPE ... CASCADE rewrites, renames or drops the columns of the tables typed by it, the tenant column too."""
    owner.execute("CREATE TYPE app.rt_ct AS (tenant_id uuid, v text)")
    su.execute("CREATE TABLE app.rt_typed OF app.rt_ct")
    su.execute("ALTER TABLE app.rt_typed OWNER TO rt_owner")
    su.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.rt_typed IS 'tenant_scoped'")
    refused = ("42501", "ALTER TYPE on the type of a typed table is refused: it would read every tenant's rows of table "
                        "app.rt_typed, which is protected by tenant_guard")
    try:
        for statement in ["ALTER TYPE app.rt_ct ALTER ATTRIBUTE v TYPE int CASCADE",
                          "ALTER TYPE app.rt_ct RENAME ATTRIBUTE tenant_id TO tid CASCADE",
                          "ALTER TYPE app.rt_ct DROP ATTRIBUTE tenant_id CASCADE",
                          "ALTER TYPE app.rt_ct ADD ATTRIBUTE w text CASCADE"]:
            assert fails(owner, statement) == refused, statement
    finally:
        su.execute("DROP TABLE app.rt_typed; DROP TYPE app.rt_ct")


def test_A25_the_owner_cannot_protect_a_table_that_carries_its_own_trigger(owner_tools):
    owner_tools.execute("CREATE TABLE app.rt_new (tenant_id uuid, note text)")
    owner_tools.execute("CREATE TRIGGER rt_copy AFTER INSERT ON app.rt_new FOR EACH ROW EXECUTE FUNCTION app.rt_copy()")
    try:
        assert fails(owner_tools, "SECURITY LABEL FOR tenant_guard ON TABLE app.rt_new IS 'tenant_scoped'") == (
            "42501", "protecting it is refused: trigger rt_copy, which calls function app.rt_copy() would run over "
                     "every tenant's rows of table app.rt_new")
    finally:
        owner_tools.execute("DROP TABLE app.rt_new")


def test_A25_the_app_role_with_a_trigger_grant_cannot_add_a_trigger_either(su, attacker):
    su.execute("GRANT TRIGGER ON app.orders TO rt_app")
    su.execute("CREATE SCHEMA rt_mine AUTHORIZATION rt_app")
    try:
        attacker.execute("CREATE FUNCTION rt_mine.copy() RETURNS trigger LANGUAGE plpgsql AS "
                         "'BEGIN RAISE NOTICE ''%'', NEW.note; RETURN NEW; END'")
        assert fails(attacker, "CREATE TRIGGER rt_copy AFTER INSERT ON app.orders FOR EACH ROW "
                               "EXECUTE FUNCTION rt_mine.copy()") == (
            "42501", CODE.format("CREATE TRIGGER", "trigger rt_copy", "rt_mine.copy()"))
    finally:
        su.execute("DROP SCHEMA rt_mine CASCADE")
        su.execute("REVOKE TRIGGER ON app.orders FROM rt_app")


# ---------------------------------------------------------------------------------------------------------------
# A26. Statement text: a token written as a literal is not readable by other sessions


REDACTED = "[token redacted by tenant_guard]"


def activity(su, pid):
    return rows(su, "SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))[0][0]


def test_A26_a_literal_token_is_redacted_from_the_statement_text_others_see(su, attacker, keys):
    token = keys.mint(A)
    attacker.execute("BEGIN")
    attacker.execute(f"SELECT tenant.authenticate('{token}')")
    assert activity(su, attacker.info.backend_pid) == f"SELECT tenant.authenticate('{REDACTED}')"
    attacker.execute(f"SET LOCAL tenant_guard.token = '{token}'")
    assert activity(su, attacker.info.backend_pid) == f"SET LOCAL tenant_guard.token = '{REDACTED}'"
    attacker.execute("ROLLBACK")


def test_A26_a_prepared_statement_with_a_literal_token_stays_redacted_at_each_execution(su, attacker, keys):
    token = keys.mint(A)
    attacker.execute("BEGIN")
    for _ in range(3):
        attacker.execute(f"SELECT tenant.authenticate('{token}')", prepare=True)
        assert token.split(".")[2] not in activity(su, attacker.info.backend_pid)
    attacker.execute("ROLLBACK")


def test_A26_a_literal_token_in_a_failing_statement_is_redacted_too(su, attacker, keys):
    """A statement that fails to parse, or before it runs, stays the session's reported text while it is idle."""
    token = keys.mint(B)
    for statement in [f"SELECT tenant.authenticate('{token}'))",
                      f"SELECT tenant.authenticate('{token}') FROM rt_no_such_table",
                      f"SET LOCAL tenant_guard.token = '{token}' x"]:
        try:
            attacker.execute(statement)
            raise AssertionError(statement)
        except psycopg.Error:
            pass
        text = activity(su, attacker.info.backend_pid)
        assert token.split(".")[1] not in text and REDACTED in text, text


def test_A26_other_sessions_of_the_app_role_cannot_read_statement_text_at_all(attacker, keys):
    with connect_app() as spy:
        assert fails(spy, "SELECT query FROM pg_stat_activity") == hidden("pg_stat_get_activity")
        assert fails(spy, "SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s") == \
            hidden("pg_stat_get_backend_idset")


# ---------------------------------------------------------------------------------------------------------------
# A27. Internals never reach a client


def test_A27_no_rust_backtrace_reaches_a_client_whatever_the_environment(su, owner):
    # the server under test runs in a hostile environment on purpose (tests/support/cluster.sh)
    su.execute("CREATE TEMP TABLE rt_env (v text)")
    su.execute("COPY rt_env FROM PROGRAM 'printenv RUST_BACKTRACE'")
    assert rows(su, "SELECT v FROM rt_env") == [("full",)]
    try:
        owner.execute("ALTER TABLE app.orders ADD COLUMN note text")  # PostgreSQL's error, inside the hook
    except psycopg.Error as e:
        assert (e.sqlstate, e.diag.message_primary) == ("42701", 'column "note" of relation "orders" already exists')
        assert e.diag.message_detail is None
    try:
        owner.execute("ALTER TABLE app.orders NO FORCE ROW LEVEL SECURITY")  # tenant_guard's own
    except psycopg.Error as e:
        assert e.sqlstate == "42501" and e.diag.message_detail is None


def test_A27_bad_input_is_quoted_back_bounded_and_without_internal_errors(su):
    state, message = fails(su, f"SECURITY LABEL FOR tenant_guard ON TABLE app.countries IS '{'x' * 100_000}'")
    assert state == "22023" and message == f'invalid tenant_guard security label "{"x" * 64}..."'
    assert fails(su, "SECURITY LABEL FOR tenant_guard ON TABLE app.countries IS 'é\tx'") == (
        "22023", 'invalid tenant_guard security label "é?x"')
    assert fails(su, "SELECT tenant.protect(0, 'tenant_id')") == ("42809", "tenant.protect() takes a table")


# ---------------------------------------------------------------------------------------------------------------
# A28. Privileged code under the caller's search_path


def test_A28_internal_queries_never_use_operators_from_the_callers_search_path(su, owner, attacker, keys):
    owner.execute("CREATE TABLE app.rt_calls (n int)")
    owner.execute("GRANT INSERT ON app.rt_calls TO PUBLIC")
    for left, right in [("oid", "oid"), ("name", "name"), ("text", "text"), ("name", "text"), ('"char"', '"char"'),
                        ("regclass", "regclass"), ("int2", "int2"), ("uuid", "uuid")]:
        fn = f"app.rt_spy_{left.strip(chr(34))}_{right.strip(chr(34))}"
        owner.execute(f"CREATE FUNCTION {fn}({left}, {right}) RETURNS boolean LANGUAGE plpgsql AS "
                      f"'BEGIN INSERT INTO app.rt_calls VALUES (1); RETURN $1::text OPERATOR(pg_catalog.=) $2::text; END'")
        owner.execute(f"CREATE OPERATOR app.= (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = {fn})")
    try:
        su.execute("SET search_path = app, pg_catalog")
        su.execute("CREATE TABLE app.rt_parent (tenant_id uuid, k int) PARTITION BY LIST (k)")
        su.execute("CREATE TABLE app.rt_part PARTITION OF app.rt_parent FOR VALUES IN (1)")
        su.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.rt_parent IS 'tenant_scoped'")
        su.execute("CREATE TABLE app.rt_part2 PARTITION OF app.rt_parent FOR VALUES IN (2)")
        su.execute("CREATE TABLE app.rt_plain (tenant_id uuid)")
        su.execute("SELECT tenant.protect('app.rt_plain')")
        su.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.rt_parent IS NULL")
        su.execute("SELECT count(*) FROM tenant.audit()")
        su.execute("SELECT count(*) FROM tenant.scoped_tables")
        su.execute("RESET search_path")
        assert rows(su, "SELECT count(*) FROM app.rt_calls") == [(0,)]
    finally:
        su.execute("RESET search_path")
        su.execute("DROP TABLE IF EXISTS app.rt_parent, app.rt_plain")
        owner.execute("DROP TABLE app.rt_calls")
        for left, right in [("oid", "oid"), ("name", "name"), ("text", "text"), ("name", "text"), ("char", "char"),
                            ("regclass", "regclass"), ("int2", "int2"), ("uuid", "uuid")]:
            owner.execute(f"DROP FUNCTION app.rt_spy_{left}_{right} CASCADE")


@pytest.mark.parametrize("statement, what", [
    ("VACUUM (VERBOSE) app.orders", "VACUUM or ANALYZE VERBOSE"),
    ("ANALYZE VERBOSE app.orders", "VACUUM or ANALYZE VERBOSE"),
    ("SET client_min_messages = debug2; ANALYZE app.orders", "VACUUM or ANALYZE at a DEBUG client_min_messages"),
    ("SET client_min_messages = debug1; VACUUM app.orders", "VACUUM or ANALYZE at a DEBUG client_min_messages"),
])
def test_A21_maintenance_reports_counting_every_tenants_rows_are_refused_to_the_owner(owner, su, statement, what):
    """VACUUM and ANALYZE report a table's live and dead rows, every tenant's: with VERBOSE, and at DEBUG2 without
    it (red team, round 4, on a Citus shard; the same on any protected table)."""
    try:
        assert fails(owner, statement) == ("42501", f"{what} is refused: table app.orders is protected by tenant_guard")
    finally:
        owner.execute("RESET client_min_messages")
    # without a table list, refused whenever it would report
    owner.execute("SET client_min_messages = debug2")
    try:
        assert fails(owner, "ANALYZE")[0] == "42501"
    finally:
        owner.execute("RESET client_min_messages")
    # the same maintenance, quiet, runs
    owner.execute("ANALYZE app.orders")
    owner.execute("VACUUM app.orders")
