"""Pooled load through a real pgbouncer in transaction pooling mode.

    pgbouncer_load.py [--transactions N] [--clients 32] [--tenants 16] [--pool-size 4] [--deadline SECONDS]

Needs a running cluster with tenant_guard (TG_HOST/TG_PORT, as tests/support/with-cluster.sh sets them). It creates
the database `tg_pool`, starts pgbouncer on loopback in front of it (transaction pooling, `--pool-size` server
connections), and runs `--clients` client threads, two or more per tenant, each with its own connection to pgbouncer
and its own token. The app role has `tenant_guard.allow_session_scope = off`, as the README recommends behind a
transaction pooler. Every transaction:

1. probes, before authenticating, that it carries no tenant context (`tenant.current_id()` must raise 42501; the
   probe runs in a savepoint that is rolled back);
2. authenticates with the client's own token (a bind parameter, transaction scope);
3. reads: the tenant ids of every row it can see (one, its own) and the newest rows (all its own);
4. inserts a row and checks the tenant the database gave it;
5. updates one of its own rows (exactly that row, its own tenant) and tries to update a row another tenant inserted
   (nothing may change);
6. checks `tenant.current_id()` once more, and commits.

It stops by itself after N transactions in total, or fails at the deadline. Afterwards a superuser counts the rows
per tenant and checks them against what the clients wrote. The outcome is printed as one JSON object; the exit status
is 0 only if every assertion held (zero cross-tenant rows, zero carried context, zero unexpected errors, exact counts).
"""

import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import jwt
import psycopg

HOST = os.environ.get("TG_HOST", "127.0.0.1")
PORT = int(os.environ.get("TG_PORT", "54329"))
DB = "tg_pool"
APP = "tg_pool_app"
ISS = "https://issuer.pool.test"
AUD = "pool"
NO_CONTEXT = "42501"


def dsn(port=PORT, user="postgres", dbname=DB):
    return f"host={HOST} port={port} user={user} dbname={dbname}"


def setup_database(secret, allow_session_scope=False):
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB}")
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP,)).fetchone():
            c.execute(f"CREATE ROLE {APP} LOGIN NOSUPERUSER NOBYPASSRLS")
    with psycopg.connect(dsn(), autocommit=True) as c:
        jwks = {"keys": [{"kty": "oct", "kid": "pool", "alg": "HS256", "k": jwt.utils.base64url_encode(secret).decode()}]}
        c.execute("CREATE EXTENSION tenant_guard")
        c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (ISS, json.dumps(jwks), AUD))
        c.execute(f"""
            CREATE SCHEMA pool;
            CREATE TABLE pool.items (tenant_id uuid, id bigint GENERATED ALWAYS AS IDENTITY, client int NOT NULL,
                                     hits int NOT NULL DEFAULT 0, PRIMARY KEY (tenant_id, id));
            CREATE INDEX ON pool.items (id);
            SECURITY LABEL FOR tenant_guard ON TABLE pool.items IS 'tenant_scoped';
            GRANT USAGE ON SCHEMA pool TO {APP};
            GRANT SELECT, INSERT, UPDATE ON pool.items TO {APP};
        """)
        # the recommended setting for a role behind a transaction pooler (the negative control leaves it on)
        c.execute(f"ALTER ROLE {APP} IN DATABASE {DB} SET tenant_guard.allow_session_scope = "
                  + ("on" if allow_session_scope else "off"))


