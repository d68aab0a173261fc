"""tenant_guard benchmarks. Run with `make bench` (a throwaway cluster, release build).

Token verification: `tenant.authenticate` per algorithm, first sight (a token this backend has never seen) and
repeated (the same token again), plus `tenant.current_id()` with a context set. Each figure is measured inside the
server, over N calls in one statement, minus a baseline statement over the same rows that does everything except
the call (so client round trips and row production are not counted). Every run uses a fresh connection, so the
per-backend verification cache starts empty. Figures are medians of RUNS runs after a warm-up run; min and max are
shown too. Results go to bench/results/latest.md.
"""

import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid

import psycopg

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "e2e"))
from conftest import AUD, ISS, Keys  # noqa: E402  (the same PyJWT-based minter the tests use)

HOST = os.environ.get("TG_HOST", "127.0.0.1")
PORT = int(os.environ.get("TG_PORT", "54331"))
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
N = int(os.environ.get("BENCH_N", "2000"))
N_CHEAP = 50 * N  # calls for the cached paths, which take well under a microsecond
TENANT = uuid.UUID("cccccccc-0000-4000-8000-00000000000c")
TARGETS = {"HS256": 10, "EdDSA": 60, "ES256": 80, "RS256": 60}
REPEATED_TARGET = 3
OUT = os.path.join(os.path.dirname(__file__), "results", "latest.md")


def dsn(user="postgres", dbname="tg_bench"):
    return f"host={HOST} port={PORT} user={user} dbname={dbname}"


def server_ms(conn, sql, params=None):
    """Wall time of one statement measured by the server itself (clock_timestamp around it, same backend)."""
    t0 = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    conn.execute(sql, params)
    t1 = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    return (t1 - t0).total_seconds() * 1000


def per_call_us(sql, base_sql, params=None, warm=None, n=N):
    """Median/min/max µs per call of (sql - base_sql) over n rows, each run on a fresh backend."""
    samples = []
    for run in range(RUNS + 1):
        with psycopg.connect(dsn(user="bench_app"), autocommit=True) as c:
            c.execute("BEGIN")
            if warm:
                c.execute("SELECT tenant.authenticate(%s)", (warm,))  # loads the keys once
            base = server_ms(c, base_sql, params)
            t = server_ms(c, sql, params)
            c.execute("ROLLBACK")
        if run > 0:  # run 0 is the warm-up
            samples.append(max(t - base, 0.0) * 1000 / n)
    return statistics.median(samples), min(samples), max(samples)


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu, os.cpu_count()


def main():
    keys = Keys()
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS tg_bench WITH (FORCE)")
        c.execute("CREATE DATABASE tg_bench")
        c.execute("DROP ROLE IF EXISTS bench_app")
        c.execute("CREATE ROLE bench_app LOGIN NOSUPERUSER NOBYPASSRLS")
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("CREATE EXTENSION tenant_guard")
        c.execute("SELECT tenant.trust_issuer(%s, %s, %s)", (ISS, psycopg.types.json.Jsonb(keys.jwks()), AUD))
        c.execute("CREATE TABLE public.tokens (alg text, i int, token text)")
        c.execute("GRANT SELECT ON public.tokens TO bench_app")
        print(f"bench: minting {N} distinct tokens per algorithm ...", flush=True)
        with c.cursor() as cur:
            for alg in TARGETS:
                rows = [(alg, i, keys.mint(TENANT, alg=alg, jti=str(i))) for i in range(N)]
                cur.executemany("INSERT INTO public.tokens VALUES (%s, %s, %s)", rows)
        c.execute("ANALYZE public.tokens")
        pg_version = c.execute("SHOW server_version").fetchone()[0]

    results = []
    for alg, target in TARGETS.items():
        warm = keys.mint(TENANT, alg=alg, jti="warm")
        first = per_call_us(
            "SELECT count(tenant.authenticate(token)) FROM public.tokens WHERE alg = %s",
            "SELECT count(length(token)) FROM public.tokens WHERE alg = %s",
            (alg,), warm)
        results.append((f"authenticate, {alg}, first sight", first, target))
        print(f"bench: {alg} first sight {first[0]:.1f} µs", flush=True)
    token = keys.mint(TENANT, alg="RS256")
    repeated = per_call_us(
        f"SELECT count(tenant.authenticate(%s)) FROM generate_series(1, {N_CHEAP})",
        f"SELECT count(length(%s)) FROM generate_series(1, {N_CHEAP})",
        (token,), token, N_CHEAP)
    results.append(("authenticate, repeated identical token", repeated, REPEATED_TARGET))
    current = per_call_us(
        f"SELECT count(tenant.current_id()) FROM generate_series(1, {N_CHEAP})",
        f"SELECT count(1) FROM generate_series(1, {N_CHEAP})",
        None, token, N_CHEAP)
    results.append(("current_id, context set", current, None))

    cpu, cores = machine()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# tenant_guard benchmark results",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {commit or 'unknown'}",
        f"- machine: {cpu}, {cores} cores, {platform.system()} {platform.release()}",
        f"- PostgreSQL: {pg_version}; tenant_guard release build",
        f"- method: {N} calls ({N_CHEAP} for the cached paths) in one statement, minus a baseline statement over the same rows; fresh backend per run;"
        f" median of {RUNS} runs after a warm-up. No pinning.",
        "",
        "## Token verification (µs per call)",
        "",
        "| what | median | min | max | target | met |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for name, (med, lo, hi), target in results:
        met = "" if target is None else ("yes" if med <= target else "**no**")
        tgt = "" if target is None else f"≤ {target}"
        lines.append(f"| {name} | {med:.2f} | {lo:.2f} | {hi:.2f} | {tgt} | {met} |")
    lines.append("")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"bench: done in {time.time() - t0:.0f} s")
