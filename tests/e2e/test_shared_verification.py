"""One verification per token per server: a token verified in one backend is accepted by the others without
checking its signature again (tenant_guard.verification_cache_size, tenant.verification_cache_stats()), and, when
their view of the issuers has the same content (the same digest) under the same settings, without decoding it
either (a shared verdict). Everything a verdict depends on still applies at once in every backend, whatever the
shared table remembers: a revocation, a suspension, a removed or replaced key, a change of audience, scope or binding
requirement, however it is made (committed, prepared, rolled back, with the triggers disabled), another database,
a dropped and re-created extension, another tenant claim setting; expiry, binding and replay at each use."""

import json
import os
import subprocess
import time
import uuid

import psycopg
import pytest
from conftest import APP, AUD, HOST, PG, PORT, TENANT_A, TENANT_B, Keys, b64url, dsn, free_port, sqlstate

ISS2 = "https://shared-verification.e2e.test"


def stats(admin):
    return admin.execute("SELECT capacity, entries, signatures_checked, signatures_shared "
                         "FROM tenant.verification_cache_stats()").fetchone()


def counters(admin):
    """(signatures checked, signatures shared, verdicts shared)."""
    return admin.execute("SELECT signatures_checked, signatures_shared, verdicts_shared "
                         "FROM tenant.verification_cache_stats()").fetchone()


def authenticate(token):
    """A new backend (a new connection as the app role) authenticates `token`: its tenant, or the error."""
    with psycopg.connect(dsn(user=APP), autocommit=True) as c:
        err = sqlstate(c, "SELECT tenant.authenticate(%s)", (token,))
        if err:
            return err
        return c.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0]


@pytest.fixture
def issuer(admin):
    """An issuer of its own (these tests replace and remove its keys), with an HS256 and an EdDSA key."""
    keys = Keys("-shared")
    admin.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)",
                  (ISS2, psycopg.types.json.Jsonb(keys.jwks(("HS256", "EdDSA"))), AUD))
    yield keys
    admin.execute("SELECT tenant.untrust_issuer(%s)", (ISS2,))
    admin.execute("DELETE FROM tenant.revoked_token; DELETE FROM tenant.suspended_tenant")


def mint(keys, tenant=TENANT_A, alg="EdDSA", **claims):
    return keys.mint(tenant, alg=alg, iss=ISS2, **claims)


def test_a_second_backend_skips_the_signature_check(admin, issuer):
    token = mint(issuer)
    capacity, _, checked, shared = stats(admin)
    assert capacity == 16384   # the default
    assert authenticate(token) == TENANT_A
    after_first = stats(admin)
    assert (after_first[2], after_first[3]) == (checked + 1, shared)
    assert after_first[1] >= 1
    # three more backends: no signature check, three shared verdicts
    for _ in range(3):
        assert authenticate(token) == TENANT_A
    assert stats(admin)[2:] == (checked + 1, shared + 3)


def test_every_algorithm_is_shared(admin, issuer):
    for alg in ("HS256", "EdDSA"):
        token = mint(issuer, alg=alg, jti=f"alg-{alg}")
        _, _, checked, shared = stats(admin)
        assert authenticate(token) == TENANT_A
        assert authenticate(token) == TENANT_A
        assert stats(admin)[2:] == (checked + 1, shared + 1), alg


def test_a_forged_signature_is_not_covered_by_the_genuine_tokens_entry(admin, issuer):
    token = mint(issuer, jti="forged-1")
    assert authenticate(token) == TENANT_A
    head, _ = token.rsplit(".", 1)
    forged = head + "." + b64url(b"\x00" * 64)
    assert authenticate(forged) == ("28000", "token rejected: token signature does not verify")


def test_a_revocation_applies_in_every_backend_despite_the_entry(admin, issuer):
    token = mint(issuer, jti="shared-revoked")
    assert authenticate(token) == TENANT_A
    admin.execute("SELECT tenant.revoke_token('shared-revoked')")
    err = authenticate(token)
    assert err[0] == "28000" and "revoked" in err[1]


def test_a_suspension_applies_in_every_backend_despite_the_entry(admin, issuer):
    tenant = uuid.uuid4()
    token = mint(issuer, tenant=tenant)
    assert authenticate(token) == tenant
    admin.execute("SELECT tenant.suspend_tenant(%s)", (tenant,))
    assert authenticate(token) == ("28000", "token rejected: tenant is suspended (see tenant.revocations)")


