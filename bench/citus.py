"""The Citus section of `make bench`: shard pruning by tenant_guard against a hand-written `WHERE tenant_id = $1`, on
the same three-node cluster in the same run (started by tests/citus/run.sh; skipped where Citus is not installed).

Two distributed tables with the same rows (TENANTS tenants, ROWS_PER_TENANT rows each, SHARDS shards): `orders`,
protected by tenant_guard and read by the confined application role with a token and no tenant filter, and
`orders_plain`, unprotected and read by a role without row-level security with `WHERE tenant_id = $1`. Each
transaction is what an application does per request: BEGIN, set the tenant (tenant.authenticate(token), or nothing
for the baseline), one query, COMMIT. Figures are client wall times per transaction, medians of RUNS runs of TX
transactions each, tenants in turn; the ratio is tenant_guard's over the baseline's. EXPLAIN's task count shows the
pruning. Results go to bench/results/citus.md.
"""

import json
import os
import re
import statistics
import time
import uuid

import jwt
import psycopg

HOST = os.environ.get("TG_HOST", "127.0.0.1")
PORT = int(os.environ.get("TG_PORT", "54360"))
WORKERS = (PORT + 1, PORT + 2)
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
TX = int(os.environ.get("BENCH_CITUS_TX", "300"))
TENANTS, ROWS_PER_TENANT, SHARDS = 50, 200, 32
SECRET = os.urandom(32)
ISS, AUD = "https://bench.citus.test", "bench"
OUT = os.path.join(os.path.dirname(__file__), "results", "citus.md")
RATIO_TARGET = 2.0   # one more statement per transaction (tenant.authenticate), verified on two nodes


def connect(port=PORT, user="postgres", dbname="tg_bench_citus"):
    return psycopg.connect(host=HOST, port=port, user=user, dbname=dbname, autocommit=True)


def mint(tenant):
    now = int(time.time())
    return jwt.encode({"iss": ISS, "aud": AUD, "tenant_id": str(tenant), "iat": now, "exp": now + 3600}, SECRET,
                      algorithm="HS256", headers={"kid": "k1"})


def setup(tenants):
    for port in (PORT,) + WORKERS:
        with connect(port, dbname="postgres") as c:
            c.execute("DROP DATABASE IF EXISTS tg_bench_citus WITH (FORCE)")
            c.execute("CREATE DATABASE tg_bench_citus")
        with connect(port) as c:
            c.execute("CREATE EXTENSION citus")
            c.execute("CREATE EXTENSION tenant_guard")
    with connect() as c:
        c.execute("SELECT citus_set_coordinator_host(%s, %s)", (HOST, PORT))
        for port in WORKERS:
            c.execute("SELECT citus_add_node(%s, %s)", (HOST, port))
        for role, rls in (("bench_app", "NOBYPASSRLS"), ("bench_plain", "BYPASSRLS")):
            c.execute(f"DO $$ BEGIN CREATE ROLE {role} LOGIN NOSUPERUSER {rls}; "
                      f"EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        jwks = {"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256",
                          "k": jwt.utils.base64url_encode(SECRET).decode()}]}
        c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (ISS, json.dumps(jwks), AUD))
        c.execute(f"SET citus.shard_count = {SHARDS}")
        for table in ("orders", "orders_plain"):
            c.execute(f"CREATE TABLE {table} (tenant_id uuid NOT NULL, id bigint NOT NULL, item text, "
                      f"PRIMARY KEY (tenant_id, id))")
            c.execute(f"SELECT create_distributed_table('{table}', 'tenant_id')")
            c.execute(f"INSERT INTO {table} SELECT t::uuid, i, 'item ' || i FROM unnest(%s::text[]) t, "
                      f"generate_series(1, {ROWS_PER_TENANT}) i", ([str(t) for t in tenants],))
        c.execute("SECURITY LABEL FOR tenant_guard ON TABLE orders IS 'tenant_scoped'")
        c.execute("GRANT SELECT ON orders TO bench_app")
        c.execute("GRANT SELECT ON orders_plain TO bench_plain")
        c.execute("ANALYZE orders, orders_plain")


