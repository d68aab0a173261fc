"""Red-team suite, fifth part: what the second red team's application round found (threats A35-A39), each closed as
a class: statements that outlive their client behind a pooler (A35), statements run inside other statements (A36),
decisions taken from an old snapshot (A37) or an old clock (A38), and counters of other tenants' rows that are not
statistics (A39). Every scenario runs as the application role (NOSUPERUSER NOBYPASSRLS, owns nothing) unless it
says otherwise, and asserts the exact SQLSTATE, message and rows; where a defence has a setting, a negative control
shows the leak with it off.

Schema and fixtures: redteam.py (tenant A has orders 1, 2; tenant B has orders 1, 2, 3).
"""

import json
import re
import threading
import uuid

import psycopg
import pytest

from conftest import AUD, Keys
from redteam import (A, A_ORDERS, B, B_ORDERS, DB, attacker, begin_as, developer, dsn, fails, owner,  # noqa: F401
                     redteam_db, rows, su)

D = uuid.UUID("d0d0d0d0-0000-4000-8000-00000000000d")   # a tenant with no data key yet


def connect_app(**extra):
    return psycopg.connect(dsn(user="rt_app", dbname=DB, **extra), autocommit=True)


def replaced(name):
    return ("42501", f'prepared statement "{name}" was replaced since it first ran in this session '
                     "(tenant_guard.allow_session_scope is off)")


def temp_refused(what):
    return ("42501", f"{what} that outlives its transaction is not allowed here "
                     "(tenant_guard.allow_session_scope is off)")


@pytest.fixture
def pooled_role(su):
    """rt_app as behind a transaction pooler: tenant_guard.allow_session_scope = off (role default)."""
    su.execute("ALTER ROLE rt_app SET tenant_guard.allow_session_scope = off")
    try:
        yield
    finally:
        su.execute("ALTER ROLE rt_app RESET ALL")


# ---------------------------------------------------------------------------------------------------------------
# A35. Prepared statements behind a transaction pooler: one client's code in the next client's transaction


EVIL = "SELECT note FROM app.orders WHERE pg_notify('rt35', note) IS NULL"
GOOD = "SELECT note FROM app.orders ORDER BY id"


def from_earlier(name):
    return ("42501", f'prepared statement "{name}" was prepared in an earlier transaction '
                     "(tenant_guard.allow_session_scope is off)")


def pq_rows(pgconn, result):
    """Rows of a libpq result as text (the protocol-level tests drive libpq directly, as a driver or pooler does)."""
    if result.status not in (psycopg.pq.ExecStatus.TUPLES_OK, psycopg.pq.ExecStatus.COMMAND_OK):
        raise psycopg.errors.lookup(result.error_field(psycopg.pq.DiagnosticField.SQLSTATE).decode())(
            result.error_field(psycopg.pq.DiagnosticField.MESSAGE_PRIMARY).decode())
    return [tuple(result.get_value(r, c).decode() for c in range(result.nfields)) for r in range(result.ntuples)]


def pq_fails(pgconn, result):
    try:
        pq_rows(pgconn, result)
    except psycopg.Error as e:
        return (e.sqlstate, str(e))
    raise AssertionError("the attack succeeded")


WRAPPED_EXECUTE = ["EXECUTE q", "EXPLAIN (COSTS OFF) EXECUTE q", "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE q",
                   "CREATE TEMP TABLE t ON COMMIT DROP AS EXECUTE q",
                   "EXPLAIN (COSTS OFF, VERBOSE) CREATE TEMP TABLE t ON COMMIT DROP AS EXECUTE q",
                   "EXPLAIN (ANALYZE, COSTS OFF) CREATE TEMP TABLE t ON COMMIT DROP AS EXECUTE q"]
WRAPPED_IDS = ["execute", "explain", "explain analyze", "create table as", "explain create table as",
               "explain analyze create table as"]


@pytest.mark.parametrize("run", WRAPPED_EXECUTE, ids=WRAPPED_IDS)
def test_A35_sql_execute_runs_only_what_prepare_made_in_the_same_transaction(pooled_role, keys, run):
    """Behind a pooler, a statement from an earlier transaction may be another client's: replaced, or with literals
    another tenant wrote into it."""
    with connect_app() as c, connect_app() as listener:
        listener.execute("LISTEN rt35")
        c.execute(f"PREPARE q AS {EVIL}")            # the previous client's transaction
        begin_as(c, keys, B)
        assert fails(c, run) == from_earlier("q")
        c.execute("COMMIT")
        assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
        begin_as(c, keys, A)                         # prepared and run in one transaction: allowed
        c.execute(f"PREPARE q2 AS {GOOD}")
        assert rows(c, "EXECUTE q2") == [(n,) for _, n in A_ORDERS]
        c.execute("COMMIT")


def test_A35_sql_execute_cannot_run_a_statement_a_driver_prepared_in_an_earlier_transaction(pooled_role, keys):
    with connect_app() as c:
        begin_as(c, keys, A)
        c.execute(GOOD, prepare=True)                # psycopg's server-side statement _pg3_0
        assert rows(c, "EXECUTE _pg3_0") == [(n,) for _, n in A_ORDERS]   # its own transaction: allowed
        c.execute("COMMIT")
        begin_as(c, keys, B)
        assert fails(c, "EXECUTE _pg3_0") == from_earlier("_pg3_0")
        c.execute("ROLLBACK")


