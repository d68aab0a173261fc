"""Key-set discovery on Citus: the coordinator's discovery worker fetches the identity provider's key set and stores
it as tenant.trust_issuer does, so the keys reach every worker in the same transaction; a rotation fetched early on
the coordinator is then accepted on shards everywhere, and a worker never fetches on its own."""

import os
import subprocess
import sys
import time

import pytest

from conftest import BASE, TENANT_A, WORKERS, app_conn, connect, fill, make_table, rows, sqlstate

SUPPORT = os.path.join(os.path.dirname(__file__), "..", "support")
sys.path.insert(0, SUPPORT)
import oidc_provider  # noqa: E402

CLUSTER = os.path.join(SUPPORT, "cluster.sh")
CERTS = BASE + "-idp"
DEADLINE = 20


def kids(port, issuer):
    with connect(port) as c:
        return sorted(r[0] for r in rows(c, "SELECT kid FROM tenant.issuers WHERE issuer = %s AND kid IS NOT NULL",
                                         (issuer,)))


def wait_for(what, check):
    end = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def idp(cluster):
    coordinator = BASE + ".coordinator"
    subprocess.run(["rm", "-rf", CERTS], check=True)
    ca = oidc_provider.make_certs(CERTS, os.stat(coordinator).st_uid)
    with connect(dbname="postgres") as c:
        c.execute("ALTER SYSTEM SET tenant_guard.discovery_databases = 'tg_citus'")
        c.execute(f"ALTER SYSTEM SET tenant_guard.discovery_ca_file = '{ca}'")
        c.execute("ALTER SYSTEM SET tenant_guard.discovery_min_refresh = 1")
    subprocess.run([CLUSTER, "restart", coordinator], check=True)
    provider = oidc_provider.IdentityProvider(CERTS).start()
    with connect(user="tg_owner") as owner:
        make_table(owner, "disc_orders")
    fill("disc_orders")
    try:
        yield provider
    finally:
        provider.stop()
        with connect() as c:
            c.execute("SELECT tenant.untrust_issuer(%s)", (provider.issuer,))
            c.execute("ALTER SYSTEM RESET tenant_guard.discovery_databases")
            c.execute("ALTER SYSTEM RESET tenant_guard.discovery_ca_file")
            c.execute("ALTER SYSTEM RESET tenant_guard.discovery_min_refresh")
        subprocess.run([CLUSTER, "restart", coordinator], check=True)
        subprocess.run(["rm", "-rf", CERTS], check=True)


def test_fetched_keys_reach_every_worker_and_tokens_work_on_shards(idp):
    with connect() as c:
        c.execute("SELECT tenant.trust_issuer_discovery(%s, 'orders-api')", (idp.issuer,))
    wait_for("the first fetch", lambda: kids(connect().info.port, idp.issuer) == sorted(idp.kids))
    for port in WORKERS:
        assert kids(port, idp.issuer) == sorted(idp.kids), port
    token = idp.mint(TENANT_A)
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (token,))
        assert rows(c, "SELECT count(*), count(DISTINCT tenant_id) FROM disc_orders") == [(3, 1)]
    # the audit compares the nodes' issuers: the fetched keys are the same everywhere
    with connect() as c:
        assert rows(c, "SELECT check_name FROM tenant.audit() WHERE check_name = 'citus_issuers_differ'") == []


def test_a_rotation_fetched_early_on_the_coordinator_reaches_the_workers(idp):
    with connect() as c:
        c.execute("SELECT tenant.trust_issuer_discovery(%s, 'orders-api')", (idp.issuer,))
    wait_for("the first fetch", lambda: kids(connect().info.port, idp.issuer) == sorted(idp.kids))
    idp.rotate()
    token = idp.mint(TENANT_A)

    def accepted():
        with app_conn() as c:
            return sqlstate(c, "SELECT tenant.authenticate(%s)", (token,)) is None

    wait_for("the new key, fetched early", accepted)
    for port in WORKERS:
        assert kids(port, idp.issuer) == sorted(idp.kids), port
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (token,))
        assert rows(c, "SELECT count(*) FROM disc_orders") == [(3,)]


def test_workers_do_not_fetch_and_refuse_discovery_of_their_own(idp):
    # no discovery worker runs on the workers (their setting lists no database), and their issuers come from the
    # coordinator only
    for port in WORKERS:
        with connect(port) as c:
            assert sqlstate(c, "SELECT tenant.trust_issuer_discovery('https://127.0.0.1:1', 'x')") == "55000"
            assert rows(c, "SELECT count(*) FROM tenant.issuer_discovery") == [(0,)]
