"""Bring your own key: a tenant's data keys wrapped by its own master key (tenant.set_key_provider, the
tenant_guard.tenant_kek_command provider standing for the customer's KMS). Revoking a customer's key makes that
tenant's data unreadable with a 58000 error naming it, while every other tenant keeps working; restoring the key makes
the data readable again. On a cluster of its own (settings, a fake KMS in files)."""

import os
import shutil
import subprocess
import time
import uuid

import psycopg
import pytest
from conftest import APP, AUD, DB, ISS, dsn, free_port, sqlstate

OWN_PORT = free_port()   # not PORT + n: the suites of several majors may run at once
OWN_DIR = f"/tmp/tenant_guard-e2e-byok-{OWN_PORT}"
KMS = f"{OWN_DIR}-kms"
CLUSTER = os.path.join(os.path.dirname(__file__), "..", "support", "cluster.sh")
# the fake KMS: one file per customer key, named by its reference; a missing file is a revoked key
COMMAND = f'echo "$1" >> "{KMS}/calls.log"; test -n "$1" && cat "{KMS}/$2.key"'


def unavailable(tenant, why):
    return ("58000", f"the key of tenant {tenant} is unavailable: its key provider failed ({why})")


@pytest.fixture(scope="module")
def own(keys):
    subprocess.run([CLUSTER, "stop", OWN_DIR], check=True)
    shutil.rmtree(KMS, ignore_errors=True)
    os.mkdir(KMS, 0o755)
    os.chmod(KMS, 0o755)
    with open(f"{KMS}/calls.log", "w"):
        pass
    os.chmod(f"{KMS}/calls.log", 0o666)
    for name in ("acme", "globex", "other"):
        with open(f"{KMS}/{name}.key", "w") as f:
            f.write(os.urandom(32).hex())
        os.chmod(f"{KMS}/{name}.key", 0o644)
    subprocess.run([CLUSTER, "start", OWN_DIR, str(OWN_PORT)], check=True, stdout=subprocess.DEVNULL)
    try:
        with psycopg.connect(dsn(port=OWN_PORT, dbname="postgres"), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {DB}")
            c.execute(f"DROP ROLE IF EXISTS {APP}")
            c.execute(f"CREATE ROLE {APP} LOGIN NOSUPERUSER NOBYPASSRLS")
            c.execute("ALTER SYSTEM SET tenant_guard.tenant_kek_command = '%s'" % COMMAND.replace("'", "''"))
            c.execute("ALTER SYSTEM SET tenant_guard.tenant_key_cache_seconds = 0")
            c.execute("SELECT pg_reload_conf()")
        with psycopg.connect(dsn(port=OWN_PORT), autocommit=True) as c:
            c.execute("CREATE EXTENSION tenant_guard")
            c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)",
                      (ISS, psycopg.types.json.Jsonb(keys.jwks()), AUD))
        time.sleep(0.3)
        yield OWN_PORT
    finally:
        subprocess.run([CLUSTER, "stop", OWN_DIR], check=True)
        shutil.rmtree(KMS, ignore_errors=True)


def su(port):
    return psycopg.connect(dsn(port=port), autocommit=True)


def app(keys, tenant, port):
    c = psycopg.connect(dsn(user=APP, port=port), autocommit=True)
    c.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(tenant, lifetime=600),))
    return c


def encrypt(c, text):
    return bytes(c.execute("SELECT tenant.encrypt(%s, 'ctx')", (text,)).fetchone()[0])


def decrypt(c, ct):
    return c.execute("SELECT tenant.decrypt(%s, 'ctx')", (ct,)).fetchone()[0]


def revoke(name):
    os.rename(f"{KMS}/{name}.key", f"{KMS}/{name}.revoked")


def restore(name):
    os.rename(f"{KMS}/{name}.revoked", f"{KMS}/{name}.key")


def kek_ids(s, tenant):
    return [r[0] for r in s.execute("SELECT kek_id FROM tenant.keys WHERE tenant = %s ORDER BY version",
                                    (tenant,)).fetchall()]