def test_A35_a_statement_replaced_between_transactions_is_refused(pooled_role, keys):
    """psycopg prepares server-side statements named _pg3_0, _pg3_1, ... and runs them again by name with the
    extended protocol's Bind and Execute, trusting that the name still holds what it prepared."""
    with connect_app() as c:
        begin_as(c, keys, A)
        assert c.execute(GOOD, prepare=True).fetchall() == [(n,) for _, n in A_ORDERS]
        c.execute("COMMIT")
        c.execute("DEALLOCATE _pg3_0")               # the next client on the server connection
        c.execute(f"PREPARE _pg3_0 AS {EVIL}")
        begin_as(c, keys, B)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            c.execute(GOOD, prepare=True)
        assert refused.value.diag.message_primary == from_earlier("_pg3_0")[1]
        c.execute("ROLLBACK")


@pytest.mark.parametrize("plant", ["PREPARE vic AS {evil}", "DEALLOCATE vic; PREPARE vic AS {evil}",
                                   "DEALLOCATE ALL; PREPARE vic AS {evil}", "DISCARD ALL; PREPARE vic AS {evil}",
                                   "protocol"],
                         ids=["planted", "deallocate", "deallocate all", "discard all", "protocol parse"])
def test_A35_a_statement_parsed_in_an_earlier_transaction_never_runs(pooled_role, keys, plant):
    """A client whose driver believes it prepared "vic" on this server connection (it did, on another one the pooler
    gave it earlier) binds it here: it must not run what another client planted under that name, whether that
    statement ever ran or not, whichever way it was made."""
    with connect_app() as c:
        pg = c.pgconn
        if plant == "protocol":
            pq_rows(pg, pg.prepare(b"vic", EVIL.encode()))   # Parse + Sync: its own transaction
        else:
            if plant.startswith("DEALLOCATE vic"):
                c.execute(f"PREPARE vic AS {GOOD}")
            for statement in plant.split("; "):
                c.execute(statement.format(evil=EVIL))
        begin_as(c, keys, B)
        assert pq_fails(pg, pg.exec_prepared(b"vic", [])) == from_earlier("vic")
        c.execute("ROLLBACK")


# PostgreSQL analyzes a stored statement again, from its own copy of the text, when it is bound after something
# invalidated it; that analysis is not the client parsing the statement in the binding transaction. Every way a
# client (or anyone) can make it happen, in the planting transaction or the binding one:
INVALIDATIONS = {
    "search path at parse": ("SET LOCAL search_path = pg_catalog, public", None, None),
    "discard plans at parse": (None, "DISCARD PLANS", None),
    "search path at bind": (None, None, "SET LOCAL search_path = pg_catalog, public"),
    "discard plans at bind": (None, None, "DISCARD PLANS"),
    "analyze in between": (None, "ANALYZE app.orders", None),
    "ddl in between": (None, "ALTER TABLE app.orders ALTER COLUMN note SET STATISTICS 100", None),
}


@pytest.mark.parametrize("invalidation", list(INVALIDATIONS), ids=list(INVALIDATIONS))
def test_A35_a_statement_analyzed_again_from_its_stored_text_was_not_parsed_by_the_binding_transaction(
        pooled_role, su, keys, invalidation):
    """The planting client's statement, bound by the next client without a Parse, must not count as parsed there
    because PostgreSQL analyzed it again (a planted pg_notify would send the next tenant's rows to the planter)."""
    at_parse, in_between, at_bind = INVALIDATIONS[invalidation]
    with connect_app() as c:
        pg = c.pgconn
        begin_as(c, keys, A)
        if at_parse:
            c.execute(at_parse)
        pq_rows(pg, pg.prepare(b"vic", EVIL.encode()))
        if in_between == "DISCARD PLANS":
            c.execute(in_between)
        c.execute("COMMIT")
        if in_between and in_between != "DISCARD PLANS":
            su.execute(in_between)               # the owner, an administrator or autovacuum, in another session
        begin_as(c, keys, B)
        if at_bind:
            c.execute(at_bind)
        assert pq_fails(pg, pg.exec_prepared(b"vic", [])) == from_earlier("vic")
        c.execute("ROLLBACK")


@pytest.mark.parametrize("invalidation", list(INVALIDATIONS), ids=list(INVALIDATIONS))
def test_A35_the_unnamed_statement_analyzed_again_was_not_parsed_by_the_binding_transaction(
        pooler_prefix, su, keys, invalidation):
    """The same for the unnamed statement, which PostgreSQL keeps until the next unnamed Parse or simple query (the
    transaction control here goes through statements the pooler manages, so that nothing else replaces it)."""
    at_parse, in_between, at_bind = INVALIDATIONS[invalidation]
    with connect_app() as c:
        pg = c.pgconn
        for name, sql in (("begin", "BEGIN"), ("commit", "COMMIT"), ("auth", "SELECT tenant.authenticate($1)::text"),
                          ("extra", at_parse or at_bind or in_between)):
            if sql:
                pq_rows(pg, pg.prepare(f"PGBOUNCER_{name}".encode(), sql.encode()))

        def run(name, *params):
            return pq_rows(pg, pg.exec_prepared(f"PGBOUNCER_{name}".encode(), [p.encode() for p in params]))

        run("begin")
        run("auth", keys.mint(A))
        if at_parse:
            run("extra")
        pq_rows(pg, pg.prepare(b"", EVIL.encode()))
        pq_rows(pg, pg.exec_prepared(b"", []))      # the previous client parses and runs it in its transaction
        if in_between == "DISCARD PLANS":
            run("extra")
        run("commit")
        if in_between and in_between != "DISCARD PLANS":
            su.execute(in_between)
        run("begin")
        run("auth", keys.mint(B))
        if at_bind:
            run("extra")
        assert pq_fails(pg, pg.exec_prepared(b"", [])) == (
            "42501", "the unnamed prepared statement was parsed in an earlier transaction "
                     "(tenant_guard.allow_session_scope is off)")
        c.execute("ROLLBACK")


