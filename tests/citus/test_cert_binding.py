"""Certificate-bound tokens on Citus: the client connects to the coordinator over TLS with its certificate; the
coordinator checks the binding there, and the workers, whose connections are the coordinator's, accept the bound token
in the remote transactions that carry the coordinator's ticket. A client connecting to a worker directly gets none."""

import os
import subprocess
import sys
import time

import psycopg
import psycopg.sql
import pytest

from conftest import BASE, PORT, TENANT_A, WORKERS, app_conn, connect, fill, make_table, mint, rows, sqlstate

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import tls_certs  # noqa: E402

# inside the coordinator's data directory: removed with the cluster
CERTS = f"{BASE}.coordinator/tls"


@pytest.fixture(scope="module")
def tls(cluster):
    """TLS on the coordinator, for the rest of the session: Citus's own connections to the coordinator require TLS
    once it speaks it (citus.node_conninfo), so it is not switched off again."""
    subprocess.run(["rm", "-rf", CERTS], check=True)
    tls_certs.make(CERTS, os.stat(f"{BASE}.coordinator").st_uid)
    with connect() as c:
        for statement in tls_certs.server_settings(CERTS):
            c.execute(statement)
        c.execute("SELECT pg_reload_conf()")
    deadline = time.time() + 10
    while True:
        try:
            with connect(user="postgres", **tls_certs.client_options(CERTS, "x")):
                break
        except psycopg.OperationalError:
            assert time.time() < deadline, "the coordinator did not start speaking TLS"
            time.sleep(0.1)
    with connect(user="tg_owner") as owner:
        make_table(owner, "cb_orders")
    fill("cb_orders")


def bound(name):
    return mint(TENANT_A, cnf={"x5t#S256": tls_certs.thumbprint(CERTS, name)})


def test_a_bound_token_reads_its_rows_on_every_shard_from_its_certificates_connection(tls):
    with app_conn(**tls_certs.client_options(CERTS, "x")) as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (bound("x"),))
        assert rows(c, "SELECT item FROM cb_orders ORDER BY item") == [("a0",), ("a1",), ("a2",)]
        # a multi-shard statement too (every worker verifies the forwarded token)
        assert rows(c, "SELECT count(*) FROM cb_orders WHERE item LIKE '%%0' OR true") == [(3,)]
    with app_conn(**tls_certs.client_options(CERTS, "x")) as c:   # a single-statement transaction
        c.execute("SELECT tenant.authenticate(%s, 'session')", (bound("x"),))
        assert rows(c, "SELECT count(*) FROM cb_orders") == [(3,)]


@pytest.mark.parametrize("where", ["other certificate", "no certificate", "plain", "worker"])
def test_elsewhere_it_yields_nothing(tls, where):
    options = {"other certificate": tls_certs.client_options(CERTS, "y"),
               "no certificate": tls_certs.client_options(CERTS, None), "plain": {"sslmode": "disable"},
               "worker": {"sslmode": "disable"}}[where]
    port = WORKERS[0] if where == "worker" else PORT
    with app_conn(port, **options) as c:
        assert sqlstate(c, "SELECT tenant.authenticate(%s)", (bound("x"),)) == "28000"
        with c.transaction():
            c.execute(psycopg.sql.SQL("SET LOCAL tenant_guard.token = {}").format(psycopg.sql.Literal(bound("x"))))
            assert sqlstate(c, "SELECT count(*) FROM cb_orders") == "42501"
