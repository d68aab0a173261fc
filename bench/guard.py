"""What the tamper guard costs: the owner line's catalog check after each DDL statement of a confined role, and plans
made without planner statistics (hide_planner_statistics). Figures are ratios against a baseline measured in the
same run, on the same database: the same DDL run by a superuser (who is not checked), the same query planned with
the statistics (the setting off for that session).
"""

import statistics
import time
import uuid

import psycopg

TABLES = 200          # protected tables in the database the DDL runs in
DDL_ROUNDS = 40       # ADD COLUMN + DROP COLUMN pairs per run
QUERY_ROUNDS = 200    # executions per query per run
ROWS = 200_000


def setup(dsn, tenant):
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS guardbench CASCADE")
        c.execute("DROP ROLE IF EXISTS bench_owner")
        c.execute("CREATE ROLE bench_owner NOLOGIN")
        c.execute("GRANT bench_owner TO bench_app")
        c.execute("CREATE SCHEMA guardbench AUTHORIZATION bench_owner")
        c.execute("SET ROLE bench_owner")
        for i in range(TABLES):
            c.execute(f"CREATE TABLE guardbench.t{i} (tenant_id uuid, id bigint, note text, "
                      f"PRIMARY KEY (tenant_id, id))")
        c.execute("RESET ROLE")
        c.execute("SECURITY LABEL FOR tenant_guard ON SCHEMA guardbench IS 'tenant_scoped'")
        # a skewed column: 1% of the rows are 'rare', the rest 'common'; the tenant owns them all
        c.execute("CREATE TABLE guardbench.skewed (tenant_id uuid, id bigint, status text, payload text, "
                  "PRIMARY KEY (tenant_id, id))")
        c.execute("CREATE INDEX ON guardbench.skewed (tenant_id, status)")
        c.execute("ALTER TABLE guardbench.skewed OWNER TO bench_owner")
        c.execute("SECURITY LABEL FOR tenant_guard ON TABLE guardbench.skewed IS 'tenant_scoped'")
        c.execute(f"INSERT INTO guardbench.skewed SELECT %s, g, CASE WHEN g %% 100 = 0 THEN 'rare' ELSE 'common' END, "
                  f"repeat('x', 40) FROM generate_series(1, {ROWS}) g", (tenant,))
        c.execute("GRANT USAGE ON SCHEMA guardbench TO bench_app")
        c.execute("GRANT SELECT ON guardbench.skewed TO bench_app")
        c.execute("ANALYZE guardbench.skewed")


def ddl_ms(dsn, as_owner):
    """Median ms per DDL statement on guardbench.t0, as a confined member of the owner or as a superuser."""
    samples = []
    for run in range(4):
        with psycopg.connect(dsn(user="bench_app" if as_owner else "postgres"), autocommit=True) as c:
            if as_owner:
                c.execute("SET ROLE bench_owner")
            t0 = time.perf_counter()
            for _ in range(DDL_ROUNDS):
                c.execute("ALTER TABLE guardbench.t0 ADD COLUMN extra int")
                c.execute("ALTER TABLE guardbench.t0 DROP COLUMN extra")
            elapsed = (time.perf_counter() - t0) * 1000 / (2 * DDL_ROUNDS)
        if run > 0:
            samples.append(elapsed)
    return statistics.median(samples)


QUERIES = {
    "point query (tenant, id)": "SELECT payload FROM guardbench.skewed WHERE tenant_id = %s AND id = 4242",
    "skewed value (1% of rows)": "SELECT count(*) FROM guardbench.skewed WHERE tenant_id = %s AND status = 'rare'",
    "common value (99% of rows)": "SELECT count(*) FROM guardbench.skewed WHERE tenant_id = %s AND status = 'common'",
}


