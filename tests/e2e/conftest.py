"""End-to-end fixtures: a real PostgreSQL cluster (major $PG, default 15) with tenant_guard preloaded (started by
tests/support/with-cluster.sh), tokens minted by PyJWT (an independent JWT library) with keys generated at test time,
and an application role that is NOSUPERUSER NOBYPASSRLS and owns nothing it reads."""

import os
import time
import uuid

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PG = os.environ.get("PG", "15")            # the PostgreSQL major under test
HOST = os.environ.get("TG_HOST", "127.0.0.1")
PORT = int(os.environ.get("TG_PORT", "54329"))
DB = "tg_e2e"
APP = "tg_app"
ISS = "https://issuer.e2e.test"
AUD = "orders-api"
TENANT_A = uuid.UUID("aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa")
TENANT_B = uuid.UUID("bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb")
ALGS = ("HS256", "EdDSA", "ES256", "RS256")


def free_port():
    """A loopback port nothing listens on or connects from right now, for a server a test starts in the middle of
    the suite (a fixed port in the ephemeral range can be some client connection's local port by then)."""
    import socket
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def dsn(user="postgres", dbname=DB, **extra):
    parts = {"host": HOST, "port": PORT, "user": user, "dbname": dbname, **extra}
    return " ".join(f"{k}='{v}'" for k, v in parts.items())


def b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Keys:
    """One signing key per algorithm, generated now; `jwks(kids)` publishes the public halves."""

    def __init__(self, suffix=""):
        self.secret = os.urandom(32)
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.suffix = suffix

    def kid(self, alg):
        return alg + self.suffix

    def signing_key(self, alg):
        return {"HS256": self.secret, "EdDSA": self.ed, "ES256": self.ec, "RS256": self.rsa}[alg]

    def public_jwk(self, alg):
        if alg == "HS256":
            jwk = {"kty": "oct", "k": b64url(self.secret)}
        elif alg == "EdDSA":
            jwk = OKPAlgorithm.to_jwk(self.ed.public_key(), as_dict=True)
        elif alg == "ES256":
            jwk = ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True)
        jwk["kid"] = self.kid(alg)
        return jwk

    def jwks(self, algs=ALGS):
        return {"keys": [self.public_jwk(a) for a in algs]}

    def mint(self, tenant, alg="EdDSA", lifetime=300, headers=None, **claims):
        now = int(time.time())
        payload = {"iss": ISS, "aud": AUD, "sub": "user-" + str(tenant)[:8], "tenant_id": str(tenant),
                   "iat": now, "exp": now + lifetime}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        hdr = {"kid": self.kid(alg)}
        hdr.update(headers or {})
        return jwt.encode(payload, self.signing_key(alg), algorithm=alg, headers=hdr)


@pytest.fixture(scope="session")
def keys():
    return Keys()


@pytest.fixture(scope="session")
def database(keys):
    """Creates the test database, the extension, the app role and a table with a hand-written tenant policy."""
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB}")
        c.execute(f"DROP ROLE IF EXISTS {APP}")
        c.execute(f"CREATE ROLE {APP} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("CREATE EXTENSION tenant_guard")
        c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (ISS, psycopg.types.json.Jsonb(keys.jwks()), AUD))
        c.execute("""
            CREATE TABLE public.docs (id serial PRIMARY KEY, tenant_id uuid NOT NULL, body text NOT NULL);
            ALTER TABLE public.docs ENABLE ROW LEVEL SECURITY;
            ALTER TABLE public.docs FORCE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON public.docs AS RESTRICTIVE
                USING (tenant_id = (SELECT tenant.current_id()))
                WITH CHECK (tenant_id = (SELECT tenant.current_id()));
            CREATE POLICY allow_all ON public.docs USING (true) WITH CHECK (true);
            GRANT SELECT, INSERT, UPDATE, DELETE ON public.docs TO tg_app;
            GRANT USAGE ON SEQUENCE public.docs_id_seq TO tg_app;
        """)
        c.execute("INSERT INTO public.docs (tenant_id, body) VALUES (%s, 'a1'), (%s, 'a2'), (%s, 'b1')",
                  (TENANT_A, TENANT_A, TENANT_B))
    yield DB


@pytest.fixture
def admin(database):
    with psycopg.connect(dsn(), autocommit=True) as c:
        yield c


@pytest.fixture
def app(database):
    """A connection as the app role, in autocommit mode (each statement its own transaction unless BEGIN)."""
    with psycopg.connect(dsn(user=APP), autocommit=True) as c:
        row = c.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (False, False)
        yield c


def sqlstate(conn, sql, params=None):
    """Runs `sql` and returns (sqlstate, message) of the error it raises, or None if it succeeds."""
    try:
        conn.execute(sql, params)
    except psycopg.Error as e:
        if not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.rollback()
        return (e.sqlstate, e.diag.message_primary)
    return None


@pytest.fixture(autouse=True)
def no_open_transactions(request):
    """A failed test must not leave a connection holding locks that block the next one."""
    yield
    for name in ("app", "admin"):
        conn = request.node.funcargs.get(name)
        if conn is not None and not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")


NO_CONTEXT = ("42501", "no tenant context")
SEALED = ("28000", "tenant context is sealed: this transaction already belongs to another tenant")