@pytest.mark.parametrize("invalidation", ["SET LOCAL search_path = pg_catalog, public", "DISCARD PLANS"])
def test_A35_another_clients_statement_analyzed_again_cannot_be_replayed(pooled_role, keys, invalidation):
    """The other direction: a client forces the analysis of the previous client's statement in its own
    transaction, to run it with its own tenant."""
    with connect_app() as c:
        pg = c.pgconn
        begin_as(c, keys, B)
        pq_rows(pg, pg.prepare(b"victim", GOOD.encode()))
        c.execute("COMMIT")
        begin_as(c, keys, A)
        c.execute(invalidation)
        assert pq_fails(pg, pg.exec_prepared(b"victim", [])) == from_earlier("victim")
        c.execute("ROLLBACK")


def test_A35_a_statement_parsed_in_this_transaction_and_analyzed_again_still_runs(pooled_role, su, keys):
    """A driver that parses and binds in one transaction, with a search path change or a plan reset in between,
    keeps working: it did parse the statement here."""
    with connect_app() as c:
        pg = c.pgconn
        begin_as(c, keys, A)
        pq_rows(pg, pg.prepare(b"q", GOOD.encode()))
        c.execute("SET LOCAL search_path = pg_catalog, public")
        c.execute("DISCARD PLANS")
        assert pq_rows(pg, pg.exec_prepared(b"q", [])) == [(n,) for _, n in A_ORDERS]
        c.execute("COMMIT")


def test_A35_the_extended_protocol_cannot_bind_a_statement_sql_prepared_earlier(pooled_role, keys):
    with connect_app() as c:
        pg = c.pgconn
        c.execute(f"PREPARE q AS {EVIL}")
        begin_as(c, keys, B)
        assert pq_fails(pg, pg.exec_prepared(b"q", [])) == from_earlier("q")
        c.execute("ROLLBACK")


def test_A35_a_statement_parsed_and_run_in_one_transaction_runs(pooled_role, keys):
    """Drivers that prepare inside the client's transaction (pgx names statements by their text, and prepares them
    again on each server connection) keep working."""
    with connect_app() as c:
        pg = c.pgconn
        for tenant, expected in ((A, A_ORDERS), (B, B_ORDERS)):
            begin_as(c, keys, tenant)
            pq_rows(pg, pg.prepare(b"q", GOOD.encode()))
            assert pq_rows(pg, pg.exec_prepared(b"q", [])) == [(n,) for _, n in expected]
            assert pq_rows(pg, pg.exec_prepared(b"q", [])) == [(n,) for _, n in expected]
            c.execute("COMMIT")
            c.execute("DEALLOCATE q")


def test_A35_a_multi_statement_prepare_is_judged_by_its_own_text(pooled_role, keys):
    """The text of a statement SQL-PREPAREd in a string of several statements is the whole string: a token in a
    neighbouring statement does not make it a statement that holds a token."""
    token_a = keys.mint(A)
    with connect_app() as c:
        pg = c.pgconn
        c.execute("BEGIN")
        pq_rows(pg, pg.exec_(f"PREPARE ok AS {GOOD}; SELECT tenant.authenticate('{token_a}')".encode()))
        assert rows(c, "EXECUTE ok") == [(n,) for _, n in A_ORDERS]
        c.execute("ROLLBACK")


@pytest.fixture
def pooler_prefix(su, pooled_role):
    """The pooler manages the prepared statements (pgbouncer 1.21+, max_prepared_statements > 0): its names."""
    su.execute("ALTER ROLE rt_app SET tenant_guard.pooler_statement_prefix = 'PGBOUNCER_'")
    yield "PGBOUNCER_"


def test_A35_statements_the_pooler_manages_run_in_any_transaction(pooler_prefix, keys):
    with connect_app() as c:
        pg = c.pgconn
        pq_rows(pg, pg.prepare(b"PGBOUNCER_1", GOOD.encode()))   # the pooler prepares it once per server connection
        for tenant, expected in ((A, A_ORDERS), (B, B_ORDERS), (A, A_ORDERS)):
            begin_as(c, keys, tenant)
            assert pq_rows(pg, pg.exec_prepared(b"PGBOUNCER_1", [])) == [(n,) for _, n in expected]
            c.execute("COMMIT")
        pq_rows(pg, pg.prepare(b"other", GOOD.encode()))         # names outside the prefix: as before
        begin_as(c, keys, A)
        assert pq_fails(pg, pg.exec_prepared(b"other", [])) == from_earlier("other")
        c.execute("ROLLBACK")


@pytest.mark.parametrize("statement", ["PREPARE PGBOUNCER_1 AS SELECT 1", "DEALLOCATE PGBOUNCER_1",
                                       'PREPARE "PGBOUNCER_7" AS SELECT 1', "EXPLAIN EXECUTE PGBOUNCER_1"],
                         ids=["prepare", "deallocate", "quoted", "explain execute"])