def test_a_removed_key_applies_despite_the_entry(admin, issuer):
    token = mint(issuer, alg="EdDSA")
    assert authenticate(token) == TENANT_A
    admin.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)",
                  (ISS2, psycopg.types.json.Jsonb(issuer.jwks(("HS256",))), AUD))
    err = authenticate(token)
    assert err[0] == "28000" and "key" in err[1], err


def test_a_replaced_key_with_the_same_kid_is_checked_again(admin, issuer):
    token = mint(issuer, alg="EdDSA")
    assert authenticate(token) == TENANT_A
    # the same kid now names another Ed25519 key: the entry was for the old key's fingerprint
    other = Keys("-shared")
    admin.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)",
                  (ISS2, psycopg.types.json.Jsonb(other.jwks(("EdDSA",))), AUD))
    assert authenticate(token) == ("28000", "token rejected: token signature does not verify")


def test_expiry_applies_despite_the_entry(admin, issuer):
    token = mint(issuer, lifetime=2, jti="short-lived")
    assert authenticate(token) == TENANT_A
    with admin.execute("SHOW tenant_guard.clock_skew") as cur:
        skew = cur.fetchone()[0]
    admin.execute("ALTER SYSTEM SET tenant_guard.clock_skew = 0")
    admin.execute("SELECT pg_reload_conf()")
    try:
        time.sleep(3.2)
        err = authenticate(token)
        assert err[0] == "28000" and "expired" in err[1], err
    finally:
        admin.execute("ALTER SYSTEM RESET tenant_guard.clock_skew")
        admin.execute("SELECT pg_reload_conf()")
    assert skew is not None


def test_the_stats_are_for_administrators_only(app):
    assert sqlstate(app, "SELECT * FROM tenant.verification_cache_stats()")[0] == "42501"


def test_a_backend_takes_the_verdict_and_decodes_the_claims_only_when_asked(admin, issuer):
    token = mint(issuer, sub="user-verdict", jti="verdict-1", plan="gold", roles=["a", "b"])
    checked, shared, verdicts = counters(admin)
    assert authenticate(token) == TENANT_A   # checked here, its verdict recorded
    for _ in range(2):
        with psycopg.connect(dsn(user=APP), autocommit=True) as c:
            row = c.execute("SELECT tenant.authenticate(%s), tenant.subject(), tenant.claim('plan'), "
                            "tenant.claims() -> 'roles', tenant.claims() ->> 'jti'", (token,)).fetchone()
            assert row == (TENANT_A, "user-verdict", "gold", ["a", "b"], "verdict-1")
    assert counters(admin) == (checked + 1, shared + 2, verdicts + 2)


def test_a_certificate_binding_survives_the_verdict(admin, issuer):
    # a bound token's verdict carries its thumbprint: on a plain connection it is refused in every backend
    token = mint(issuer, jti="verdict-bound", cnf={"x5t#S256": b64url(bytes(range(32)))})
    first = authenticate(token)
    assert first[0] == "28000" and "this connection is not TLS" in first[1], first
    _, _, verdicts = counters(admin)
    assert authenticate(token) == first
    assert counters(admin)[2] == verdicts + 1   # the verdict was taken, and the binding checked at use


CHANGES = {
    "revoke_token": ("SELECT tenant.revoke_token('verdict-change')", "revoked"),
    "revoke_subject": (f"SELECT tenant.revoke_subject('{ISS2}', 'user-change', now() + interval '1 minute')",
                       "revoked"),
    "suspend_tenant": (f"SELECT tenant.suspend_tenant('{TENANT_A}')", "suspended"),
    "remove_key": ("SELECT tenant.trust_issuer('{iss}', '{jwks}'::jsonb, '{aud}')", "key"),
    "audience": ("SELECT tenant.trust_issuer('{iss}', '{all}'::jsonb, 'another-api')", "audience"),
    "scope": (f"INSERT INTO tenant.issuer_tenant (issuer, tenant) VALUES ('{ISS2}', '{TENANT_B}')", "speak"),
    "binding": ("SELECT tenant.trust_issuer('{iss}', '{all}'::jsonb, '{aud}', require_cert_binding => true)",
                "certificate"),
    "untrust": (f"SELECT tenant.untrust_issuer('{ISS2}')", "issuer"),
}


