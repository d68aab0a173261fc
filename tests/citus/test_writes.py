"""Writes that Citus cannot run under row-level security either work or fail with tenant_guard's own error."""

import pytest

from conftest import OWNER, TENANT_A, TENANT_B, app_conn, connect, make_table, mint, rows, sqlstate


@pytest.fixture(scope="module")
def orders(cluster):
    with connect(user=OWNER) as owner:
        make_table(owner, "wr_orders")
    return "wr_orders"


def test_insert_select_works_and_stays_in_the_tenant(orders):
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        c.execute(f"INSERT INTO {orders} (item) VALUES ('one'), ('two')")
        assert rows(c, f"INSERT INTO {orders} (item) SELECT item || '-copy' FROM {orders} RETURNING tenant_id") == \
            [(TENANT_A,)] * 2
        # an INSERT ... SELECT that Citus cannot run on the shards themselves goes through COPY: refused, with the
        # error that says to use INSERT ... VALUES
        assert sqlstate(c, f"INSERT INTO {orders} (tenant_id, item) SELECT %s::uuid, 'x'", (TENANT_B,)) == "0A000"
        assert sqlstate(c, f"INSERT INTO {orders} (item) SELECT 'constant'") == "0A000"


def test_copy_from_is_refused_with_what_to_do(orders):
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        try:
            with c.cursor().copy(f"COPY {orders} (item) FROM STDIN") as copy:
                copy.write_row(("copied",))
            state = None
        except Exception as e:   # psycopg raises from the copy context
            state, hint = e.sqlstate, e.diag.message_hint
        assert state == "0A000" and "INSERT" in hint


def test_update_with_encrypt_is_refused_with_what_to_do(orders):
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        try:
            c.execute(f"UPDATE {orders} SET secret = tenant.encrypt('x')")
            state = None
        except Exception as e:
            state, hint = e.sqlstate, e.diag.message_hint
        assert state == "0A000" and "parameter" in hint


def test_update_with_a_ciphertext_parameter_works(orders):
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        ciphertext = rows(c, "SELECT tenant.encrypt('new secret')")[0][0]
        c.execute(f"UPDATE {orders} SET secret = %s WHERE item = 'one'", (ciphertext,))
        assert rows(c, f"SELECT tenant.decrypt(secret) FROM {orders} WHERE item = 'one'") == [("new secret",)]


def test_outer_join_from_a_reference_table_is_refused_not_a_crash(orders):
    """Citus 13.2 crashes the server process on this join under row-level security (every session of the server
    with it): tenant_guard refuses it first."""
    with connect(user=OWNER) as owner:
        make_table(owner, "wr_ref", distribute="reference")
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        assert sqlstate(c, f"SELECT count(*) FROM wr_ref r LEFT JOIN {orders} o ON true") == "0A000"
        assert sqlstate(c, f"SELECT count(*) FROM {orders} o RIGHT JOIN wr_ref r ON true") == "0A000"
        assert sqlstate(c, f"SELECT count(*) FROM (VALUES (1)) v(x) LEFT JOIN {orders} o ON true") == "0A000"
        # the other way round is fine
        assert sqlstate(c, f"SELECT count(*) FROM {orders} o LEFT JOIN wr_ref r ON true") is None
    with connect() as admin:   # the server is still up, no crash recovery happened
        assert rows(admin, "SELECT 1") == [(1,)]