def test_A35_clients_cannot_prepare_or_drop_what_the_pooler_manages(pooler_prefix, keys, statement):
    """Unquoted SQL names are folded to lower case: PREPARE PGBOUNCER_1 names pgbouncer_1, not the pooler's. A client
    that quotes the name would plant a statement the pooler later binds for another client."""
    with connect_app() as c:
        pg = c.pgconn
        pq_rows(pg, pg.prepare(b"PGBOUNCER_1", GOOD.encode()))
        if statement.startswith('PREPARE "'):
            assert fails(c, statement) == ("42501", 'PREPARE "PGBOUNCER_7" is refused: the connection pooler manages '
                                                    "prepared statements with this name "
                                                    "(tenant_guard.pooler_statement_prefix)")
        elif statement.startswith("EXPLAIN"):
            assert fails(c, statement) == ("26000", 'prepared statement "pgbouncer_1" does not exist')
        else:
            if statement.startswith("DEALLOCATE"):
                c.execute("PREPARE pgbouncer_1 AS SELECT 1")
            c.execute(statement)                       # the lower-case name: not the pooler's
            quoted = statement.replace("PGBOUNCER_1", '"PGBOUNCER_1"')
            what = statement.split()[0]
            assert fails(c, quoted) == ("42501", f'{what} "PGBOUNCER_1" is refused: the connection pooler manages '
                                                 "prepared statements with this name "
                                                 "(tenant_guard.pooler_statement_prefix)")
        begin_as(c, keys, A)
        assert pq_rows(pg, pg.exec_prepared(b"PGBOUNCER_1", [])) == [(n,) for _, n in A_ORDERS]
        c.execute("ROLLBACK")


def test_A35_a_pooler_statement_replaced_after_it_ran_is_refused(pooler_prefix, keys):
    """DISCARD ALL drops the pooler's statements; the client that sent it plants another under the pooler's name
    with a protocol Parse. The pooler, believing its statement is still there, binds it for the next client."""
    with connect_app() as c:
        pg = c.pgconn
        pq_rows(pg, pg.prepare(b"PGBOUNCER_1", GOOD.encode()))
        begin_as(c, keys, A)
        assert pq_rows(pg, pg.exec_prepared(b"PGBOUNCER_1", [])) == [(n,) for _, n in A_ORDERS]
        c.execute("COMMIT")
        c.execute("DISCARD ALL")
        pq_rows(pg, pg.prepare(b"PGBOUNCER_1", EVIL.encode()))
        begin_as(c, keys, B)
        assert pq_fails(pg, pg.exec_prepared(b"PGBOUNCER_1", [])) == replaced("PGBOUNCER_1")
        c.execute("ROLLBACK")


@pytest.mark.parametrize("change", ["SET search_path = rt35, app", "SELECT set_config('search_path', 'rt35', false)",
                                    "SET ROLE rt_other", "BEGIN; SET search_path = rt35; SET LOCAL work_mem = '8MB'",
                                    "BEGIN; SET search_path = rt35; SET LOCAL search_path = app",
                                    "BEGIN; SELECT set_config('search_path', 'rt35', false); "
                                    "SELECT set_config('search_path', 'app', true)"],
                         ids=["set", "set_config", "role", "in a transaction", "masked by set local",
                              "masked by set_config local"])
def test_A35_a_client_cannot_leave_its_search_path_or_role_to_the_next(su, pooled_role, change):
    """The next client's unqualified names would resolve in a schema this client writes to (its prepared statements
    are analyzed again with the search path of each execution), or its statements run as another role."""
    su.execute("CREATE SCHEMA rt35 AUTHORIZATION rt_app")
    setting = "role" if "ROLE" in change else "search_path"
    try:
        with connect_app() as c:
            *setup, last = change.split("; ")
            for statement in setup:
                c.execute(statement)
            if setup:
                c.execute(last)
                with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                    c.execute("COMMIT")
                assert refused.value.diag.message_primary == \
                    f"a session-level {setting} is not allowed here (tenant_guard.allow_session_scope is off)"
            else:
                assert fails(c, last) == (
                    "42501", f"a session-level {setting} is not allowed here (tenant_guard.allow_session_scope is off)")
            assert rows(c, "SELECT current_setting('search_path'), current_user") == [('"$user", public', "rt_app")]
            c.execute("BEGIN")                          # per transaction stays allowed
            c.execute("SET LOCAL search_path = rt35, app")
            c.execute("COMMIT")
    finally:
        su.execute("DROP SCHEMA rt35 CASCADE")


@pytest.mark.parametrize("statement", [
    "ALTER ROLE rt_app SET search_path = rt35, app",
    "ALTER ROLE CURRENT_USER SET work_mem = '8MB'",
    f"ALTER ROLE rt_app IN DATABASE {DB} SET role = rt_other",
    "ALTER USER rt_app RESET ALL",
    "ALTER ROLE rt_app RESET search_path",
], ids=["search_path", "current_user", "in database", "reset all", "reset"])
def test_A35_a_client_cannot_store_a_setting_for_its_role(pooled_role, statement):
    """A role may store its own defaults: they reach every later connection of the role, the pooler's included (and
    RESET ALL would drop the DBA's allow_session_scope = off with them)."""
    with connect_app() as c:
        assert fails(c, statement) == (
            "42501", "ALTER ROLE/DATABASE ... SET is not allowed here (tenant_guard.allow_session_scope is off)")
    with connect_app() as c:
        assert rows(c, "SELECT current_setting('search_path'), current_user, "
                       "current_setting('tenant_guard.allow_session_scope')") == [('"$user", public', "rt_app", "off")]


