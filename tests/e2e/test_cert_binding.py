"""Certificate-bound tokens (RFC 8705): a token whose cnf names a client certificate's SHA-256 thumbprint is accepted
only on a TLS connection whose verified client certificate has that thumbprint. A real TLS server on a cluster of
its own, with a CA, a server certificate and two client certificates made by openssl now."""

import os
import subprocess
import sys
import uuid

import psycopg
import psycopg.sql
import pytest
from conftest import APP, AUD, DB, HOST, ISS, PG, dsn, free_port, sqlstate

SUPPORT = os.path.join(os.path.dirname(__file__), "..", "support")
sys.path.insert(0, SUPPORT)
import tls_certs  # noqa: E402
CLUSTER = os.path.join(SUPPORT, "cluster.sh")
OWN_PORT = free_port()   # not PORT + n: the suites of several majors may run at once
OWN_DIR = f"/tmp/tenant_guard-e2e-tls-{os.getpid()}"
CERTS = OWN_DIR + "-certs"
TENANT = uuid.UUID("aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa")

NOT_TLS = "token is bound to a client certificate (cnf x5t#S256), but this connection is not TLS (a plain TCP or " \
          "Unix-socket connection)"
NO_CERT = "token is bound to a client certificate (cnf x5t#S256), but this TLS connection presented none"
OTHER_CERT = "token is bound to another client certificate than the one this connection presented"
REQUIRED = "token is not bound to a client certificate (cnf x5t#S256), and its issuer requires certificate binding"


def thumbprint(name):
    return tls_certs.thumbprint(CERTS, name)


def conn(kind, token_option=None, user=APP):
    """A connection of `kind`: 'x' or 'y' (TLS with that client certificate), 'tls' (TLS, no certificate), 'tcp'
    (plain TCP) or 'unix' (the socket)."""
    kw = {"host": HOST, "port": OWN_PORT, "user": user, "dbname": DB, "autocommit": True}
    if kind in ("x", "y", "tls"):
        kw.update(tls_certs.client_options(CERTS, None if kind == "tls" else kind))
    elif kind == "tcp":
        kw.update(sslmode="disable")
    else:
        kw.update(host=OWN_DIR, sslmode="disable")
    if token_option:
        kw["options"] = f"-c tenant_guard.token={token_option}"
    return psycopg.connect(**kw)


@pytest.fixture(scope="module")
def tls(keys):
    subprocess.run([CLUSTER, "stop", OWN_DIR], check=True)
    subprocess.run(["rm", "-rf", CERTS], check=True)
    subprocess.run([CLUSTER, "start", OWN_DIR, str(OWN_PORT)], check=True, stdout=subprocess.DEVNULL)
    try:
        tls_certs.make(CERTS, os.stat(OWN_DIR).st_uid)
        with psycopg.connect(dsn(port=OWN_PORT, dbname="postgres"), autocommit=True) as c:
            for statement in tls_certs.server_settings(CERTS):
                c.execute(statement)
            c.execute(f"CREATE DATABASE {DB}")
            c.execute(f"DROP ROLE IF EXISTS {APP}")
            c.execute(f"CREATE ROLE {APP} LOGIN NOSUPERUSER NOBYPASSRLS")
        subprocess.run([CLUSTER, "restart", OWN_DIR], check=True)
        with psycopg.connect(dsn(port=OWN_PORT), autocommit=True) as c:
            c.execute("CREATE EXTENSION tenant_guard")
            c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (ISS, psycopg.types.json.Jsonb(keys.jwks()), AUD))
            c.execute("CREATE TABLE public.docs (tenant_id uuid NOT NULL, body text)")
            c.execute("SECURITY LABEL FOR tenant_guard ON TABLE public.docs IS 'tenant_scoped'")
            c.execute("GRANT SELECT, INSERT ON public.docs TO tg_app")
            c.execute("INSERT INTO public.docs VALUES (%s, 'a1'), (gen_random_uuid(), 'other')", (TENANT,))
        yield keys
    finally:
        subprocess.run([CLUSTER, "stop", OWN_DIR], check=True)
        subprocess.run(["rm", "-rf", CERTS], check=True)


def bound_to(keys, name, **claims):
    return keys.mint(TENANT, cnf={"x5t#S256": thumbprint(name)}, **claims)


def test_client_certificate_describes_the_connection(tls):
    with conn("x") as c:
        (thumb, subject, issuer), = c.execute("SELECT * FROM tenant.client_certificate()").fetchall()
        assert thumb == thumbprint("x")
        assert "CN=client-x" in subject and "tenant_guard test CA" in issuer
    with conn("y") as c:
        assert c.execute("SELECT thumbprint FROM tenant.client_certificate()").fetchone()[0] == thumbprint("y")
    for kind in ("tls", "tcp", "unix"):
        with conn(kind) as c:
            assert c.execute("SELECT * FROM tenant.client_certificate()").fetchall() == [(None, None, None)], kind


