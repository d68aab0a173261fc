"""The zero-trust section of `make bench`: what revocation and certificate binding add to `tenant.authenticate` on
the cached path (a token this backend verified before), measured in the same run against the same path without them.

- revocation: the same repeated authenticate of one token, with the revocation tables empty and with 10,000 revoked
  jtis, 1,000 revoked subjects and 1,000 suspended tenants (none of them the token's);
- certificate binding: on one TLS connection with a client certificate, the repeated authenticate of a token bound
  to that certificate against the same of an unbound token;
- replay protection: the repeated authenticate of a token whose issuer requires each jti once, in its transaction,
  against the same of an ordinary token;
- first sight: an EdDSA token never seen before, with and without the revocation lists (each is checked once, at
  verification);
- first sight in a second backend: distinct tokens another backend verified, against the same tokens seen again
  (the shared verification cache against the backend's own).

Each figure is measured inside the server, N calls in one statement minus a baseline statement over the same rows,
on a fresh connection per run, median of RUNS runs after a warm-up. Results go to bench/results/zero-trust.md.
"""

import datetime
import os
import statistics
import subprocess
import sys
import uuid

import psycopg

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "e2e"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "support"))
from conftest import AUD, ISS, Keys  # noqa: E402
import tls_certs  # noqa: E402

HOST = os.environ.get("TG_HOST", "127.0.0.1")
PORT = int(os.environ.get("TG_PORT", "54331"))
DATA = os.environ.get("TG_DATA", "/tmp/tenant_guard-bench")
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
N = int(os.environ.get("BENCH_ZT_N", "100000"))
N_FIRST = int(os.environ.get("BENCH_ZT_FIRST", "4000"))
TENANT = uuid.UUID("dddddddd-0000-4000-8000-00000000000d")
TARGET_ADDED_US = 1.0
OUT = os.path.join(os.path.dirname(__file__), "results", "zero-trust.md")
CERTS = DATA + "/tls"
DB = "tg_bench_zt"
ONCE = "https://once.bench.test"


def connect(user="postgres", dbname=DB, cert=None):
    tls = tls_certs.client_options(CERTS, cert) if cert else {"sslmode": "disable"}
    return psycopg.connect(host=HOST, port=PORT, user=user, dbname=dbname, autocommit=True, **tls)


def server_ms(conn, sql, params=None):
    t0 = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    conn.execute(sql, params)
    t1 = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    return (t1 - t0).total_seconds() * 1000


def per_call_us(sql, base_sql, params, warm, n, cert=None):
    samples = []
    for run in range(RUNS + 1):
        with connect("bench_zt", cert=cert) as c:
            c.execute("BEGIN")
            c.execute("SELECT tenant.authenticate(%s)", (warm,))
            base = server_ms(c, base_sql, params)
            t = server_ms(c, sql, params)
            c.execute("ROLLBACK")
        if run > 0:
            samples.append(max(t - base, 0.0) * 1000 / n)
    return statistics.median(samples), min(samples), max(samples)


def repeated(token, cert=None):
    return per_call_us(f"SELECT count(tenant.authenticate(%s)) FROM generate_series(1, {N})",
                       f"SELECT count(length(%s)) FROM generate_series(1, {N})", (token,), token, N, cert)


def repeated_once(keys):
    """The cached path of a token whose issuer requires each jti once: a fresh token per run (a used one is refused
    in the next run's transaction)."""
    samples = []
    for run in range(RUNS + 1):
        token = keys.mint(TENANT, alg="EdDSA", lifetime=3000, iss=ONCE, jti=str(uuid.uuid4()))
        with connect("bench_zt") as c:
            c.execute("BEGIN")
            c.execute("SELECT tenant.authenticate(%s)", (token,))
            base = server_ms(c, f"SELECT count(length(%s)) FROM generate_series(1, {N})", (token,))
            t = server_ms(c, f"SELECT count(tenant.authenticate(%s)) FROM generate_series(1, {N})", (token,))
            c.execute("ROLLBACK")
        if run > 0:
            samples.append(max(t - base, 0.0) * 1000 / N)
    return statistics.median(samples), min(samples), max(samples)