def test_A35_the_unnamed_statement_runs_only_in_the_transaction_that_parsed_it(pooler_prefix, keys):
    """PostgreSQL keeps the unnamed statement until the next unnamed Parse: the next client binding it would run the
    previous client's statement, its literal token included."""
    token_b = keys.mint(B)
    with connect_app() as c:
        pg = c.pgconn
        # BEGIN and COMMIT as named statements the pooler manages (a simple query would drop the unnamed one)
        pq_rows(pg, pg.prepare(b"PGBOUNCER_b", b"BEGIN"))
        pq_rows(pg, pg.prepare(b"PGBOUNCER_c", b"COMMIT"))
        pq_rows(pg, pg.exec_prepared(b"PGBOUNCER_b", []))  # the previous client: parses and runs it in one transaction
        pq_rows(pg, pg.prepare(b"", f"SELECT tenant.authenticate('{token_b}')".encode()))
        pq_rows(pg, pg.exec_prepared(b"", []))
        pq_rows(pg, pg.exec_prepared(b"PGBOUNCER_c", []))
        pq_rows(pg, pg.exec_prepared(b"PGBOUNCER_b", []))  # the next client binds it again
        assert pq_fails(pg, pg.exec_prepared(b"", [])) == (
            "42501", "the unnamed prepared statement was parsed in an earlier transaction "
                     "(tenant_guard.allow_session_scope is off)")
        c.execute("ROLLBACK")


@pytest.mark.parametrize("run", WRAPPED_EXECUTE, ids=WRAPPED_IDS)
def test_A35_a_statement_holding_a_token_never_runs_however_execute_is_wrapped(pooled_role, keys, run):
    """A driver's failed authenticate left its statement, token literal included, on the server connection: the
    next client must not run it (and become that tenant) or EXPLAIN it (and read the token)."""
    token_b = keys.mint(B)
    with connect_app() as c:
        pq_rows(c.pgconn, c.pgconn.prepare(b"q", f"SELECT tenant.authenticate('{token_b}')".encode()))
        c.execute("BEGIN")
        assert fails(c, run) == ("42501", 'prepared statement "q" holds a token in its text '
                                          "(tenant_guard.allow_session_scope is off)")
        c.execute("ROLLBACK")
        begin_as(c, keys, A)
        assert rows(c, "SELECT tenant.current_id()") == [(A,)]
        c.execute("ROLLBACK")


def test_A35_two_stored_copies_of_a_text_and_a_savepoint_do_not_make_it_parsed_here(pooled_role, keys):
    """The re-analysis of one copy is refused inside a savepoint; the other copy, same text, must be refused too."""
    with connect_app() as c:
        pg = c.pgconn
        begin_as(c, keys, A)
        pq_rows(pg, pg.prepare(b"s1", GOOD.encode()))
        pq_rows(pg, pg.prepare(b"s2", GOOD.encode()))
        c.execute("COMMIT")
        begin_as(c, keys, B)
        c.execute("SET LOCAL search_path = pg_catalog, public")
        c.execute("SAVEPOINT x")
        assert pq_fails(pg, pg.exec_prepared(b"s1", [])) == from_earlier("s1")
        c.execute("ROLLBACK TO SAVEPOINT x")
        assert pq_fails(pg, pg.exec_prepared(b"s2", [])) == from_earlier("s2")
        c.execute("ROLLBACK")


def test_A35_a_bind_that_starts_its_own_transaction_cannot_run_an_earlier_statement(pooled_role, keys):
    """No BEGIN: the Bind itself starts the transaction (an implicit one, as a pooler in statement-per-transaction
    use sends it)."""
    with connect_app() as c:
        pg = c.pgconn
        pq_rows(pg, pg.prepare(b"vic", EVIL.encode()))     # Parse + Sync: the previous client's transaction
        assert pq_fails(pg, pg.exec_prepared(b"vic", [])) == from_earlier("vic")


def test_A35_a_named_statement_holding_a_token_is_never_run(pooled_role, keys):
    token_b = keys.mint(B)
    refused = ("42501", 'prepared statement "auth" holds a token in its text (tenant_guard.allow_session_scope is off)')
    with connect_app() as c:
        pg = c.pgconn
        c.execute("BEGIN")
        c.execute(f"PREPARE auth AS SELECT tenant.authenticate('{token_b}')")
        assert fails(c, "EXECUTE auth") == refused
        c.execute("ROLLBACK")
        pq_rows(pg, pg.prepare(b"auth2", f"SELECT tenant.authenticate('{token_b}')".encode()))
        c.execute("BEGIN")
        assert pq_fails(pg, pg.exec_prepared(b"auth2", [])) == (refused[0], refused[1].replace('"auth"', '"auth2"'))
        c.execute("ROLLBACK")


@pytest.mark.parametrize("view,function", [("pg_prepared_statements", "pg_prepared_statement"),
                                           ("pg_cursors", "pg_cursor")])
def test_A35_earlier_clients_statement_texts_are_hidden_behind_a_pooler(pooled_role, keys, view, function):
    """A client that could not bind wrote its token into the text; the next client would read it there."""
    with connect_app() as c:
        c.execute("PREPARE auth AS SELECT tenant.authenticate(%s)" % psycopg.sql.quote(keys.mint(B)))
        assert fails(c, f"SELECT * FROM {view}") == (
            "42501", f"function {function} is hidden while tenant_guard.allow_session_scope is off")


