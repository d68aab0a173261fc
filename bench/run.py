"""tenant_guard benchmarks. Run with `make bench` (a throwaway cluster, release build).

Token verification: `tenant.authenticate` per algorithm, first sight (a token this backend has never seen) and
repeated (the same token again), plus `tenant.current_id()` with a context set. Each figure is measured inside the
server, over N calls in one statement, minus a baseline statement over the same rows that does everything except
the call (so client round trips and row production are not counted). Every run uses a fresh connection, so the
per-backend verification cache starts empty. Figures are medians of RUNS runs after a warm-up run; min and max are
shown too. Results go to bench/results/latest.md.

Encryption: `tenant.encrypt`/`decrypt` of 100-byte text values against pgcrypto measured in the same run, on the same
rows, the same way: `pgp_sym_encrypt`/`pgp_sym_decrypt` with default options, and `encrypt_iv`/`decrypt_iv` with
AES-256-CBC. The data key is loaded before timing (a warm-up call in the same backend). 1 MB values are timed in a
PL/pgSQL loop over an in-memory variable, minus the same loop without the call, and reported in MB/s.
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


def per_call_us(sql, base_sql, params=None, warm=None, n=N, prep=()):
    """Median/min/max µs per call of (sql - base_sql) over n rows, each run on a fresh backend."""
    samples = []
    for run in range(RUNS + 1):
        with psycopg.connect(dsn(user="bench_app"), autocommit=True) as c:
            c.execute("BEGIN")
            if warm:
                c.execute("SELECT tenant.authenticate(%s)", (warm,))  # loads the keys once
            for statement in prep:
                c.execute(statement)
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

    crypto = encryption(token)

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
    lines += crypto
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


N_PGP = max(N // 10, 50)  # pgp_sym_* derive a key per call (about 0.5 ms): fewer rows
MB_LOOPS = 50
ENCRYPT_OVER_PGP_TARGET = 100
ENCRYPT_OVER_CBC_TARGET = 1.5
MB_TARGET = 1000


def encryption(token):
    """The encryption benchmarks; returns report lines."""
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        c.execute("SELECT tenant.create_key(%s)", (TENANT,))
        c.execute("CREATE TABLE public.vals (i int, v text, k bytea, iv bytea)")
        c.execute("INSERT INTO public.vals SELECT i, rpad(md5(i::text), 100, md5((i + 1)::text)), "
                  "gen_random_bytes(32), gen_random_bytes(16) FROM generate_series(1, %s) i", (N,))
        c.execute("CREATE TABLE public.big (b bytea)")
        c.execute("ALTER TABLE public.big ALTER b SET STORAGE EXTERNAL")
        c.execute("INSERT INTO public.big VALUES (%s)", (os.urandom(1 << 20),))
        c.execute("CREATE TABLE public.cts (i int, tg bytea, pgp bytea, cbc bytea)")
        c.execute("GRANT SELECT ON public.vals, public.big, public.cts TO bench_app")
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("GRANT INSERT ON public.cts TO bench_app")
    with psycopg.connect(dsn(user="bench_app"), autocommit=True) as c:
        c.execute("SELECT tenant.authenticate(%s, 'session')", (token,))
        c.execute("INSERT INTO public.cts SELECT i, tenant.encrypt(v), "
                  "CASE WHEN i <= %s THEN pgp_sym_encrypt(v, 'bench password') END, "
                  "encrypt_iv(convert_to(v, 'UTF8'), k, iv, 'aes-cbc') FROM public.vals", (N_PGP,))
    warm = ["SELECT tenant.decrypt(tenant.encrypt('warm'))"]
    rows = [
        ("tenant.encrypt", "SELECT count(tenant.encrypt(v)) FROM public.vals", "SELECT count(v) FROM public.vals", N),
        ("tenant.decrypt", "SELECT count(tenant.decrypt(tg)) FROM public.cts", "SELECT count(tg) FROM public.cts", N),
        ("pgcrypto pgp_sym_encrypt", f"SELECT count(pgp_sym_encrypt(v, 'bench password')) FROM public.vals "
         f"WHERE i <= {N_PGP}", f"SELECT count(v) FROM public.vals WHERE i <= {N_PGP}", N_PGP),
        ("pgcrypto pgp_sym_decrypt", f"SELECT count(pgp_sym_decrypt(pgp, 'bench password')) FROM public.cts "
         f"WHERE i <= {N_PGP}", f"SELECT count(pgp) FROM public.cts WHERE i <= {N_PGP}", N_PGP),
        ("pgcrypto encrypt_iv (AES-CBC)", "SELECT count(encrypt_iv(convert_to(v, 'UTF8'), k, iv, 'aes-cbc')) "
         "FROM public.vals", "SELECT count(convert_to(v, 'UTF8')) FROM public.vals", N),
        ("pgcrypto decrypt_iv (AES-CBC)", "SELECT count(convert_from(decrypt_iv(cbc, k, iv, 'aes-cbc'), 'UTF8')) "
         "FROM public.cts JOIN public.vals USING (i)", "SELECT count(cbc) FROM public.cts JOIN public.vals USING (i)",
         N),
    ]
    small = {}
    for name, sql, base, n in rows:
        small[name] = per_call_us(sql, base, None, token, n, warm)
        print(f"bench: {name} {small[name][0]:.2f} µs", flush=True)

    def loop(body):
        # `|| ''` makes b a plain in-memory value: the loop measures the call, not 20 reads of the TOAST table
        return (f"DO $$ DECLARE b bytea := (SELECT b || ''::bytea FROM public.big); r bytea; BEGIN "
                f"FOR i IN 1..{MB_LOOPS} LOOP {body}; END LOOP; END $$")

    big = {}
    for name, body, prep in [
        ("tenant.encrypt_bytea", "r := tenant.encrypt_bytea(b)", warm),
        ("tenant.decrypt_bytea", "r := tenant.decrypt_bytea(b)",
         warm + ["CREATE TEMP TABLE bigct AS SELECT tenant.encrypt_bytea(b) AS b FROM public.big"]),
        ("pgcrypto encrypt_iv (AES-CBC)", "r := encrypt_iv(b, decode(repeat('ab', 32), 'hex'), "
         "decode(repeat('cd', 16), 'hex'), 'aes-cbc')", []),
    ]:
        sql = loop(body)
        if name == "tenant.decrypt_bytea":
            sql = sql.replace("FROM public.big", "FROM bigct")
        us = per_call_us(sql, loop("r := b"), None, token, MB_LOOPS, prep)
        big[name] = tuple((1 << 20) / x for x in us)  # bytes per µs = MB/s
        print(f"bench: {name} 1 MB {big[name][0]:.0f} MB/s", flush=True)

    enc, dec = small["tenant.encrypt"][0], small["tenant.decrypt"][0]
    pgp_e, pgp_d = small["pgcrypto pgp_sym_encrypt"][0], small["pgcrypto pgp_sym_decrypt"][0]
    cbc_e, cbc_d = small["pgcrypto encrypt_iv (AES-CBC)"][0], small["pgcrypto decrypt_iv (AES-CBC)"][0]
    lines = [
        "## Encryption, 100-byte values (µs per call)",
        "",
        "| what | median | min | max | rows/s (median) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (med, lo, hi) in small.items():
        lines.append(f"| {name} | {med:.2f} | {lo:.2f} | {hi:.2f} | {1e6 / med if med else 0:,.0f} |")
    checks = [
        ("tenant.encrypt rows/s ÷ pgp_sym_encrypt rows/s", pgp_e / enc, f"≥ {ENCRYPT_OVER_PGP_TARGET}×",
         pgp_e / enc >= ENCRYPT_OVER_PGP_TARGET),
        ("tenant.decrypt rows/s ÷ pgp_sym_decrypt rows/s", pgp_d / dec, "", None),
        ("tenant.encrypt µs ÷ encrypt_iv µs", enc / cbc_e, f"≤ {ENCRYPT_OVER_CBC_TARGET}×",
         enc / cbc_e <= ENCRYPT_OVER_CBC_TARGET),
        ("tenant.decrypt µs ÷ decrypt_iv µs", dec / cbc_d, f"≤ {ENCRYPT_OVER_CBC_TARGET}×",
         dec / cbc_d <= ENCRYPT_OVER_CBC_TARGET),
    ]
    lines += ["", "| ratio (same run) | value | target | met |", "|---|---:|---:|:---:|"]
    for name, value, target, met in checks:
        lines.append(f"| {name} | {value:.2f}× | {target} | {'' if met is None else ('yes' if met else '**no**')} |")
    lines += ["", f"## Encryption, 1 MB values (MB/s, {MB_LOOPS} calls per run)", "",
              "| what | median | min | max | target | met |", "|---|---:|---:|---:|---:|:---:|"]
    for name, (med, lo, hi) in big.items():
        target = MB_TARGET if name.startswith("tenant.") else None
        met = "" if target is None else ("yes" if med >= target else "**no**")
        lines.append(f"| {name} | {med:,.0f} | {hi:,.0f} | {lo:,.0f} | {'' if target is None else f'≥ {target}'} "
                     f"| {met} |")
    lines.append("")
    return lines


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"bench: done in {time.time() - t0:.0f} s")