def fresh_tokens(keys):
    """Fills public.zt_tokens with N_FIRST EdDSA tokens no backend has seen."""
    with connect() as admin:
        admin.execute("TRUNCATE public.zt_tokens")
        with admin.cursor() as cur:
            cur.executemany("INSERT INTO public.zt_tokens VALUES (%s)",
                            [(keys.mint(TENANT, alg="EdDSA", jti=str(uuid.uuid4())),) for _ in range(N_FIRST)])


def first_sight(keys):
    """Tokens no backend of the server has seen: fresh ones for every run (a run's tokens are in the shared
    verification cache afterwards)."""
    samples = []
    sql = "SELECT count(tenant.authenticate(token)) FROM public.zt_tokens"
    base_sql = "SELECT count(length(token)) FROM public.zt_tokens"
    for run in range(RUNS + 1):
        fresh_tokens(keys)
        with connect("bench_zt") as c:
            c.execute("BEGIN")
            base = server_ms(c, base_sql)
            t = server_ms(c, sql)
            c.execute("ROLLBACK")
        if run > 0:
            samples.append(max(t - base, 0.0) * 1000 / N_FIRST)
    return statistics.median(samples), min(samples), max(samples)


def second_backend():
    """Tokens another backend verified: a fresh backend, once it has loaded the issuers (on another token),
    authenticates N_FIRST distinct tokens it has never seen (verified elsewhere: the shared verification cache), then
    the same tokens again (its own cache). Returns (own cache, shared first sight) as (median, min, max) µs per
    token."""
    own, shared = [], []
    fresh_tokens(KEYS)
    # the backend's own first call loads the issuers: made on another token, not counted
    warm = KEYS.mint(TENANT, alg="EdDSA", jti=str(uuid.uuid4()))
    with connect("bench_zt") as c:   # another backend verifies them first
        c.execute("SELECT count(tenant.authenticate(token)) FROM public.zt_tokens")
    with connect() as admin:
        before = admin.execute("SELECT signatures_checked FROM tenant.verification_cache_stats()").fetchone()[0]
    sql = "SELECT count(tenant.authenticate(token)) FROM public.zt_tokens"
    base_sql = "SELECT count(token) FROM public.zt_tokens"
    for run in range(RUNS + 1):
        with connect("bench_zt") as c:
            c.execute("BEGIN")
            c.execute("SELECT tenant.authenticate(%s)", (warm,))
            base = server_ms(c, base_sql)
            first = server_ms(c, sql)
            again = server_ms(c, sql)
            if os.environ.get("BENCH_DEBUG"):
                print("second backend (ms): base", base, "first", first, "again", again)
            c.execute("ROLLBACK")
        if run > 0:
            shared.append(max(first - base, 0.0) * 1000 / N_FIRST)
            own.append(max(again - base, 0.0) * 1000 / N_FIRST)
    with connect() as admin:
        checked = admin.execute("SELECT signatures_checked FROM tenant.verification_cache_stats()").fetchone()[0]
    # the warm-up token is checked once, by the first run's backend
    assert checked == before + 1, f"the second backends checked {checked - before - 1} signatures: the shared cache missed"
    summary = lambda s: (statistics.median(s), min(s), max(s))  # noqa: E731
    return summary(own), summary(shared)


def revocation_lists(admin, on):
    if on:
        admin.execute("INSERT INTO tenant.revoked_token (jti) SELECT 'revoked-' || g FROM generate_series(1, 10000) g")
        admin.execute("INSERT INTO tenant.revoked_subject (issuer, subject, issued_before) "
                      "SELECT %s, 'gone-' || g, now() FROM generate_series(1, 1000) g", (ISS,))
        admin.execute("INSERT INTO tenant.suspended_tenant SELECT gen_random_uuid() FROM generate_series(1, 1000)")
    else:
        admin.execute("DELETE FROM tenant.revoked_token; DELETE FROM tenant.revoked_subject; "
                      "DELETE FROM tenant.suspended_tenant")


KEYS = Keys()