def change_sql(name, issuer):
    sql, _ = CHANGES[name]
    return sql.format(iss=ISS2, aud=AUD, jwks=json.dumps(issuer.jwks(("HS256",))),
                      all=json.dumps(issuer.jwks(("HS256", "EdDSA"))))


def verdict_token(issuer):
    return mint(issuer, sub="user-change", jti="verdict-change")


@pytest.fixture
def cleanup(admin):
    yield
    admin.execute("DELETE FROM tenant.revoked_subject")
    admin.execute("DELETE FROM tenant.issuer_tenant WHERE issuer = %s", (ISS2,))


@pytest.mark.parametrize("change", list(CHANGES))
def test_every_change_a_verdict_depends_on_applies_at_once(admin, issuer, cleanup, change):
    token = verdict_token(issuer)
    assert authenticate(token) == TENANT_A
    with psycopg.connect(dsn(user=APP), autocommit=True) as kept:   # a backend that took the verdict, kept open
        assert kept.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == TENANT_A
        admin.execute(change_sql(change, issuer))
        for err in (authenticate(token), sqlstate(kept, "SELECT tenant.authenticate(%s)", (token,))):
            assert err[0] == "28000" and CHANGES[change][1] in err[1], (change, err)


@pytest.mark.parametrize("change", ["revoke_token", "suspend_tenant", "remove_key"])
def test_a_verdict_reached_while_a_change_commits_is_not_taken_after(admin, issuer, cleanup, change):
    """The change's own transaction has queued its invalidation but not committed when another backend reaches
    a verdict on the old view: after the commit, no backend takes that verdict (the committing one included)."""
    token = verdict_token(issuer)
    with psycopg.connect(dsn(), autocommit=True) as changer:
        changer.execute("SELECT tenant.authenticate(%s)", (mint(issuer, jti="warm-changer"),))
        changer.execute("BEGIN")
        changer.execute(change_sql(change, issuer))
        changer.execute("SELECT 1")   # a later command of the same transaction
        assert authenticate(token) == TENANT_A   # the old view: the change is not committed
        changer.execute("COMMIT")
        err = sqlstate(changer, "SELECT tenant.authenticate(%s)", (token,))
        assert err[0] == "28000" and CHANGES[change][1] in err[1], err
    err = authenticate(token)
    assert err[0] == "28000" and CHANGES[change][1] in err[1], err


def test_a_change_committed_by_commit_prepared_applies_at_once(admin, issuer, cleanup):
    token = verdict_token(issuer)
    gid = "tg-verdict-" + uuid.uuid4().hex
    with psycopg.connect(dsn(), autocommit=True) as changer:
        changer.execute("BEGIN")
        changer.execute(change_sql("revoke_token", issuer))
        changer.execute(f"PREPARE TRANSACTION '{gid}'")
    with psycopg.connect(dsn(user=APP), autocommit=True) as kept:
        # reached while the revocation is prepared, not committed
        assert kept.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == TENANT_A
        assert authenticate(token) == TENANT_A
        admin.execute(f"COMMIT PREPARED '{gid}'")
        for err in (authenticate(token), sqlstate(kept, "SELECT tenant.authenticate(%s)", (token,))):
            assert err[0] == "28000" and "revoked" in err[1], err


@pytest.fixture
def other_database(admin, issuer):
    """A second database of the same server with tenant_guard, trusting the same issuer only if asked."""
    name = "tg_verdict_other"
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(dsn(dbname=name), autocommit=True) as c:
        c.execute("CREATE EXTENSION tenant_guard")
        c.execute(f"GRANT USAGE ON SCHEMA tenant TO {APP}")
        yield name, c
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def authenticate_in(dbname, token):
    with psycopg.connect(dsn(user=APP, dbname=dbname), autocommit=True) as c:
        return sqlstate(c, "SELECT tenant.authenticate(%s)", (token,)) or \
            c.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0]


def test_a_verdict_is_not_taken_in_another_database(admin, issuer, other_database):
    name, other = other_database
    token = mint(issuer, jti="verdict-db")
    assert authenticate(token) == TENANT_A
    assert authenticate(token) == TENANT_A   # a verdict
    # the other database trusts no issuer: refused, whatever this one concluded
    err = authenticate_in(name, token)
    assert err == ("28000", "token rejected: token issuer is not trusted (see tenant.issuers)"), err
    # trusting it there with another audience: refused for its audience, not taken from here
    other.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, 'another-api')",
                  (ISS2, psycopg.types.json.Jsonb(issuer.jwks(("HS256", "EdDSA")))))
    err = authenticate_in(name, token)
    assert err[0] == "28000" and "audience" in err[1], err


