"""The Citus suite's fixtures: a coordinator (no shards) and two workers started by tests/citus/run.sh, each with
shared_preload_libraries = 'citus,tenant_guard' and the same master key; tokens minted by PyJWT; an application role
that is NOSUPERUSER NOBYPASSRLS and owns nothing, and a table owner that is not a superuser."""

import base64
import json
import os
import time
import uuid

import jwt
import psycopg
import pytest

HOST = os.environ.get("TG_HOST", "127.0.0.1")
PORT = int(os.environ.get("TG_PORT", "54360"))
WORKERS = (PORT + 1, PORT + 2)
NODES = (PORT,) + WORKERS
BASE = os.environ.get("TG_CITUS_BASE", "/tmp/tenant_guard-citus")
DB = "tg_citus"
APP, OWNER, ADMIN = "tg_app", "tg_owner", "tg_admin"
ISS, AUD = "https://issuer.citus.test", "orders-api"
SECRET = os.urandom(32)
TENANT_A = uuid.UUID("aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa")
TENANT_B = uuid.UUID("bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb")
TENANT_C = uuid.UUID("cccccccc-3333-4333-8333-cccccccccccc")
SHARDS = 8


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


JWKS = {"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": b64url(SECRET)}]}


def mint(tenant, lifetime=300, **claims):
    now = int(time.time())
    body = {"iss": ISS, "aud": AUD, "tenant_id": str(tenant), "iat": now, "exp": now + lifetime, **claims}
    return jwt.encode(body, SECRET, algorithm="HS256", headers={"kid": "k1"})


def connect(port=PORT, user="postgres", dbname=DB, **kw):
    return psycopg.connect(host=HOST, port=port, user=user, dbname=dbname, autocommit=True, **kw)


def sqlstate(conn, sql, params=None):
    """The SQLSTATE `sql` fails with (None when it succeeds); the connection is usable afterwards."""
    try:
        with conn.transaction():   # a savepoint inside a transaction block
            conn.execute(sql, params)
    except psycopg.Error as e:
        return e.sqlstate
    return None


def rows(conn, sql, params=None):
    return conn.execute(sql, params).fetchall()


def on_placements(admin, table, query):
    """(node port, result) of `query` on every placement of `table` (`%1$s` is the shard's name)."""
    return rows(admin, "SELECT nodeport, result FROM run_command_on_placements(%s, %s) ORDER BY shardid",
                (table, query))


@pytest.fixture(scope="session")
def cluster():
    with connect(dbname="postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB}")
    for port in NODES:
        with connect(port, dbname="postgres") as c:
            c.execute(f"CREATE DATABASE {DB}")
        with connect(port) as c:
            c.execute("CREATE EXTENSION citus")
            c.execute("CREATE EXTENSION tenant_guard")
    with connect() as c:
        c.execute("SELECT citus_set_coordinator_host(%s, %s)", (HOST, PORT))
        for port in WORKERS:
            c.execute("SELECT citus_add_node(%s, %s)", (HOST, port))
        c.execute(f"SET citus.shard_count = {SHARDS}")
        c.execute(f"CREATE ROLE {APP} LOGIN NOSUPERUSER NOBYPASSRLS")
        c.execute(f"CREATE ROLE {OWNER} LOGIN NOSUPERUSER NOBYPASSRLS")
        c.execute(f"CREATE ROLE {ADMIN} LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE tenant_guard_admin")
        c.execute(f"GRANT CREATE ON SCHEMA public TO {OWNER}")
        c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (ISS, json.dumps(JWKS), AUD))
    yield NODES


@pytest.fixture
def admin(cluster):
    with connect() as c:
        yield c


@pytest.fixture
def owner(cluster):
    with connect(user=OWNER) as c:
        yield c


def app_conn(port=PORT, **kw):
    return connect(port, user=APP, **kw)


@pytest.fixture
def app(cluster):
    with app_conn() as c:
        yield c


def make_table(owner, name, distribute="distributed", label_first=False, extra_columns=""):
    """A table of orders owned by the non-superuser owner, protected and made a Citus table in either order."""
    owner.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
    owner.execute(f"CREATE TABLE {name} (tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, "
                  f"item text, secret bytea{extra_columns}, PRIMARY KEY (tenant_id, id))")

    def label():
        owner.execute(f"SECURITY LABEL FOR tenant_guard ON TABLE {name} IS 'tenant_scoped'")

    def convert():
        if distribute == "distributed":
            owner.execute("SELECT create_distributed_table(%s, 'tenant_id')", (name,))
        elif distribute == "reference":
            owner.execute("SELECT create_reference_table(%s)", (name,))

    (label if label_first else convert)()
    (convert if label_first else label)()
    owner.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO {APP}")
    return name


def fill(name, tenants=(TENANT_A, TENANT_B, TENANT_C), per_tenant=3):
    """Rows for each tenant, inserted through the coordinator as that tenant."""
    with app_conn() as c:
        for t in tenants:
            with c.transaction():
                c.execute("SELECT tenant.authenticate(%s)", (mint(t),))
                for i in range(per_tenant):
                    c.execute(f"INSERT INTO {name} (item) VALUES (%s)", (f"{str(t)[:1]}{i}",))


@pytest.fixture(autouse=True)
def no_open_transactions():
    yield
