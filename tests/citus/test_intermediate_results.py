"""Citus's intermediate results (a CTE's rows passed between the steps of a distributed query) belong to one
distributed transaction: another session cannot read or write them by giving itself that transaction's id (red
team, round 3: the application role read another tenant's rows that way, without a token)."""

import psycopg
import pytest

from conftest import OWNER, TENANT_A, TENANT_B, WORKERS, app_conn, connect, fill, make_table, mint, rows, sqlstate

CTE = ("WITH c AS MATERIALIZED (SELECT tenant_id, item FROM ir_orders ORDER BY item LIMIT 100) "
       "SELECT count(*) FROM c JOIN ir_local l ON l.tenant_id = c.tenant_id AND l.item = c.item")


@pytest.fixture(scope="module")
def tables(cluster):
    with connect(user=OWNER) as owner:
        make_table(owner, "ir_orders")
        owner.execute("DROP TABLE IF EXISTS ir_local")
        owner.execute("CREATE TABLE ir_local (tenant_id uuid NOT NULL, item text)")
        owner.execute("SECURITY LABEL FOR tenant_guard ON TABLE ir_local IS 'tenant_scoped'")
        owner.execute("GRANT SELECT, INSERT ON ir_local TO tg_app")
    fill("ir_orders")
    for tenant, prefix in ((TENANT_A, "a"), (TENANT_B, "b")):
        with app_conn() as c, c.transaction():
            c.execute("SELECT tenant.authenticate(%s)", (mint(tenant),))
            c.execute("INSERT INTO ir_local (item) VALUES (%s), (%s)", (f"{prefix}0", f"{prefix}1"))


def test_a_query_with_intermediate_results_works(tables):
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
        assert rows(c, CTE) == [(2,)]
    with app_conn() as c:   # a single-statement transaction, a session token
        c.execute("SELECT tenant.authenticate(%s, 'session')", (mint(TENANT_A),))
        assert rows(c, CTE) == [(2,)]


def test_another_session_cannot_read_them(tables):
    with app_conn() as victim, app_conn() as attacker:
        victim.execute("BEGIN")
        victim.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
        assert rows(victim, CTE) == [(2,)]   # B's rows are now in an intermediate result of this transaction
        number, stamp = rows(victim, "SELECT transaction_number, transaction_stamp FROM get_current_transaction_id()")[0]
        with attacker.transaction():
            attacker.execute("SELECT assign_distributed_transaction_id(0, %s, %s)", (number, stamp))
            assert sqlstate(attacker, "SELECT * FROM read_intermediate_result('1_1', 'binary') "
                                      "AS r(tenant_id uuid, item text)") == "42501"
            # nor with a tenant of its own, nor with a ticket it made up
            attacker.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
            attacker.execute("SET LOCAL tenant_guard.citus_ticket = '" + "0" * 64 + "'")
            assert sqlstate(attacker, "SELECT * FROM read_intermediate_result('1_1', 'binary') "
                                      "AS r(tenant_id uuid, item text)") == "42501"
            assert sqlstate(attacker, "SELECT broadcast_intermediate_result('1_1', 'SELECT 1')") == "42501"
        victim.execute("COMMIT")


def test_nor_on_a_worker(tables):
    with app_conn() as victim, app_conn(WORKERS[0]) as attacker:
        victim.execute("BEGIN")
        victim.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
        rows(victim, CTE)
        number, stamp = rows(victim, "SELECT transaction_number, transaction_stamp FROM get_current_transaction_id()")[0]
        with attacker.transaction():
            attacker.execute("SELECT assign_distributed_transaction_id(0, %s, %s)", (number, stamp))
            assert sqlstate(attacker, "SELECT * FROM read_intermediate_result('1_1', 'binary') "
                                      "AS r(tenant_id uuid, item text)") == "42501"
        victim.execute("COMMIT")