def test_a_bound_token_is_accepted_only_with_its_certificate(tls):
    token = bound_to(tls, "x")
    with conn("x") as c, c.transaction():
        assert c.execute("SELECT tenant.authenticate(%s)", (token,)).fetchone()[0] == TENANT
        assert c.execute("SELECT body FROM public.docs").fetchall() == [("a1",)]
    for kind, why in (("y", OTHER_CERT), ("tls", NO_CERT), ("tcp", NOT_TLS), ("unix", NOT_TLS)):
        with conn(kind) as c:
            assert sqlstate(c, "SELECT tenant.authenticate(%s)", (token,)) == ("28000", "token rejected: " + why), kind
            # set without authenticate: no context, with the reason
            c.execute("BEGIN")
            c.execute(psycopg.sql.SQL("SET LOCAL tenant_guard.token = {}").format(psycopg.sql.Literal(token)))
            try:
                c.execute("SELECT body FROM public.docs")
                raise AssertionError("read without the certificate")
            except psycopg.errors.InsufficientPrivilege as e:
                assert e.diag.message_primary == "no tenant context"
                assert e.diag.message_detail == f"The token in tenant_guard.token was rejected: {why}."
            c.execute("ROLLBACK")
    # an unbound token works on every connection
    for kind in ("x", "y", "tls", "tcp", "unix"):
        with conn(kind) as c:
            assert c.execute("SELECT tenant.authenticate(%s)", (tls.mint(TENANT),)).fetchone()[0] == TENANT


def test_session_scope_connection_option_and_parallel_workers(tls):
    token = bound_to(tls, "x")
    with conn("x") as c:
        c.execute("SELECT tenant.authenticate(%s, 'session')", (token,))
        c.execute("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0")
        c.execute("SET debug_parallel_query = on" if PG != "15" else "SET force_parallel_mode = on")
        for _ in range(3):
            assert c.execute("SELECT count(*) FROM public.docs").fetchone()[0] == 1
        # DISCARD ALL and RESET ALL (what poolers run) keep the connection's certificate
        c.execute("DISCARD ALL")
        c.execute("SELECT tenant.authenticate(%s, 'session')", (token,))
        c.execute("RESET ALL")
        c.execute("SELECT tenant.authenticate(%s, 'session')", (token,))
        assert c.execute("SELECT tenant.current_id()").fetchone()[0] == TENANT
    with conn("x", token_option=token) as c:
        assert c.execute("SELECT tenant.current_id()").fetchone()[0] == TENANT
    with conn("y", token_option=token) as c:
        assert sqlstate(c, "SELECT tenant.current_id()")[0] == "42501"


def test_nobody_can_claim_another_certificate(tls):
    with conn("tcp") as c:
        assert sqlstate(c, f"SET tenant_guard.client_certificate = 'tls:{thumbprint('x')}'")[0] == "42501"
        assert sqlstate(c, "SELECT set_config('tenant_guard.client_certificate', %s, false)",
                        (f"tls:{thumbprint('x')}",))[0] == "42501"
    with conn("tcp", user="postgres") as su:
        # not even a superuser: the value comes from the handshake only
        assert sqlstate(su, f"SET tenant_guard.client_certificate = 'tls:{thumbprint('x')}'")[0] == "22023"
        assert sqlstate(su, f"ALTER ROLE {APP} SET tenant_guard.client_certificate = 'tls:{thumbprint('x')}'")[0] \
            == "22023"
    with pytest.raises(psycopg.OperationalError, match="permission denied to set parameter"):
        psycopg.connect(host=HOST, port=OWN_PORT, user=APP, dbname=DB, sslmode="disable",
                        options=f"-c tenant_guard.client_certificate=tls:{thumbprint('x')}")


def test_an_issuer_that_requires_binding_refuses_unbound_tokens(tls):
    with psycopg.connect(dsn(port=OWN_PORT), autocommit=True) as su:
        su.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s, require_cert_binding => true)",
                   (ISS, psycopg.types.json.Jsonb(tls.jwks()), AUD))
        try:
            assert su.execute("SELECT DISTINCT require_cert_binding FROM tenant.issuers").fetchall() == [(True,)]
            with conn("x") as c:
                assert sqlstate(c, "SELECT tenant.authenticate(%s)", (tls.mint(TENANT),)) == \
                    ("28000", "token rejected: " + REQUIRED)
                assert c.execute("SELECT tenant.authenticate(%s)", (bound_to(tls, "x"),)).fetchone()[0] == TENANT
            # re-trusting to rotate keys keeps the requirement (NULL keeps it)
            su.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (ISS, psycopg.types.json.Jsonb(tls.jwks()), AUD))
            assert su.execute("SELECT DISTINCT require_cert_binding FROM tenant.issuers").fetchall() == [(True,)]
        finally:
            su.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s, require_cert_binding => false)",
                       (ISS, psycopg.types.json.Jsonb(tls.jwks()), AUD))