def test_a_revoked_customer_key_stops_that_tenant_only_and_restoring_it_brings_the_data_back(keys, own):
    acme, globex, platform = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with app(keys, acme, own) as ca, app(keys, globex, own) as cg, app(keys, platform, own) as cp, su(own) as s:
        cts = {c: encrypt(c, f"data of {t}") for c, t in ((ca, acme), (cg, globex), (cp, platform))}
        platform_id = kek_ids(s, platform)[0]
        assert kek_ids(s, acme) == [platform_id]
        # two customers bring their own keys: their data keys are rewrapped in place
        assert s.execute("SELECT tenant.set_key_provider(%s, 'acme')", (acme,)).fetchone() == (1,)
        assert s.execute("SELECT tenant.set_key_provider(%s, 'globex')", (globex,)).fetchone() == (1,)
        ids = {t: kek_ids(s, t)[0] for t in (acme, globex, platform)}
        assert len(set(ids.values())) == 3 and ids[platform] == platform_id
        assert s.execute("SELECT key_provider FROM tenant.keys WHERE tenant = %s", (acme,)).fetchone() == ("acme",)
        for c, t in ((ca, acme), (cg, globex), (cp, platform)):
            assert decrypt(c, cts[c]) == f"data of {t}"
        # the customer revokes its key: its data is unreadable (and nothing new is encrypted), naming the tenant
        revoke("acme")
        try:
            assert sqlstate(ca, "SELECT tenant.decrypt(%s, 'ctx')", (cts[ca],)) == unavailable(
                acme, "the master key command exited with status 1")
            assert sqlstate(ca, "SELECT tenant.encrypt('more', 'ctx')")[0] == "58000"
            with app(keys, acme, own) as fresh:    # a new backend too
                assert sqlstate(fresh, "SELECT tenant.decrypt(%s, 'ctx')", (cts[ca],))[0] == "58000"
            # every other tenant keeps working, the other customer's and the platform's
            assert decrypt(cg, cts[cg]) == f"data of {globex}"
            assert decrypt(cp, cts[cp]) == f"data of {platform}"
            assert decrypt(cp, encrypt(cp, "new")) == "new"
            # the key stays where it is: rotation and rewrapping need it, and say so
            assert sqlstate(s, "SELECT tenant.rotate_key(%s)", (acme,))[0] == "58000"
            assert sqlstate(s, "SELECT tenant.set_key_provider(%s, NULL)", (acme,))[0] == "58000"
        finally:
            restore("acme")
        assert decrypt(ca, cts[ca]) == f"data of {acme}"
        # rotation under the customer's key; the platform's master-key rewrap leaves customers' keys alone
        assert s.execute("SELECT tenant.rotate_key(%s)", (acme,)).fetchone() == (2,)
        assert kek_ids(s, acme) == [ids[acme], ids[acme]]
        s.execute("SELECT tenant.rewrap_keys()")
        assert decrypt(ca, encrypt(ca, "after rotation")) == "after rotation"
        # back to the platform's key: then the customer's key no longer matters
        assert s.execute("SELECT tenant.set_key_provider(%s, NULL)", (acme,)).fetchone() == (2,)
        assert kek_ids(s, acme) == [platform_id, platform_id]
        revoke("acme")
        try:
            assert decrypt(ca, cts[ca]) == f"data of {acme}"
        finally:
            restore("acme")


def test_a_new_tenant_with_its_own_key_gets_its_first_key_wrapped_by_it(keys, own):
    t = uuid.uuid4()
    with su(own) as s:
        assert s.execute("SELECT tenant.set_key_provider(%s, 'other')", (t,)).fetchone() == (0,)
        with app(keys, t, own) as c:
            ct = encrypt(c, "first")
            other_id = kek_ids(s, t)[0]
            revoke("other")
            try:
                assert sqlstate(c, "SELECT tenant.decrypt(%s, 'ctx')", (ct,))[0] == "58000"
            finally:
                restore("other")
            assert decrypt(c, ct) == "first"
        s.execute("SELECT tenant.set_key_provider(%s, 'acme')", (t,))
        assert kek_ids(s, t) != [other_id]


def test_a_provider_that_returns_another_key_is_refused_naming_the_tenant(keys, own):
    t = uuid.uuid4()
    with su(own) as s, app(keys, t, own) as c:
        s.execute("SELECT tenant.set_key_provider(%s, 'globex')", (t,))
        ct = encrypt(c, "x")
        original = open(f"{KMS}/globex.key").read()
        with open(f"{KMS}/globex.key", "w") as f:
            f.write(os.urandom(32).hex())
        try:
            assert sqlstate(c, "SELECT tenant.decrypt(%s, 'ctx')", (ct,)) == (
                "58000", f"the key of tenant {t} is unavailable: its key provider returns another key than the one "
                         "that wrapped its data keys")
        finally:
            with open(f"{KMS}/globex.key", "w") as f:
                f.write(original)
        assert decrypt(c, ct) == "x"