def per_tx_ms(user, statements):
    """Median/min/max milliseconds per transaction over RUNS runs of TX transactions (statements(i) gives them)."""
    samples = []
    with connect(user=user) as c:
        for run in range(RUNS + 1):
            t0 = time.perf_counter()
            for i in range(TX):
                with c.transaction():
                    for sql, params in statements(i):
                        c.execute(sql, params).fetchall() if sql.startswith("SELECT") else c.execute(sql, params)
            if run:   # the first run warms the connection's caches
                samples.append((time.perf_counter() - t0) * 1000 / TX)
    return statistics.median(samples), min(samples), max(samples)


def tasks(user, sql, params=None, token=None):
    with connect(user=user) as c, c.transaction():
        if token:
            c.execute("SELECT tenant.authenticate(%s)", (token,))
        plan = "\n".join(r[0] for r in c.execute("EXPLAIN " + sql, params).fetchall())
        return int(re.search(r"Task Count: (\d+)", plan).group(1))


def main():
    t_start = time.time()
    tenants = [uuid.uuid4() for _ in range(TENANTS)]
    setup(tenants)
    tokens = [mint(t) for t in tenants]
    with connect() as c:   # EXPLAIN for the task counts: an administrator that RLS still confines
        c.execute("DO $$ BEGIN CREATE ROLE bench_admin LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE tenant_guard_admin; "
                  "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        c.execute("GRANT SELECT ON orders, orders_plain TO bench_admin")
    queries = (("count", "SELECT count(*) FROM {t}{w}"), ("point", "SELECT item FROM {t} WHERE id = 7{a}"),
               ("tenant's rows", "SELECT id, item FROM {t}{w}"))
    lines = ["# tenant_guard on Citus: shard pruning", "",
             f"{time.strftime('%Y-%m-%d %H:%M:%S')}, coordinator and two workers on this machine, {SHARDS} shards, "
             f"{TENANTS} tenants × {ROWS_PER_TENANT} rows; per transaction (BEGIN, set the tenant, one query, "
             f"COMMIT), median of {RUNS} runs of {TX}.", "",
             "| query | tasks, tenant_guard | tasks, hand-written | tenant_guard ms | hand-written ms | ratio | target | met |",
             "|---|---:|---:|---:|---:|---:|---:|:---:|"]
    for name, shape in queries:
        guarded = shape.format(t="orders", w="", a="")
        plain = shape.format(t="orders_plain", w=" WHERE tenant_id = %s", a=" AND tenant_id = %s")
        tg_tasks = tasks("bench_admin", guarded, token=tokens[0])
        plain_tasks = tasks("bench_admin", plain.replace("orders_plain", "orders"), (tenants[0],), token=tokens[0])
        tg = per_tx_ms("bench_app", lambda i: [("SELECT tenant.authenticate(%s)", (tokens[i % TENANTS],)),
                                                (guarded, None)])
        base = per_tx_ms("bench_plain", lambda i: [(plain, (tenants[i % TENANTS],))])
        ratio = tg[0] / base[0]
        met = "yes" if ratio <= RATIO_TARGET else "**no**"
        lines.append(f"| {name} | {tg_tasks} | {plain_tasks} | {tg[0]:.3f} | {base[0]:.3f} | {ratio:.2f} | "
                     f"≤ {RATIO_TARGET} | {met} |")
        print(f"bench citus: {name}: {tg[0]:.3f} ms against {base[0]:.3f} ms ({tg_tasks} task)", flush=True)
    lines += ["", "tenant_guard's transaction also verifies the token (tenant.authenticate) on the coordinator, and the "
              "worker verifies it again when the query runs there; the hand-written one trusts its parameter."]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"bench citus: done in {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