def test_a_verdict_is_not_taken_by_a_re_created_extension(admin, issuer, other_database):
    name, other = other_database
    other.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)",
                  (ISS2, psycopg.types.json.Jsonb(issuer.jwks(("HS256", "EdDSA"))), AUD))
    token = mint(issuer, jti="verdict-recreated")
    assert authenticate_in(name, token) == TENANT_A
    assert authenticate_in(name, token) == TENANT_A
    other.execute("DROP EXTENSION tenant_guard CASCADE")
    other.execute("CREATE EXTENSION tenant_guard")
    other.execute(f"GRANT USAGE ON SCHEMA tenant TO {APP}")
    err = authenticate_in(name, token)
    assert err == ("28000", "token rejected: token issuer is not trusted (see tenant.issuers)"), err


def test_a_verdict_is_not_taken_under_another_tenant_claim(admin, issuer):
    token = mint(issuer, jti="verdict-claim", org=str(TENANT_B))
    assert authenticate(token) == TENANT_A
    admin.execute(f"ALTER ROLE {APP} SET tenant_guard.tenant_claim = 'org'")
    try:
        assert authenticate(token) == TENANT_B
        assert authenticate(token) == TENANT_B
    finally:
        admin.execute(f"ALTER ROLE {APP} RESET tenant_guard.tenant_claim")
    assert authenticate(token) == TENANT_A


# A view of the issuers that holds a change no other backend's view holds: what is verified against it is never
# taken by a backend whose view differs, however the change ends.

EVIL = "https://evil.verdict.test"
OPS = "tg_verdict_ops"


@pytest.fixture
def ops(admin):
    """A non-superuser administrator (tenant_guard_admin)."""
    admin.execute(f"DROP ROLE IF EXISTS {OPS}")
    admin.execute(f"CREATE ROLE {OPS} LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE tenant_guard_admin")
    with psycopg.connect(dsn(user=OPS), autocommit=True) as c:
        yield c
    admin.execute("SELECT tenant.untrust_issuer(%s)", (EVIL,))
    admin.execute(f"DROP ROLE IF EXISTS {OPS}")


def evil_trust_and_use(ops, evil):
    ops.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)",
                (EVIL, psycopg.types.json.Jsonb(evil.jwks(("EdDSA",))), AUD))
    token = evil.mint(TENANT_B, iss=EVIL, jti="evil-" + uuid.uuid4().hex)
    # accepted in the transaction that trusts the issuer: its view holds the issuer
    assert ops.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == TENANT_B
    return token


@pytest.mark.parametrize("ending", ["rollback", "rollback to savepoint", "rollback prepared"])
def test_a_verdict_reached_on_an_uncommitted_change_is_never_taken(admin, ops, ending):
    evil = Keys("-evil-verdict")
    gid = "tg-evil-" + uuid.uuid4().hex
    ops.execute("BEGIN")
    if ending == "rollback to savepoint":
        ops.execute("SAVEPOINT before")
    token = evil_trust_and_use(ops, evil)
    if ending == "rollback":
        ops.execute("ROLLBACK")
    elif ending == "rollback to savepoint":
        ops.execute("ROLLBACK TO SAVEPOINT before")
        ops.execute("COMMIT")
    else:
        ops.execute(f"PREPARE TRANSACTION '{gid}'")
        admin.execute(f"ROLLBACK PREPARED '{gid}'")
    for _ in range(2):
        assert authenticate(token) == ("28000", "token rejected: token issuer is not trusted (see tenant.issuers)")


def test_a_suspension_lifted_in_a_rolled_back_transaction_still_applies(admin, issuer, ops):
    tenant = uuid.uuid4()
    token = mint(issuer, tenant=tenant, jti="suspended-dry-run")
    admin.execute("SELECT tenant.suspend_tenant(%s)", (tenant,))
    ops.execute("BEGIN")
    ops.execute("SELECT tenant.resume_tenant(%s)", (tenant,))
    assert ops.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == tenant
    ops.execute("ROLLBACK")
    assert authenticate(token) == ("28000", "token rejected: tenant is suspended (see tenant.revocations)")