class Bouncer:
    """pgbouncer on loopback, transaction pooling, in a temporary directory; runs as `postgres` when we are root."""

    def __init__(self, port, pool_size):
        self.port = port
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="tg-pgbouncer-"))
        (self.dir / "userlist.txt").write_text(f'"{APP}" ""\n"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(f"""
[databases]
{DB} = host={HOST} port={PORT} dbname={DB}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir}/userlist.txt
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
max_db_connections = {pool_size}
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = {self.dir}/pgbouncer.log
pidfile = {self.dir}/pgbouncer.pid
""")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise RuntimeError(f"port {port} is already in use: stop whatever listens there first")
        cmd = ["/usr/sbin/pgbouncer", str(self.dir / "pgbouncer.ini")]
        if os.getuid() == 0:  # pgbouncer refuses to run as root
            shutil.chown(self.dir, "postgres")
            for f in self.dir.iterdir():
                shutil.chown(f, "postgres")
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                psycopg.connect(dsn(port=port, user=APP), connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("pgbouncer did not start")

    def server_connections(self):
        with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
            return c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = %s",
                             (DB, APP)).fetchone()[0]

    def stop(self):
        """Immediate shutdown (SIGTERM; SIGINT would wait for clients), of pgbouncer itself: as root, the process we
        started is runuser, which does not pass signals on."""
        pidfile = self.dir / "pgbouncer.pid"
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
        except (OSError, ValueError):
            pass  # gone (or never wrote its pid file)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Shared:
    def __init__(self, clients):
        self.lock = threading.Lock()
        self.done = 0
        self.target = 0
        self.deadline = 0.0
        self.failures = []
        self.inserted = {}  # tenant -> rows inserted and committed
        self.ids = {}  # tenant -> some committed row ids (for cross-tenant update attempts)
        self.stats = {"cross_tenant_rows": 0, "carried_context": 0, "unexpected_errors": 0,
                      "foreign_updates_tried": 0, "foreign_updates_changed": 0}

    def take(self):
        with self.lock:
            if self.done >= self.target or time.monotonic() > self.deadline:
                return False
            self.done += 1
            return True

    def fail(self, kind, what):
        with self.lock:
            self.stats[kind] += 1
            if len(self.failures) < 20:
                self.failures.append(what)


def client(n, tenant, token, shared, bouncer_port, scope):
    mine = str(tenant)
    own_ids = []
    conn = psycopg.connect(dsn(port=bouncer_port, user=APP), prepare_threshold=None)  # no server-side prepares
    try:
        while shared.take():
            try:
                with conn.transaction():
                    # 1. no context carried in from whatever ran on this server connection before
                    try:
                        with conn.transaction():
                            got = conn.execute("SELECT tenant.current_id()").fetchone()
                        shared.fail("carried_context", f"client {n} started a transaction as tenant {got[0]}")
                    except psycopg.Error as e:
                        if e.sqlstate != NO_CONTEXT:
                            raise
                    # 2. own token, transaction scope
                    conn.execute("SELECT tenant.authenticate(%s, %s)", (token, scope))
                    # 3. every tenant it can see, and the newest rows
                    seen = conn.execute("SELECT DISTINCT tenant_id FROM pool.items").fetchall()
                    newest = conn.execute("SELECT tenant_id FROM pool.items ORDER BY id DESC LIMIT 5").fetchall()
                    for (t,) in seen + newest:
                        if str(t) != mine:
                            shared.fail("cross_tenant_rows", f"client {n} ({mine}) saw a row of {t}")
                    # 4. insert
                    t, new_id = conn.execute("INSERT INTO pool.items (client) VALUES (%s) RETURNING tenant_id, id",
                                             (n,)).fetchone()
                    if str(t) != mine:
                        shared.fail("cross_tenant_rows", f"client {n} ({mine}) inserted a row for {t}")
                    # 5. update an own row, then try another tenant's
                    target = random.choice(own_ids) if own_ids else new_id
                    rows = conn.execute("UPDATE pool.items SET hits = hits + 1 WHERE id = %s RETURNING tenant_id",
                                        (target,)).fetchall()
                    if [str(r[0]) for r in rows] != [mine]:
                        shared.fail("cross_tenant_rows", f"client {n} ({mine}) updated {rows} for row {target}")
                    with shared.lock:
                        others = [t for t in shared.ids if t != mine and shared.ids[t]]
                        foreign = random.choice(shared.ids[random.choice(others)]) if others else None
                    if foreign is not None:
                        changed = conn.execute("UPDATE pool.items SET hits = hits + 1000 WHERE id = %s RETURNING id",
                                               (foreign,)).fetchall()
                        with shared.lock:
                            shared.stats["foreign_updates_tried"] += 1
                        if changed:
                            shared.fail("foreign_updates_changed", f"client {n} ({mine}) updated row {foreign}")
                    # 6. still this tenant
                    (now,) = conn.execute("SELECT tenant.current_id()").fetchone()
                    if str(now) != mine:
                        shared.fail("cross_tenant_rows", f"client {n} ({mine}) ended as {now}")
                own_ids.append(new_id)
                del own_ids[:-50]
                with shared.lock:
                    shared.inserted[mine] = shared.inserted.get(mine, 0) + 1
                    ids = shared.ids.setdefault(mine, [])
                    ids.append(new_id)
                    del ids[:-100]
            except psycopg.Error as e:
                shared.fail("unexpected_errors", f"client {n}: {e.sqlstate} {e.diag.message_primary}")
                if conn.broken:
                    conn = psycopg.connect(dsn(port=bouncer_port, user=APP), prepare_threshold=None)
    finally:
        conn.close()


def run(transactions, clients=32, tenants=16, pool_size=4, deadline=600, bouncer_port=None, scope="transaction"):
    """Runs the load and returns the outcome (a dict); `outcome["ok"]` says whether every assertion held.

    `scope="session"` is the negative control: a session-scoped context does leak into the next client's transaction
    behind a transaction pooler, and the probe must catch it."""
    secret = os.urandom(32)
    setup_database(secret, allow_session_scope=(scope == "session"))
    bouncer = Bouncer(bouncer_port or PORT + 1000, pool_size)
    tenant_ids = [uuid.uuid4() for _ in range(tenants)]
    now = int(time.time())

    def token(tenant, n):
        claims = {"iss": ISS, "aud": AUD, "sub": f"client-{n}", "tenant_id": str(tenant), "iat": now,
                  "exp": now + 3600}
        return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "pool"})

    shared = Shared(clients)
    shared.target = transactions
    shared.deadline = time.monotonic() + deadline
    threads = [threading.Thread(target=client, args=(n, tenant_ids[n % tenants], token(tenant_ids[n % tenants], n),
                                                     shared, bouncer.port, scope)) for n in range(clients)]
    started = time.monotonic()
    peak_servers = 0
    try:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak_servers = max(peak_servers, bouncer.server_connections())
            time.sleep(0.5)
        elapsed = time.monotonic() - started
    finally:
        bouncer.stop()

    with psycopg.connect(dsn(), autocommit=True) as c:
        counted = {str(t): n for t, n in c.execute("SELECT tenant_id, count(*) FROM pool.items GROUP BY 1")}
        foreign_hits = c.execute("SELECT count(*) FROM pool.items WHERE hits >= 1000").fetchone()[0]
    expected = {t: n for t, n in shared.inserted.items()}
    committed = sum(expected.values())
    outcome = {
        "transactions": committed, "target": transactions, "clients": clients, "tenants": tenants,
        "server_connections": pool_size, "peak_server_connections": peak_servers,
        "seconds": round(elapsed, 1), "tps": round(committed / elapsed, 1) if elapsed else None,
        **shared.stats, "rows_changed_by_other_tenants": foreign_hits,
        "counts_match": counted == expected, "failures": shared.failures,
    }
    outcome["ok"] = (committed == transactions and counted == expected and foreign_hits == 0
                     and peak_servers <= pool_size
                     and all(shared.stats[k] == 0 for k in ("cross_tenant_rows", "carried_context",
                                                             "unexpected_errors", "foreign_updates_changed")))
    return outcome


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--transactions", type=int, default=100_000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--tenants", type=int, default=16)
    p.add_argument("--pool-size", type=int, default=4)
    p.add_argument("--deadline", type=float, default=1800)
    a = p.parse_args()
    outcome = run(a.transactions, a.clients, a.tenants, a.pool_size, a.deadline)
    print(json.dumps(outcome, indent=2))
    sys.exit(0 if outcome["ok"] else 1)


if __name__ == "__main__":
    main()