def query_ms(dsn, token, tenant, sql, hide):
    samples = []
    for run in range(4):
        with psycopg.connect(dsn(), autocommit=True) as c:
            c.execute(f"SET tenant_guard.hide_planner_statistics = {'on' if hide else 'off'}")
            c.execute("SET ROLE bench_app")
            c.execute("BEGIN")
            c.execute("SELECT tenant.authenticate(%s)", (token,))
            t0 = time.perf_counter()
            for _ in range(QUERY_ROUNDS):
                c.execute(sql, (tenant,))
            elapsed = (time.perf_counter() - t0) * 1000 / QUERY_ROUNDS
            c.execute("ROLLBACK")
        if run > 0:
            samples.append(elapsed)
    return statistics.median(samples)


POOLED_ROUNDS = 500


def pooled_ms(dsn, token, tenant, scope):
    """Median ms per transaction (BEGIN; authenticate; a point query; COMMIT), client round trips included, with
    allow_session_scope on (no pooler) or off (behind a pooler: prepared statements are pinned, temporary objects
    and session settings checked at COMMIT)."""
    samples = []
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"ALTER ROLE bench_app SET tenant_guard.allow_session_scope = {scope}")
    for run in range(4):
        with psycopg.connect(dsn(user="bench_app"), autocommit=True) as c:
            t0 = time.perf_counter()
            for _ in range(POOLED_ROUNDS):
                c.execute("BEGIN")
                c.execute("SELECT tenant.authenticate(%s)", (token,))
                c.execute(QUERIES["point query (tenant, id)"], (tenant,))
                c.execute("COMMIT")
            elapsed = (time.perf_counter() - t0) * 1000 / POOLED_ROUNDS
        if run > 0:
            samples.append(elapsed)
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("ALTER ROLE bench_app RESET tenant_guard.allow_session_scope")
    return statistics.median(samples)


def run(dsn, keys):
    """Returns report lines."""
    tenant = uuid.UUID("eeeeeeee-0000-4000-8000-00000000000e")
    token = keys.mint(tenant, alg="EdDSA", lifetime=3600)
    setup(dsn, tenant)
    admin = ddl_ms(dsn, as_owner=False)
    owner = ddl_ms(dsn, as_owner=True)
    lines = ["## The tamper guard", "",
             f"The owner line's check after each DDL statement of a confined role, in a database with {TABLES + 1} "
             "protected tables (ALTER TABLE ADD and DROP COLUMN, median ms per statement, client round trip "
             "included), against the same statements by a superuser, which are not checked:", "",
             "| statement by | ms | ratio |", "|---|---:|---:|",
             f"| a superuser (baseline) | {admin:.2f} | 1.00× |",
             f"| a member of the owner (checked) | {owner:.2f} | {owner / admin:.2f}× |", "",
             f"Plans without planner statistics (`hide_planner_statistics`, on by default), {ROWS:,} rows of one "
             "tenant, median ms per query (client round trip included), against the same query planned with them:",
             "", "| query | with statistics | without | ratio |", "|---|---:|---:|---:|"]
    for name, sql in QUERIES.items():
        with_stats = query_ms(dsn, token, tenant, sql, hide=False)
        without = query_ms(dsn, token, tenant, sql, hide=True)
        lines.append(f"| {name} | {with_stats:.2f} | {without:.2f} | {without / with_stats:.2f}× |")
    lines.append("")
    direct = pooled_ms(dsn, token, tenant, "on")
    pooled = pooled_ms(dsn, token, tenant, "off")
    lines += ["The rules for roles behind a transaction pooler (`allow_session_scope = off`: prepared statements "
              "pinned, temporary objects and session settings checked at COMMIT), per transaction (BEGIN, "
              "authenticate, a point query, COMMIT; median ms, client round trips included):", "",
              "| allow_session_scope | ms per transaction | ratio |", "|---|---:|---:|",
              f"| on (baseline) | {direct:.3f} | 1.00× |", f"| off | {pooled:.3f} | {pooled / direct:.2f}× |", ""]
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("DROP SCHEMA guardbench CASCADE")
        c.execute("REVOKE bench_owner FROM bench_app")
        c.execute("DROP ROLE bench_owner")
    return lines