def test_A35_negative_control_with_session_scope_allowed_a_statement_can_be_replaced(su, keys):
    """Without a pooler in front (allow_session_scope on), the session is one client's: nothing to protect."""
    su.execute("ALTER ROLE rt_app SET tenant_guard.allow_session_scope = on")
    try:
        with connect_app() as c:
            c.execute("PREPARE q AS SELECT 1")
            c.execute("EXECUTE q")
            c.execute("DEALLOCATE q")
            c.execute("PREPARE q AS SELECT 2")
            assert rows(c, "EXECUTE q") == [(2,)]
            assert rows(c, "SELECT name FROM pg_prepared_statements") == [("q",)]
    finally:
        su.execute("ALTER ROLE rt_app RESET ALL")


# ---------------------------------------------------------------------------------------------------------------
# A36. Statements run inside other statements


@pytest.mark.parametrize("statement", [
    "EXPLAIN (ANALYZE) CREATE TEMP TABLE anchor AS SELECT 1 AS x",
    "EXPLAIN (ANALYZE, COSTS OFF) CREATE TABLE pg_temp.anchor AS SELECT 1 AS x",
    "EXPLAIN ANALYZE SELECT 1 AS x INTO TEMP anchor",
], ids=["create temp table as", "pg_temp", "select into"])
def test_A36_explain_analyze_cannot_create_a_temporary_table_that_outlives_the_transaction(pooled_role, statement):
    with connect_app() as c:
        assert fails(c, statement) == temp_refused("a temporary table")
        assert rows(c, "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()") == [(0,)]


def test_A36_what_goes_with_a_table_dropped_at_commit_goes_and_is_allowed(pooled_role, keys):
    """A view over an ON COMMIT DROP table is temporary too, and dropped with it."""
    with connect_app() as c:
        begin_as(c, keys, A)
        c.execute("EXPLAIN (ANALYZE) CREATE TEMP TABLE anchor ON COMMIT DROP AS SELECT 1 AS x")
        c.execute("CREATE VIEW orders AS SELECT o.note FROM app.orders o, anchor")   # NOTICE: a temporary view
        assert rows(c, "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema() AND relkind = 'v'") \
            == [(1,)]
        c.execute("COMMIT")
        assert rows(c, "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()") == [(0,)]


@pytest.mark.parametrize("column", ["a serial", "a int GENERATED ALWAYS AS IDENTITY"], ids=["serial", "identity"])
def test_A36_a_temporary_table_dropped_at_commit_may_have_its_own_sequence(pooled_role, keys, column):
    """The sequence is PostgreSQL's part of the table: checked with it, dropped with it."""
    with connect_app() as c:
        begin_as(c, keys, A)
        c.execute(f"CREATE TEMP TABLE t ({column}, note text) ON COMMIT DROP")
        c.execute("INSERT INTO t (note) SELECT note FROM app.orders")
        assert rows(c, "SELECT max(a) FROM t") == [(2,)]
        c.execute("COMMIT")
        assert rows(c, "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()") == [(0,)]


@pytest.fixture
def scoped_schema(su):
    su.execute("CREATE SCHEMA rt36 AUTHORIZATION rt_owner")
    su.execute("SECURITY LABEL FOR tenant_guard ON SCHEMA rt36 IS 'tenant_scoped'")
    su.execute("ALTER DEFAULT PRIVILEGES FOR ROLE rt_owner IN SCHEMA rt36 GRANT SELECT ON TABLES TO rt_app")
    su.execute("GRANT USAGE ON SCHEMA rt36 TO rt_app")
    try:
        yield "rt36"
    finally:
        su.execute("DROP SCHEMA rt36 CASCADE")


def test_A36_a_table_created_inside_explain_analyze_is_protected_like_any_other(owner, scoped_schema, su, attacker,
                                                                                 keys):
    owner.execute(f"EXPLAIN (ANALYZE) CREATE TABLE rt36.sneaky AS SELECT * FROM (VALUES ('{A}'::uuid, 'a-row'), "
                  f"('{B}'::uuid, 'b-row')) v(tenant_id, note)")
    assert rows(su, "SELECT rls_enabled, rls_forced, policy_intact FROM tenant.scoped_tables "
                    "WHERE table_name = 'rt36.sneaky'::regclass") == [(True, True, True)]
    begin_as(attacker, keys, A)
    assert rows(attacker, "SELECT note FROM rt36.sneaky") == [("a-row",)]
    attacker.execute("COMMIT")


def test_A36_a_table_without_the_tenant_column_created_inside_explain_must_be_labelled(owner, scoped_schema):
    owner.execute("BEGIN")
    owner.execute("EXPLAIN (ANALYZE) CREATE TABLE rt36.nocol AS SELECT 1 AS x")
    with pytest.raises(psycopg.errors.InvalidTableDefinition) as refused:
        owner.execute("COMMIT")
    assert refused.value.diag.message_primary == \
        'table rt36.nocol is in a tenant_scoped schema but has no column "tenant_id"'


# ---------------------------------------------------------------------------------------------------------------
# A37. Decisions taken from an old snapshot: a revoked or narrowed issuer must stop at once

