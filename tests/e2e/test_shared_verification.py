"""One verification per token per server: a token verified in one backend is accepted by the others without
checking its signature again (tenant_guard.verification_cache_size, tenant.verification_cache_stats()), and, when
their view of the issuers was loaded at the same issuers epoch in the same scope (database, extension, settings),
without decoding it either (a shared verdict). Everything a verdict depends on still applies at once in every
backend, whatever the shared table remembers: a revocation, a suspension, a removed or replaced key, a change of
audience, scope or binding requirement (each moves the epoch on at commit, or at COMMIT PREPARED), another database,
a dropped and re-created extension, another tenant claim setting; expiry, binding and replay at each use."""

import json
import time
import uuid

import psycopg
import pytest
from conftest import APP, AUD, TENANT_A, TENANT_B, Keys, b64url, dsn, sqlstate

ISS2 = "https://shared-verification.e2e.test"


def stats(admin):
    return admin.execute("SELECT capacity, entries, signatures_checked, signatures_shared "
                         "FROM tenant.verification_cache_stats()").fetchone()


def counters(admin):
    """(signatures checked, signatures shared, verdicts shared, issuers epoch)."""
    return admin.execute("SELECT signatures_checked, signatures_shared, verdicts_shared, issuers_epoch "
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
    checked, shared, verdicts, epoch = counters(admin)
    assert authenticate(token) == TENANT_A   # checked here, its verdict recorded
    for _ in range(2):
        with psycopg.connect(dsn(user=APP), autocommit=True) as c:
            row = c.execute("SELECT tenant.authenticate(%s), tenant.subject(), tenant.claim('plan'), "
                            "tenant.claims() -> 'roles', tenant.claims() ->> 'jti'", (token,)).fetchone()
            assert row == (TENANT_A, "user-verdict", "gold", ["a", "b"], "verdict-1")
    assert counters(admin) == (checked + 1, shared + 2, verdicts + 2, epoch)


def test_a_certificate_binding_survives_the_verdict(admin, issuer):
    # a bound token's verdict carries its thumbprint: on a plain connection it is refused in every backend
    token = mint(issuer, jti="verdict-bound", cnf={"x5t#S256": b64url(bytes(range(32)))})
    first = authenticate(token)
    assert first[0] == "28000" and "this connection is not TLS" in first[1], first
    _, _, verdicts, _ = counters(admin)
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
        epoch = counters(admin)[3]
        admin.execute(change_sql(change, issuer))
        assert counters(admin)[3] > epoch
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
    epoch = counters(admin)[3]
    other.execute("DROP EXTENSION tenant_guard CASCADE")
    other.execute("CREATE EXTENSION tenant_guard")
    other.execute(f"GRANT USAGE ON SCHEMA tenant TO {APP}")
    assert counters(admin)[3] == epoch   # nothing moved the epoch: the new extension is another scope
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
