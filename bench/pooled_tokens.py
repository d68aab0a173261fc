"""The pooled mix of `make bench`: 8 clients over 4 server connections (a real pgbouncer, transaction pooling), each
client reusing its own token (8 tenants, EdDSA) for every transaction, so that each token lands on several backends.

Every transaction: BEGIN; SELECT tenant.authenticate($1); SELECT count(*) FROM a protected table (the client's own
rows); COMMIT. Three mixes, in the same run, for DURATION seconds each:

- baseline: the same transaction shape without tenant_guard (SELECT length($1); count(*) of an unprotected table);
- reused tokens: each client's one token, in every transaction;
- a fresh token per transaction (what every transaction would pay if nothing were cached).

Reported: transactions per second and the ratio to the baseline, and the signatures checked during the reused-token
mix (tenant.verification_cache_stats(): with the shared cache, one per token per server, not one per token per
backend). Results go to bench/results/pooled.md.
"""

import datetime
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid

import psycopg

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pooled"))
from conftest import AUD, ISS, Keys  # noqa: E402
import pgbouncer_load as pool  # noqa: E402

CLIENTS = 8
POOL_SIZE = 4
DURATION = float(os.environ.get("BENCH_POOLED_SECONDS", "5"))
BOUNCER_PORT = int(os.environ.get("BENCH_BOUNCER_PORT", "54351"))
OUT = os.path.join(HERE, "results", "pooled.md")


def run_mix(transaction, tokens_for):
    """Runs CLIENTS threads through pgbouncer for DURATION seconds; returns transactions per second."""
    done = [0] * CLIENTS
    errors = []
    stop = time.monotonic() + DURATION

    def client(i):
        try:
            with psycopg.connect(pool.dsn(port=BOUNCER_PORT, user=pool.APP), autocommit=True,
                                 prepare_threshold=None) as c:
                while time.monotonic() < stop:
                    token = tokens_for(i)
                    with c.transaction():
                        transaction(c, token)
                    done[i] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    if errors:
        raise SystemExit(f"pooled mix failed: {errors[:3]}")
    return sum(done) / elapsed


def main():
    keys = Keys()
    pool.setup_database(os.urandom(32))
    tenants = [uuid.uuid4() for _ in range(CLIENTS)]
    with psycopg.connect(pool.dsn(), autocommit=True) as admin:
        admin.execute("SELECT tenant.trust_issuer(%s, %s, %s)", (ISS, psycopg.types.json.Jsonb(keys.jwks()), AUD))
        admin.execute("CREATE TABLE pool.plain (client int)")
        admin.execute(f"GRANT SELECT ON pool.plain TO {pool.APP}")
        with admin.cursor() as cur:
            cur.executemany("INSERT INTO pool.items (tenant_id, client) VALUES (%s, %s)",
                            [(t, i) for i, t in enumerate(tenants) for _ in range(100)])
            cur.executemany("INSERT INTO pool.plain VALUES (%s)", [(i,) for i in range(CLIENTS) for _ in range(100)])
        pg_version = admin.execute("SHOW server_version").fetchone()[0]
    reused = [keys.mint(t, alg="EdDSA", lifetime=3000) for t in tenants]

    def protected(c, token):
        c.execute("SELECT tenant.authenticate(%s)", (token,))
        assert c.execute("SELECT count(*) FROM pool.items").fetchone()[0] == 100

    def plain(c, token):
        c.execute("SELECT length(%s)", (token,))
        c.execute("SELECT count(*) FROM pool.plain").fetchone()

    def stats():
        with psycopg.connect(pool.dsn(), autocommit=True) as admin:
            return admin.execute("SELECT signatures_checked, signatures_shared "
                                 "FROM tenant.verification_cache_stats()").fetchone()

    bouncer = pool.Bouncer(BOUNCER_PORT, POOL_SIZE)
    try:
        results = {"baseline": [], "reused": [], "fresh": []}
        checked = shared = 0
        for _ in range(3):
            results["baseline"].append(run_mix(plain, lambda i: reused[i]))
            before = stats()
            results["reused"].append(run_mix(protected, lambda i: reused[i]))
            after = stats()
            checked += after[0] - before[0]
            shared += after[1] - before[1]
            results["fresh"].append(run_mix(protected, lambda i: keys.mint(tenants[i], alg="EdDSA", jti=str(uuid.uuid4()))))
        backends = bouncer.server_connections()
    finally:
        bouncer.stop()

    med = {k: statistics.median(v) for k, v in results.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# tenant_guard behind a pooler: benchmark results", "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {commit or 'unknown'}; PostgreSQL {pg_version}; pgbouncer, transaction pooling",
        f"- method: {CLIENTS} client threads over {POOL_SIZE} server connections, {DURATION:.0f} s per mix, three rounds"
        " of the three mixes, median transactions per second; each transaction authenticates and counts the"
        " client's rows (100 per tenant).", "",
        "| mix | transactions/s | ratio to baseline |", "|---|---:|---:|",
        f"| baseline: the same transactions without tenant_guard | {med['baseline']:.0f} | 1.00 |",
        f"| {CLIENTS} tokens, each reused by its client for every transaction | {med['reused']:.0f} |"
        f" {med['reused'] / med['baseline']:.2f} |",
        f"| a fresh EdDSA token per transaction (a signature check each) | {med['fresh']:.0f} |"
        f" {med['fresh'] / med['baseline']:.2f} |", "",
        f"During the reused-token mixes ({CLIENTS} tokens over {backends} server connections), the server checked"
        f" {checked} signatures and skipped {shared} because another backend had checked them"
        f" (tenant.verification_cache_stats()): one check per token per server, where each backend would check each"
        " token once without the shared cache.",
    ]
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