SSO = "https://sso37.customer.test"
C = uuid.UUID("c0c0c0c0-0000-4000-8000-00000000000c")
OUT_OF_SCOPE = ("28000", "token rejected: token issuer may not speak for this tenant: it is scoped to other tenants "
                         "(see tenant.issuer_tenant)")
UNTRUSTED = ("28000", "token rejected: token issuer is not trusted (see tenant.issuers)")


@pytest.fixture
def sso(su):
    keys = Keys(suffix="-sso37")
    su.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s, NULL, %s)", (SSO, json.dumps(keys.jwks()), AUD, [A, B]))
    try:
        yield keys
    finally:
        su.execute("SELECT tenant.untrust_issuer(%s) FROM tenant.issuers WHERE issuer = %s", (SSO, SSO))


def authenticate(conn, token):
    return fails(conn, "SELECT tenant.authenticate(%s)", (token,))


@pytest.mark.parametrize("change,refusal", [
    ("SELECT tenant.scope_issuer(%s, ARRAY['" + str(C) + "']::uuid[])", OUT_OF_SCOPE),
    ("SELECT tenant.untrust_issuer(%s)", UNTRUSTED),
], ids=["narrowed", "untrusted"])
def test_A37_a_repeatable_read_transaction_does_not_keep_an_issuer_an_administrator_changed(sso, su, attacker, change,
                                                                                           refusal):
    token = sso.mint(A, iss=SSO)
    attacker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    attacker.execute("SELECT count(*) FROM pg_class")   # the transaction's snapshot: SSO speaks for A and B
    su.execute(change, (SSO,))
    for _ in range(2):
        assert authenticate(attacker, token) == refusal
    attacker.execute("COMMIT")
    attacker.execute("BEGIN")   # and no later transaction of this backend finds it cached
    assert authenticate(attacker, token) == refusal
    attacker.execute("ROLLBACK")


@pytest.mark.parametrize("change,refusal", [
    ("SELECT tenant.scope_issuer(%s, ARRAY['" + str(C) + "']::uuid[])", OUT_OF_SCOPE),
    ("SELECT tenant.untrust_issuer(%s)", UNTRUSTED),
], ids=["narrowed", "untrusted"])
def test_A37_a_repeatable_read_transaction_that_has_written_does_not_keep_the_issuer_either(sso, su, attacker,
                                                                                          change, refusal):
    """Once the transaction has a transaction id, SPI would read with the transaction's snapshot: tenant_guard reads
    issuers in read-only mode, with a fresh snapshot, whatever the transaction has done."""
    token = sso.mint(A, iss=SSO)
    attacker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    attacker.execute("SELECT count(*) FROM pg_class")
    su.execute(change, (SSO,))
    attacker.execute("SELECT txid_current()")
    assert authenticate(attacker, token) == refusal
    attacker.execute("ROLLBACK")
    attacker.execute("BEGIN")
    assert authenticate(attacker, token) == refusal
    attacker.execute("ROLLBACK")


def test_A37_an_imported_old_snapshot_does_not_bring_back_a_narrowed_scope(sso, su):
    token = sso.mint(A, iss=SSO)
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as holder, connect_app() as late:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        [(snapshot,)] = rows(holder, "SELECT pg_export_snapshot()")
        su.execute("SELECT tenant.scope_issuer(%s, %s)", (SSO, [C]))
        late.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        late.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        late.execute("SELECT txid_current()")
        assert authenticate(late, token) == OUT_OF_SCOPE
        late.execute("ROLLBACK")
        late.execute("BEGIN")
        assert authenticate(late, token) == OUT_OF_SCOPE
        late.execute("ROLLBACK")
        holder.execute("ROLLBACK")


# ---------------------------------------------------------------------------------------------------------------
# A38. The clock a token is checked against, inside a procedure that commits


@pytest.fixture
def strict_clock(redteam_db):
    """rt_app with no clock-skew leeway (set by a superuser, then SET ROLE), so that expiry is quick to reach."""
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
        c.execute("SET tenant_guard.clock_skew = 0")
        c.execute("SET ROLE rt_app")
        yield c


def test_A38_a_token_that_expires_during_a_do_block_is_refused_in_its_next_transaction(strict_clock, keys):
    token = keys.mint(A, lifetime=1)
    assert fails(strict_clock, f"""DO $$ BEGIN
        PERFORM tenant.authenticate('{token}');
        COMMIT;
        PERFORM pg_sleep(2.2);
        PERFORM tenant.authenticate('{token}');
    END $$""") == ("28000", "token rejected: token has expired")


def test_A38_negative_control_a_token_still_valid_is_accepted_in_every_transaction_of_the_block(strict_clock, keys):
    token = keys.mint(A, lifetime=60)
    strict_clock.execute(f"""DO $$ DECLARE n int; BEGIN
        PERFORM tenant.authenticate('{token}');
        COMMIT;
        PERFORM pg_sleep(0.2);
        PERFORM tenant.authenticate('{token}');
        SELECT count(*) INTO n FROM app.orders;
        IF n <> 2 THEN RAISE EXCEPTION 'saw % rows', n; END IF;
    END $$""")


# ---------------------------------------------------------------------------------------------------------------
# A39. Counters of other tenants' rows that are not statistics

CTID = ("42501", "the ctid of table app.orders is hidden from roles confined by tenant_guard")