def test_a_revocation_withdrawn_in_a_savepoint_still_applies(admin, issuer):
    token = mint(issuer, jti="savepoint-revoked")
    admin.execute("SELECT tenant.revoke_token('savepoint-revoked')")
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("BEGIN")
        c.execute("SAVEPOINT s")
        c.execute("DELETE FROM tenant.revoked_token WHERE jti = 'savepoint-revoked'")
        assert c.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == TENANT_A
        c.execute("ROLLBACK TO SAVEPOINT s")
        # another backend meanwhile, and after the commit
        err = authenticate(token)
        assert err[0] == "28000" and "revoked" in err[1], err
        c.execute("COMMIT")
    err = authenticate(token)
    assert err[0] == "28000" and "revoked" in err[1], err


def test_a_revocation_made_with_the_triggers_disabled_applies_in_new_backends(admin, issuer):
    """A superuser's ALTER TABLE ... DISABLE TRIGGER ALL (what pg_restore --disable-triggers does) sends no
    invalidation: backends that cached the old view keep it until their next invalidation, but a new backend loads
    the new one, and takes no verdict reached on the old."""
    token = mint(issuer, jti="quiet-revoked")
    assert authenticate(token) == TENANT_A
    assert authenticate(token) == TENANT_A
    admin.execute("ALTER TABLE tenant.revoked_token DISABLE TRIGGER ALL")
    try:
        admin.execute("INSERT INTO tenant.revoked_token (jti) VALUES ('quiet-revoked')")
    finally:
        admin.execute("ALTER TABLE tenant.revoked_token ENABLE TRIGGER ALL")
    err = authenticate(token)
    assert err[0] == "28000" and "revoked" in err[1], err


@pytest.fixture
def standby():
    """A hot standby of the test cluster (pg_basebackup), its port."""
    port = free_port()
    data = f"/tmp/tenant_guard-e2e-verdict-standby-{port}"
    bin_dir = f"/usr/lib/postgresql/{PG}/bin"
    run_as = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    subprocess.run(["rm", "-rf", data], check=True)
    subprocess.run([*run_as, f"{bin_dir}/pg_basebackup", "-h", HOST, "-p", str(PORT), "-U", "postgres", "-D", data,
                    "-R", "-X", "stream", "-c", "fast"], check=True)
    subprocess.run([*run_as, "sh", "-c", f"echo \"port = {port}\nunix_socket_directories = '{data}'\" "
                                         f">> {data}/postgresql.auto.conf"], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUST_")}
    started = subprocess.run([*run_as, f"{bin_dir}/pg_ctl", "-D", data, "-l", f"{data}.log", "-w", "start"],
                             env=env, stdout=subprocess.DEVNULL)
    if started.returncode != 0:
        raise AssertionError("the standby did not start:\n" + open(f"{data}.log").read()[-3000:])
    try:
        yield port
    finally:
        subprocess.run([*run_as, f"{bin_dir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], check=False,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", data, f"{data}.log"], check=False)


def replayed(admin, standby_port):
    # the insert position: the test cluster commits asynchronously (synchronous_commit = off)
    lsn = admin.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
    with psycopg.connect(dsn(port=standby_port), autocommit=True) as s:
        for _ in range(200):
            if s.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the standby did not replay the change")


def authenticate_on(port, token):
    with psycopg.connect(dsn(user=APP, port=port), autocommit=True) as c:
        return sqlstate(c, "SELECT tenant.authenticate(%s)", (token,)) or \
            c.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0]


@pytest.mark.parametrize("change", ["revoke_token", "suspend_tenant", "untrust"])
def test_a_change_replayed_on_a_hot_standby_applies_at_once(admin, issuer, cleanup, standby, change):
    token = verdict_token(issuer)
    assert authenticate_on(standby, token) == TENANT_A
    with psycopg.connect(dsn(user=APP, port=standby), autocommit=True) as kept:
        assert kept.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == TENANT_A
        assert authenticate_on(standby, token) == TENANT_A   # a verdict, on the standby
        admin.execute(change_sql(change, issuer))
        replayed(admin, standby)
        fresh = authenticate_on(standby, token)
        old = sqlstate(kept, "SELECT tenant.authenticate(%s)", (token,))
        for err in (fresh, old):
            assert isinstance(err, tuple) and err[0] == "28000" and CHANGES[change][1] in err[1], (change, fresh, old)
