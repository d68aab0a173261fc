"""The tenant context on every node: each way of setting the token works on a coordinator, the workers receive the
signed token and verify it themselves, and a transaction stays sealed to one tenant on every node."""

import pytest

from conftest import (APP, TENANT_A, TENANT_B, TENANT_C, WORKERS, app_conn, connect, fill, make_table, mint, rows,
                      sqlstate)


@pytest.fixture(scope="module")
def orders(cluster):
    with connect(user="tg_owner") as owner:
        make_table(owner, "ctx_orders")
    fill("ctx_orders")
    return "ctx_orders"


def items(conn, table="ctx_orders"):
    return sorted(r[0] for r in rows(conn, f"SELECT item FROM {table}"))


def test_authenticate_in_a_transaction(app, orders):
    with app.transaction():
        app.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        assert items(app) == ["a0", "a1", "a2"]
        assert rows(app, f"SELECT DISTINCT tenant_id FROM {orders}") == [(TENANT_A,)]


def test_authenticate_then_autocommit_is_no_context(app, orders):
    """tenant.authenticate() scopes the token to its transaction: the next statement has no context anywhere."""
    app.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
    assert sqlstate(app, f"SELECT item FROM {orders}") == "42501"


def test_set_local(app, orders):
    with app.transaction():
        app.execute(f"SET LOCAL tenant_guard.token = '{mint(TENANT_B)}'")
        assert items(app) == ["b0", "b1", "b2"]


def test_set_config_is_refused_as_on_one_node(app, orders):
    """set_config() returns the setting's value, which only superusers may read: the application uses SET LOCAL."""
    with app.transaction():
        assert sqlstate(app, "SELECT set_config('tenant_guard.token', %s, true)", (mint(TENANT_C),)) == "42501"


def test_set_local_through_a_function(app, orders):
    """A SET LOCAL run by a function (SPI) is forwarded like a statement's."""
    token = mint(TENANT_C)
    with app.transaction():
        app.execute("DO $$ BEGIN EXECUTE format('SET LOCAL tenant_guard.token = %L', " + f"'{token}'" + "); END $$")
        assert items(app) == ["c0", "c1", "c2"]


def test_connection_option_in_autocommit(orders):
    """A token given as a connection option reaches the workers of a single-statement transaction too."""
    with app_conn(options=f"-c tenant_guard.token={mint(TENANT_B)}") as c:
        assert items(c) == ["b0", "b1", "b2"]
        assert rows(c, f"SELECT count(*) FROM {orders}") == [(3,)]


def test_session_scope_in_autocommit(orders):
    with app_conn() as c:
        c.execute("SELECT tenant.authenticate(%s, 'session')", (mint(TENANT_C),))
        assert items(c) == ["c0", "c1", "c2"]
        assert items(c) == ["c0", "c1", "c2"]   # again, in a new transaction with new remote transactions


def test_no_token_is_no_context(app, orders):
    assert sqlstate(app, f"SELECT item FROM {orders}") == "42501"


def test_tenant_switch_between_transactions(orders):
    with app_conn() as c:
        for tenant, expected in ((TENANT_A, ["a0", "a1", "a2"]), (TENANT_B, ["b0", "b1", "b2"]),
                                 (TENANT_A, ["a0", "a1", "a2"])):
            with c.transaction():
                c.execute("SELECT tenant.authenticate(%s)", (mint(tenant),))
                assert items(c) == expected


def test_sealed_after_a_distributed_query(app, orders):
    with app.transaction():
        app.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        assert len(items(app)) == 3
        assert sqlstate(app, "SELECT tenant.authenticate(%s)", (mint(TENANT_B),)) == "28000"


def test_sealed_set_local_switch(app, orders):
    """A SET LOCAL to another tenant's token after the transaction used one: refused before it travels."""
    with app.transaction():
        app.execute(f"SET LOCAL tenant_guard.token = '{mint(TENANT_A)}'")
        assert len(items(app)) == 3
        app.execute(f"SET LOCAL tenant_guard.token = '{mint(TENANT_B)}'")
        assert sqlstate(app, f"SELECT item FROM {orders}") == "28000"


def test_savepoint_rollback_keeps_the_tenant(app, orders):
    with app.transaction():
        app.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        app.execute("SAVEPOINT s")
        assert items(app) == ["a0", "a1", "a2"]
        app.execute("ROLLBACK TO SAVEPOINT s")
        assert items(app) == ["a0", "a1", "a2"]
        app.execute("RELEASE SAVEPOINT s")
        assert items(app) == ["a0", "a1", "a2"]


def test_session_scope_disabled_is_refused_before_it_travels(orders):
    with connect() as admin:
        admin.execute(f"ALTER ROLE {APP} SET tenant_guard.allow_session_scope = off")
    try:
        with app_conn(options=f"-c tenant_guard.token={mint(TENANT_B)}") as c:
            assert sqlstate(c, f"SELECT item FROM {orders}") == "42501"
    finally:
        with connect() as admin:
            admin.execute(f"ALTER ROLE {APP} RESET tenant_guard.allow_session_scope")


def test_workers_verify_the_token_themselves(orders):
    """A worker that would refuse the token (a shorter lifetime limit there) refuses it, though the coordinator
    accepts it: the worker gets the signed token, never a tenant id it would have to trust."""
    long_lived = mint(TENANT_A, lifetime=3000)
    for port in WORKERS:
        with connect(port) as w:
            w.execute("ALTER SYSTEM SET tenant_guard.max_token_lifetime = 600")
            w.execute("SELECT pg_reload_conf()")
    try:
        with app_conn() as c:
            with c.transaction():
                c.execute("SELECT tenant.authenticate(%s)", (long_lived,))   # the coordinator accepts it
                assert sqlstate(c, "SELECT item FROM ctx_orders") == "42501"   # the tenant's worker does not
    finally:
        for port in WORKERS:
            with connect(port) as w:
                w.execute("ALTER SYSTEM RESET tenant_guard.max_token_lifetime")
                w.execute("SELECT pg_reload_conf()")


def test_writes_isolated(orders):
    with app_conn() as c:
        with c.transaction():
            c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
            assert rows(c, f"UPDATE {orders} SET item = item RETURNING tenant_id") == [(TENANT_A,)] * 3
            assert rows(c, f"DELETE FROM {orders} WHERE item = 'b0' RETURNING item") == []
            assert sqlstate(c, f"INSERT INTO {orders} (tenant_id, item) VALUES (%s, 'x')", (TENANT_B,)) == "42501"


def test_token_not_in_worker_statement_text(orders):
    """Workers see the token in the SET LOCAL that Citus replays; other sessions there never see it."""
    token = mint(TENANT_A)
    with app_conn() as c, connect(WORKERS[0]) as peer:
        with c.transaction():
            c.execute("SELECT tenant.authenticate(%s)", (token,))
            items(c)
            seen = rows(peer, "SELECT coalesce(string_agg(query, ' '), '') FROM pg_stat_activity")[0][0]
            assert token not in seen