@pytest.mark.parametrize("statement", [
    "SELECT ctid FROM app.orders",
    "SELECT id FROM app.orders WHERE ctid = '(0,1)'",
    "INSERT INTO app.orders (id, customer_id, note) VALUES (39, 1, 'probe') RETURNING ctid",
    "UPDATE app.orders SET note = note WHERE id = 1 RETURNING ctid",
    "DELETE FROM app.orders WHERE id = 39 RETURNING ctid",
    "SELECT loc FROM app.rt39_locations",
    "SELECT * FROM app.rt39_location_of()",
], ids=["select", "where", "insert returning", "update returning", "delete returning", "view", "function"])
def test_A39_row_locations_of_protected_tables_are_hidden(su, attacker, keys, statement):
    """Where a row lands counts the rows other tenants put on the same page before it."""
    su.execute("CREATE OR REPLACE VIEW app.rt39_locations AS SELECT ctid AS loc, note FROM app.orders")
    su.execute("CREATE OR REPLACE FUNCTION app.rt39_location_of() RETURNS SETOF tid LANGUAGE sql "
               "AS 'SELECT ctid FROM app.orders'")
    su.execute("GRANT SELECT ON app.rt39_locations TO rt_app")
    try:
        begin_as(attacker, keys, A)
        assert fails(attacker, statement) == CTID
        attacker.execute("ROLLBACK")
    finally:
        su.execute("DROP VIEW app.rt39_locations; DROP FUNCTION app.rt39_location_of()")


@pytest.mark.parametrize("method", ["BERNOULLI (50) REPEATABLE (1)", "SYSTEM (50)", "BERNOULLI (100)"])
def test_A39_sampling_a_protected_table_is_refused(attacker, keys, method):
    """The seeds under which BERNOULLI picks a row spell out where the row is; SYSTEM picks whole pages."""
    begin_as(attacker, keys, A)
    assert fails(attacker, f"SELECT id FROM app.orders TABLESAMPLE {method}") == (
        "42501", "TABLESAMPLE of table app.orders is refused to roles confined by tenant_guard")
    attacker.execute("ROLLBACK")


def test_A39_updates_deletes_and_row_locks_still_work(attacker, keys):
    """PostgreSQL's own use of ctid is not a column the statement selects."""
    begin_as(attacker, keys, A)
    attacker.execute("UPDATE app.orders SET note = note WHERE id = 1")
    assert rows(attacker, "SELECT id FROM app.orders WHERE id = 2 FOR UPDATE") == [(2,)]
    attacker.execute("INSERT INTO app.orders (id, customer_id, note) VALUES (39, 1, 'x')")
    attacker.execute("DELETE FROM app.orders WHERE id = 39")
    attacker.execute("ROLLBACK")


def test_A39_negative_control_with_hide_statistics_off_the_probe_counts_other_tenants_rows(su, keys):
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
        c.execute("SET tenant_guard.hide_statistics = off")
        c.execute("SET ROLE rt_app")
        begin_as(c, keys, A)
        [(loc,)] = rows(c, "INSERT INTO app.orders (id, customer_id, note) VALUES (39, 1, 'probe') RETURNING ctid")
        c.execute("ROLLBACK")
    assert re.fullmatch(r"\(\d+,\d+\)", loc)


def plan_width(conn):
    plan = rows(conn, "EXPLAIN SELECT note FROM app.orders")[0][0]
    return int(re.search(r"width=(\d+)", plan).group(1))


def test_A39_the_average_width_of_other_tenants_values_does_not_reach_plans(su, developer):
    su.execute("ANALYZE app.orders")
    before = plan_width(developer)
    su.execute("UPDATE app.orders SET note = repeat('x', 900) WHERE tenant_id = %s", (B,))
    su.execute("ANALYZE app.orders")
    try:
        assert plan_width(developer) == before
        # negative control: the planner statistics the setting hides do tell
        su.execute("SET tenant_guard.hide_planner_statistics = off")
        su.execute("SET tenant_guard.allow_explain = on")
        su.execute("SET ROLE rt_app")
        assert plan_width(su) > before + 300
        su.execute("RESET ROLE")
    finally:
        su.execute("RESET ROLE")
        su.execute("UPDATE app.orders SET note = 'b-order-' || id WHERE tenant_id = %s", (B,))
        su.execute("ANALYZE app.orders")


def test_A39_other_sessions_locks_are_hidden(attacker):
    for query, function in (("SELECT * FROM pg_locks", "pg_lock_status"),
                            ("SELECT pg_blocking_pids(pg_backend_pid())", "pg_blocking_pids")):
        assert fails(attacker, query) == ("42501", f"function {function} is hidden from roles confined by tenant_guard")


def test_A39_no_sql_lock_stalls_another_tenants_first_encryption(attacker, keys):
    """tenant_guard's lock on a tenant's keys is one no SQL advisory-lock function can take."""
    words = [int.from_bytes(D.bytes[i:i + 4], "big", signed=True) for i in range(0, 16, 4)]
    xor = words[0] ^ words[1] ^ words[2] ^ words[3]
    attacker.execute("SELECT pg_advisory_lock(%s, %s)", (0x74676b01, xor))
    attacker.execute("SELECT pg_advisory_lock(%s::bigint)", ((0x74676b01 << 32) | (xor & 0xffffffff),))
    try:
        with connect_app(options="-c statement_timeout=5000") as victim:
            begin_as(victim, keys, D)
            assert rows(victim, "SELECT tenant.decrypt(tenant.encrypt('d-secret'))") == [("d-secret",)]
            victim.execute("ROLLBACK")
    finally:
        attacker.execute("SELECT pg_advisory_unlock_all()")
