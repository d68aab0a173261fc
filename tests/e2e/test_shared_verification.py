"""One signature check per token per server: a token verified in one backend is accepted by the others without
checking its signature again (tenant_guard.verification_cache_size, tenant.verification_cache_stats()), and
everything else is still checked at each use: a revocation, a suspension, a removed or replaced key and expiry
apply at once in every backend, whatever the shared table remembers."""

import time
import uuid

import psycopg
import pytest
from conftest import APP, AUD, TENANT_A, Keys, b64url, dsn, sqlstate

ISS2 = "https://shared-verification.e2e.test"


def stats(admin):
    return admin.execute("SELECT capacity, entries, signatures_checked, signatures_shared "
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
