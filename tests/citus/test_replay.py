"""Replay protection on Citus: a token of an issuer that requires each jti once serves one coordinator transaction,
whose remote transactions on the workers (several connections to one worker included) use it for that transaction;
the next transaction is refused on the coordinator."""

import json
import uuid

import psycopg
import psycopg.sql
import pytest

from conftest import AUD, JWKS, TENANT_A, app_conn, connect, fill, make_table, mint, rows, sqlstate

ONCE = "https://once.citus.test"


@pytest.fixture(scope="module")
def once(cluster):
    with connect() as c:
        # tokens issued before the server started, or within the clock leeway after, are refused
        age = c.execute("SELECT extract(epoch FROM now() - pg_postmaster_start_time())").fetchone()[0]
        if age < 32:
            import time
            time.sleep(32 - float(age))
        c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s, require_jti => true)", (ONCE, json.dumps(JWKS), AUD))
    with connect(user="tg_owner") as owner:
        make_table(owner, "rp_orders")
    fill("rp_orders")
    yield
    with connect() as c:
        c.execute("SELECT tenant.untrust_issuer(%s)", (ONCE,))


def test_one_transaction_on_every_node_then_refused(once):
    token = mint(TENANT_A, iss=ONCE, jti=str(uuid.uuid4()))
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (token,))
        c.execute("SET LOCAL citus.force_max_query_parallelization = on")   # a connection per shard
        for _ in range(3):
            assert rows(c, "SELECT count(*) FROM rp_orders") == [(3,)]
            assert rows(c, "SELECT count(*) FROM rp_orders WHERE tenant_id = %s", (TENANT_A,)) == [(3,)]
    with app_conn() as c:
        assert sqlstate(c, "SELECT tenant.authenticate(%s)", (token,)) == "28000"
        with c.transaction():
            c.execute(psycopg.sql.SQL("SET LOCAL tenant_guard.token = {}").format(psycopg.sql.Literal(token)))
            assert sqlstate(c, "SELECT count(*) FROM rp_orders") == "42501"