def test_bad_calls(keys, own):
    t = uuid.uuid4()
    with su(own) as s:
        assert sqlstate(s, "SELECT tenant.set_key_provider(NULL, 'acme')") == ("22023", "tenant must not be NULL")
        for bad in ("", "x" * 513, "line\nbreak"):
            assert sqlstate(s, "SELECT tenant.set_key_provider(%s, %s)", (t, bad)) == (
                "22023", "key_ref must be 1 to 512 bytes long, without control characters")
        # a reference is an argument, never shell syntax
        assert sqlstate(s, "SELECT tenant.set_key_provider(%s, %s)",
                        (t, f"x; touch {KMS}/pwned #"))[0] == "58000"
        assert not os.path.exists(f"{KMS}/pwned")
        # an unknown key: refused before anything relies on it
        assert sqlstate(s, "SELECT tenant.set_key_provider(%s, 'nobody')", (t,)) == unavailable(
            t, "the master key command exited with status 1")
        assert s.execute("SELECT count(*) FROM tenant.key_provider WHERE tenant = %s", (t,)).fetchone() == (0,)
        s.execute("SELECT tenant.shred(%s)", (t,))
        assert sqlstate(s, "SELECT tenant.set_key_provider(%s, 'acme')", (t,)) == (
            "55000", f"keys destroyed: the data keys of tenant {t} were shredded")
    with app(keys, t, own) as c:
        assert sqlstate(c, f"SELECT tenant.set_key_provider('{t}', 'acme')")[0] == "42501"
        assert sqlstate(c, "SELECT * FROM tenant.key_provider")[0] == "42501"
        assert sqlstate(c, "SHOW tenant_guard.tenant_kek_command")[0] == "42501"


def calls(tenant):
    return open(f"{KMS}/calls.log").read().split().count(str(tenant))


def test_with_no_cache_the_provider_runs_once_per_statement_not_once_per_value(keys, own):
    t = uuid.uuid4()
    with su(own) as s, app(keys, t, own) as c:
        s.execute("SELECT tenant.set_key_provider(%s, 'globex')", (t,))
        c.execute("CREATE TEMP TABLE cts AS SELECT tenant.encrypt('v' || g, 'ctx') AS ct FROM generate_series(1, 50) g")
        before = calls(t)
        assert c.execute("SELECT count(tenant.decrypt(ct, 'ctx')) FROM cts").fetchone() == (50,)
        assert calls(t) - before == 1
        c.execute("SELECT count(tenant.decrypt(ct, 'ctx')) FROM cts")
        assert calls(t) - before == 2


def test_an_import_checks_the_key_provider_it_brings_and_whose_export_it_is(keys, own):
    t, other = uuid.uuid4(), uuid.uuid4()
    with su(own) as s:
        s.execute("SELECT tenant.set_key_provider(%s, 'acme')", (t,))
        with app(keys, t, own) as c:
            encrypt(c, "x")
        document = s.execute("SELECT tenant.export(%s)", (t,)).fetchone()[0]
        assert document["key_provider"] == "acme"
        s.execute("SELECT tenant.purge(%s)", (t,))
    s2 = f"{DB}_import"
    with psycopg.connect(dsn(port=own, dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {s2}")
        c.execute(f"CREATE DATABASE {s2}")
    try:
        with psycopg.connect(dsn(port=own, dbname=s2), autocommit=True) as d:
            d.execute("CREATE EXTENSION tenant_guard")
            Jsonb = psycopg.types.json.Jsonb
            assert sqlstate(d, "SELECT * FROM tenant.import(%s, %s)", (Jsonb(document), other)) == (
                "22023", "not a tenant export: it is not the export of the tenant given")
            for bad in ("acme\n--endpoint=http://evil", ""):
                assert sqlstate(d, "SELECT * FROM tenant.import(%s)", (Jsonb(dict(document, key_provider=bad)),)) == (
                    "22023", "key_ref must be 1 to 512 bytes long, without control characters")
            # a provider that does not return the key that wrapped them: refused, nothing stored
            assert sqlstate(d, "SELECT * FROM tenant.import(%s)", (Jsonb(dict(document, key_provider="globex")),))[0] \
                == "58000"
            assert sqlstate(d, "SELECT * FROM tenant.import(%s)", (Jsonb(dict(document, key_provider=None)),))[0] \
                == "58000"
            assert d.execute("SELECT count(*) FROM tenant.key_provider").fetchone() == (0,)
            assert d.execute("SELECT * FROM tenant.import(%s, %s)", (Jsonb(document), t)).fetchall() == []
            assert d.execute("SELECT key_provider FROM tenant.keys WHERE tenant = %s", (t,)).fetchone() == ("acme",)
    finally:
        with psycopg.connect(dsn(port=own, dbname="postgres"), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {s2}")