def main():
    keys = KEYS
    subprocess.run(["rm", "-rf", CERTS], check=True)
    tls_certs.make(CERTS, os.stat(DATA).st_uid)
    with connect(dbname="postgres") as c:
        for statement in tls_certs.server_settings(CERTS):
            c.execute(statement)
        c.execute("SELECT pg_reload_conf()")
        c.execute(f"DROP DATABASE IF EXISTS {DB}")
        c.execute(f"CREATE DATABASE {DB}")
        c.execute("DROP ROLE IF EXISTS bench_zt")
        c.execute("CREATE ROLE bench_zt LOGIN NOSUPERUSER NOBYPASSRLS")
        pg_version = c.execute("SHOW server_version").fetchone()[0]
    with connect() as admin:
        admin.execute("CREATE EXTENSION tenant_guard")
        admin.execute("SELECT tenant.trust_issuer(%s, %s, %s)", (ISS, psycopg.types.json.Jsonb(keys.jwks()), AUD))
        admin.execute("SELECT tenant.trust_issuer(%s, %s, %s, require_jti => true)",
                      (ONCE, psycopg.types.json.Jsonb(keys.jwks()), AUD))
        # tokens issued within the clock leeway after the server started are refused by such an issuer
        age = admin.execute("SELECT extract(epoch FROM now() - pg_postmaster_start_time())").fetchone()[0]
        if age < 32:
            import time
            time.sleep(32 - float(age))
        admin.execute("CREATE TABLE public.zt_tokens (token text)")
        admin.execute("GRANT SELECT ON public.zt_tokens TO bench_zt")
        thumb = tls_certs.thumbprint(CERTS, "x")
        token = keys.mint(TENANT, alg="EdDSA", lifetime=3000)
        bound = keys.mint(TENANT, alg="EdDSA", lifetime=3000, cnf={"x5t#S256": thumb})

        rows = []
        plain = repeated(token)
        first_plain = first_sight(keys)
        revocation_lists(admin, True)
        listed = repeated(token)
        first_listed = first_sight(keys)
        revocation_lists(admin, False)
        unbound_tls = repeated(token, cert="x")
        bound_tls = repeated(bound, cert="x")
        once = repeated_once(keys)
        own_cache, shared_cache = second_backend()

    def row(what, base, measured, target):
        added = measured[0] - base[0]
        met = "" if target is None else ("yes" if added <= target else "no")
        return (f"| {what} | {base[0]:.2f} | {measured[0]:.2f} ({measured[1]:.2f}-{measured[2]:.2f}) | {added:+.2f} |"
                f" {'' if target is None else f'< {target:.0f}'} | {met} |")

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# tenant_guard zero-trust checks: benchmark results", "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {commit or 'unknown'}; PostgreSQL {pg_version}; tenant_guard release build",
        f"- method: {N} calls (cached path) or {N_FIRST} distinct tokens (first sight) in one statement, minus a"
        f" baseline statement over the same rows; fresh backend per run; median (min-max) of {RUNS} runs.", "",
        "| what | without (µs per call) | with (µs per call) | added µs | target | met |",
        "|---|---:|---:|---:|---:|:---:|",
        row("authenticate, cached: revocation lists (10,000 jtis, 1,000 subjects, 1,000 suspended tenants)",
            plain, listed, TARGET_ADDED_US),
        row("authenticate, cached, TLS with a client certificate: certificate-bound token", unbound_tls, bound_tls,
            TARGET_ADDED_US),
        row("authenticate, cached: an issuer that requires each jti once (replay protection)", plain, once,
            TARGET_ADDED_US),
        row("authenticate, EdDSA first sight: revocation lists", first_plain, first_listed, None),
        "",
        "A token's first sight in a backend after another backend verified it (the shared verification cache),"
        " against the same distinct tokens seen again in that backend (its own cache). Target: within 2x.", "",
        "| what | µs per token | ratio to own cache | target | met |",
        "|---|---:|---:|---:|:---:|",
        f"| authenticate, {N_FIRST} distinct EdDSA tokens, this backend's own cache | {own_cache[0]:.2f}"
        f" ({own_cache[1]:.2f}-{own_cache[2]:.2f}) | 1.00 | | |",
        f"| authenticate, the same tokens, first sight in this backend, verified by another | {shared_cache[0]:.2f}"
        f" ({shared_cache[1]:.2f}-{shared_cache[2]:.2f}) | {shared_cache[0] / own_cache[0]:.2f} | < 2 |"
        f" {'yes' if shared_cache[0] <= 2 * own_cache[0] else 'no'} |",
        f"| for scale: authenticate, EdDSA first sight on the server (signature checked) | {first_plain[0]:.2f} |"
        f" {first_plain[0] / own_cache[0]:.1f} | | |",
    ]
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
