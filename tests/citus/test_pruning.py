"""Shard pruning: a tenant's query without WHERE tenant_id runs on that tenant's shard only, and plans kept for
later (prepared statements, PL/pgSQL) never run for another tenant."""

import os
import re

import pytest

from conftest import (ADMIN, APP, TENANT_A, TENANT_B, TENANT_C, app_conn, connect, fill, make_table, mint,
                      rows, sqlstate)


@pytest.fixture(scope="module")
def orders(cluster):
    with connect(user="tg_owner") as owner:
        make_table(owner, "prune_orders")
        make_table(owner, "prune_lines")
        owner.execute(f"GRANT SELECT, UPDATE, DELETE ON prune_orders, prune_lines TO {ADMIN}")
    fill("prune_orders")
    fill("prune_lines")
    return "prune_orders"


def task_count(conn, sql, params=None):
    plan = "\n".join(r[0] for r in rows(conn, "EXPLAIN " + sql, params))
    return int(re.search(r"Task Count: (\d+)", plan).group(1))


def explainer(tenant):
    """An administrator that row-level security still confines (NOBYPASSRLS): it may EXPLAIN."""
    c = connect(user=ADMIN)
    c.execute("BEGIN")
    c.execute("SELECT tenant.authenticate(%s)", (mint(tenant),))
    return c


def test_one_task_per_tenant(orders):
    with explainer(TENANT_A) as c:
        assert task_count(c, f"SELECT * FROM {orders}") == 1
        assert task_count(c, f"SELECT count(*) FROM {orders} WHERE item LIKE 'a%%'") == 1
        assert task_count(c, f"UPDATE {orders} SET item = item") == 1
        assert task_count(c, f"DELETE FROM {orders} WHERE item = 'zz'") == 1


def test_same_task_count_as_a_hand_written_filter(orders):
    with explainer(TENANT_B) as c:
        assert task_count(c, f"SELECT * FROM {orders}") == task_count(
            c, f"SELECT * FROM {orders} WHERE tenant_id = %s", (TENANT_B,)) == 1


def test_colocated_join_is_one_task(orders):
    with explainer(TENANT_C) as c:
        assert task_count(c, "SELECT * FROM prune_orders o JOIN prune_lines l USING (tenant_id)") == 1


def test_outer_join_is_left_alone(orders):
    """The condition is not added where it could change a result (the nullable side of an outer join): correct
    rows, several tasks. On PostgreSQL 17, Citus 13.2 refuses this join under row-level security itself (0A000),
    with or without tenant_guard's condition: an error, never other rows."""
    with explainer(TENANT_A) as c:
        sql = "SELECT o.item, l.item FROM prune_orders o LEFT JOIN prune_lines l USING (tenant_id, id) ORDER BY 1"
        if os.environ.get("PG", "15") != "15":
            assert sqlstate(c, sql) == "0A000"
            return
        assert task_count(c, sql) > 1
        assert [r[0] for r in rows(c, sql)] == ["a0", "a1", "a2"]


def test_no_context_is_still_refused(orders, app):
    assert sqlstate(app, f"SELECT * FROM {orders}") == "42501"


def test_prepared_statement_across_tenants(orders):
    """One connection, one prepared statement, executed often enough for a generic plan, tenant after tenant."""
    with app_conn() as c:
        c.execute(f"PREPARE q AS SELECT item FROM {orders} ORDER BY item")
        for tenant, expected in ((TENANT_A, "a"), (TENANT_B, "b"), (TENANT_A, "a"), (TENANT_C, "c")) * 3:
            with c.transaction():
                c.execute("SELECT tenant.authenticate(%s)", (mint(tenant),))
                for _ in range(6):
                    assert [r[0] for r in rows(c, "EXECUTE q")] == [f"{expected}{i}" for i in range(3)]


def test_extended_protocol_prepared_across_tenants(orders):
    with app_conn() as c:
        for tenant, expected in ((TENANT_B, "b"), (TENANT_C, "c"), (TENANT_B, "b")) * 3:
            with c.transaction():
                c.execute(f"SET LOCAL tenant_guard.token = '{mint(tenant)}'")
                for _ in range(7):
                    got = c.execute(f"SELECT item FROM {orders} ORDER BY item", prepare=True).fetchall()
                    assert [r[0] for r in got] == [f"{expected}{i}" for i in range(3)]


def test_plpgsql_plan_across_tenants(orders, admin):
    admin.execute(f"CREATE OR REPLACE FUNCTION prune_items() RETURNS SETOF text LANGUAGE plpgsql STABLE AS "
                  f"$$ BEGIN RETURN QUERY SELECT item FROM {orders} ORDER BY item; END $$")
    admin.execute(f"GRANT EXECUTE ON FUNCTION prune_items() TO {APP}")
    with app_conn() as c:
        for tenant, expected in ((TENANT_C, "c"), (TENANT_A, "a"), (TENANT_C, "c")) * 2:
            with c.transaction():
                c.execute("SELECT tenant.authenticate(%s)", (mint(tenant),))
                for _ in range(6):
                    assert [r[0] for r in rows(c, "SELECT prune_items()")] == [f"{expected}{i}" for i in range(3)]


def test_session_token_switch_replans(orders):
    with app_conn() as c:
        c.execute(f"PREPARE s AS SELECT count(*), min(item) FROM {orders}")
        for tenant, expected in ((TENANT_A, "a0"), (TENANT_B, "b0"), (TENANT_C, "c0")) * 2:
            c.execute("SELECT tenant.authenticate(%s, 'session')", (mint(tenant),))
            for _ in range(6):
                assert rows(c, "EXECUTE s") == [(3, expected)]


def test_prepared_before_any_token(orders):
    with app_conn() as c:
        c.execute(f"PREPARE p AS SELECT item FROM {orders} ORDER BY item")
        assert sqlstate(c, "EXECUTE p") == "42501"
        with c.transaction():
            c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
            assert [r[0] for r in rows(c, "EXECUTE p")] == ["b0", "b1", "b2"]
