"""Key sets fetched from identity providers (OpenID Connect Discovery): tenant.trust_issuer_discovery registers an
issuer whose keys a background worker fetches over HTTPS from its /.well-known/openid-configuration and jwks_uri,
keeps fresh within tenant_guard.discovery_min_refresh / discovery_max_refresh, fetches early when a token names an
unknown kid, and keeps the last good keys when the provider fails or misbehaves. No query ever waits on the network.

A cluster of its own (discovery_databases is a server-start setting), and local HTTPS identity providers
(tests/support/oidc_provider.py) with a CA made by openssl now, each on its own port: each test's issuer is its own."""

import os
import subprocess
import sys
import time
import uuid

import jwt
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from conftest import APP, AUD, DB, TENANT_A, TENANT_B, Keys, dsn, free_port, sqlstate

SUPPORT = os.path.join(os.path.dirname(__file__), "..", "support")
sys.path.insert(0, SUPPORT)
import oidc_provider  # noqa: E402
from oidc_provider import JWKS_PATH, WELL_KNOWN  # noqa: E402

CLUSTER = os.path.join(SUPPORT, "cluster.sh")
OWN_PORT = free_port()   # not PORT + n: the suites of several majors may run at once
OWN_DIR = f"/tmp/tenant_guard-e2e-discovery-{os.getpid()}"
CERTS = OWN_DIR + "-idp"       # the CA tenant_guard.discovery_ca_file names, and the providers' certificate
ROGUE = OWN_DIR + "-rogue"     # a CA nobody trusts
OTHER_DB = "tg_other"          # not in tenant_guard.discovery_databases
DEADLINE = 20                  # seconds a background fetch may take to show, in every wait below
AUTH = "SELECT tenant.authenticate(%s)"


def connect(user="postgres", dbname=DB):
    return psycopg.connect(dsn(user=user, dbname=dbname, port=OWN_PORT), autocommit=True)


@pytest.fixture(scope="module")
def cluster():
    subprocess.run([CLUSTER, "stop", OWN_DIR], check=True)
    subprocess.run(["rm", "-rf", CERTS, ROGUE], check=True)
    subprocess.run([CLUSTER, "start", OWN_DIR, str(OWN_PORT)], check=True, stdout=subprocess.DEVNULL)
    try:
        ca = oidc_provider.make_certs(CERTS, os.stat(OWN_DIR).st_uid)
        with connect(dbname="postgres") as c:
            c.execute(f"CREATE DATABASE {DB}")
            c.execute(f"CREATE DATABASE {OTHER_DB}")
            c.execute(f"DROP ROLE IF EXISTS {APP}")
            c.execute(f"CREATE ROLE {APP} LOGIN NOSUPERUSER NOBYPASSRLS")
            c.execute(f"ALTER SYSTEM SET tenant_guard.discovery_databases = '{DB}'")
            c.execute(f"ALTER SYSTEM SET tenant_guard.discovery_ca_file = '{ca}'")
            c.execute("ALTER SYSTEM SET tenant_guard.discovery_min_refresh = 1")
        subprocess.run([CLUSTER, "restart", OWN_DIR], check=True)
        with connect() as c:
            c.execute("CREATE EXTENSION tenant_guard")
            c.execute("CREATE TABLE public.docs (tenant_id uuid NOT NULL, body text)")
            c.execute("SECURITY LABEL FOR tenant_guard ON TABLE public.docs IS 'tenant_scoped'")
            c.execute(f"GRANT SELECT, INSERT ON public.docs TO {APP}")
            c.execute("INSERT INTO public.docs VALUES (%s, 'a1'), (%s, 'a2'), (%s, 'b1'), (gen_random_uuid(), 'x')",
                      (TENANT_A, TENANT_A, TENANT_B))
        with connect(dbname=OTHER_DB) as c:
            c.execute("CREATE EXTENSION tenant_guard")
        yield
    finally:
        subprocess.run([CLUSTER, "stop", OWN_DIR], check=True)
        subprocess.run(["rm", "-rf", CERTS, ROGUE], check=True)


# these override conftest's fixtures of the same names (which use the suite's shared cluster), so that its
# no_open_transactions fixture still looks after them
@pytest.fixture
def admin(cluster):
    with connect() as c:
        yield c


@pytest.fixture
def app(cluster):
    with connect(user=APP) as c:
        assert c.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone() \
            == (False, False)
        yield c


@pytest.fixture
def providers(cluster):
    """Makes identity providers (started unless start=False, attributes set from keywords); at the end stops them
    (which also cuts short any answer a "slow" one is holding back) and untrusts their issuers, so that the worker
    spends no time on them in later tests."""
    made = []

    def make(directory=CERTS, start=True, **attributes):
        idp = oidc_provider.IdentityProvider(directory)
        for name, value in attributes.items():
            setattr(idp, name, value)
        made.append(idp)
        return idp.start() if start else idp

    yield make
    for idp in made:
        idp.stop()
    with connect() as c:
        for idp in made:
            c.execute("SELECT tenant.untrust_issuer(i.issuer) FROM (SELECT DISTINCT issuer FROM tenant.issuers "
                      "WHERE issuer = %s) i", (idp.issuer,))


@pytest.fixture
def idp(providers):
    return providers()


# -- helpers ----------------------------------------------------------------------------------------------------------

CASTS = {"tenants": "::uuid[]", "allowed_hosts": "::text[]"}


def register(admin, idp, audience=AUD, **options):
    """tenant.trust_issuer_discovery(issuer, audience => ..., <options> => ...)."""
    issuer = idp if isinstance(idp, str) else idp.issuer
    args, params = ["%s"], [issuer]
    for name, value in {"audience": audience, **options}.items():
        args.append(f"{name} => %s{CASTS.get(name, '')}")
        params.append(value)
    admin.execute(f"SELECT tenant.trust_issuer_discovery({', '.join(args)})", params)


def refresh(admin, idp):
    admin.execute("SELECT tenant.refresh_issuer(%s)", (idp.issuer,))


def state(admin, issuer):
    """The issuer's rows in tenant.issuers: the first row's columns, plus kids (sorted, without NULL) and rows."""
    with admin.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM tenant.issuers WHERE issuer = %s ORDER BY kid", (issuer,)).fetchall()
    assert rows, f"{issuer} is not in tenant.issuers"
    s = dict(rows[0])
    s["kids"] = sorted(r["kid"] for r in rows if r["kid"] is not None)
    s["rows"] = rows
    return s


def summary(s):
    return {k: s.get(k) for k in ("kids", "jwks_uri", "last_fetch", "last_success", "last_error", "next_fetch")}


def wait_until(condition, what, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not {what} after {deadline} s")
        time.sleep(0.1)


def wait_for(admin, idp, condition, what, deadline=DEADLINE):
    """Polls tenant.issuers until `condition(state)` holds; returns that state."""
    issuer = idp if isinstance(idp, str) else idp.issuer
    end = time.monotonic() + deadline
    while True:
        s = state(admin, issuer)
        if condition(s):
            return s
        if time.monotonic() > end:
            raise AssertionError(f"{issuer}: not {what} after {deadline} s: {summary(s)}")
        time.sleep(0.1)


def fetched(idp, kids=None, after=None):
    """The condition "the key set with `kids` (default: the provider's published kids) was fetched, after `after`"."""
    def condition(s):
        return (s["last_success"] is not None and s["last_error"] is None
                and s["kids"] == sorted(kids or idp.kids) and (after is None or s["last_fetch"] > after))
    return condition


def failed(after=None):
    """The condition "a fetch failed (after `after`)"."""
    return lambda s: s["last_error"] is not None and (after is None or s["last_fetch"] > after)


def wait_fetched(admin, idp, **kw):
    return wait_for(admin, idp, fetched(idp, **kw), f"fetched with kids {sorted(kw.get('kids') or idp.kids)}")


def tenant_rows(app, token):
    """Authenticates with `token` in a transaction and returns (tenant, the bodies it reads)."""
    with app.transaction():
        tenant = app.execute(AUTH, (token,)).fetchone()[0]
        bodies = [r[0] for r in app.execute("SELECT body FROM public.docs ORDER BY body")]
    return tenant, bodies


def accepted(app, token, tenant):
    assert app.execute(AUTH, (token,)).fetchone()[0] == tenant


def refused(app, token):
    outcome = sqlstate(app, AUTH, (token,))
    assert outcome is not None and outcome[0] == "28000", outcome
    return outcome


def timed(f, *args):
    start = time.monotonic()
    result = f(*args)
    return time.monotonic() - start, result


def configure(admin, name, value):
    """ALTER SYSTEM SET (RESET for None) tenant_guard.<name>, reload, and wait until a new backend sees it (by then
    the postmaster has signalled the discovery worker too, which reloads before it next looks for work)."""
    full = f"tenant_guard.{name}"
    if value is None:
        admin.execute(f"ALTER SYSTEM RESET {full}")
        expected = admin.execute("SELECT boot_val FROM pg_settings WHERE name = %s", (full,)).fetchone()[0]
    else:
        admin.execute(f"ALTER SYSTEM SET {full} = {value}")
        expected = str(value)
    admin.execute("SELECT pg_reload_conf()")

    def seen():
        with connect() as c:
            return c.execute("SELECT setting FROM pg_settings WHERE name = %s", (full,)).fetchone()[0] == expected
    wait_until(seen, f"{full} = {expected}", deadline=10)


def setting(admin, name):
    return int(admin.execute("SELECT setting FROM pg_settings WHERE name = %s", (f"tenant_guard.{name}",)).fetchone()[0])


# -- 1. registering fetches the keys; the provider's tokens then work --------------------------------------------------

def test_registering_fetches_the_key_set_and_its_tokens_work(idp, admin, app):
    register(admin, idp)
    s = wait_fetched(admin, idp)
    assert len(s["rows"]) == 1
    assert (s["kid"], s["alg"], s["kty"], s["audience"]) == (idp.signing_kid, "EdDSA", "OKP", AUD)
    assert s["discovery_url"] == idp.issuer + WELL_KNOWN
    assert s["jwks_uri"] == idp.issuer + JWKS_PATH
    assert s["last_fetch"] is not None and s["last_success"] is not None and s["last_success"] <= s["last_fetch"]
    # no Cache-Control: the next fetch is discovery_max_refresh away
    interval = (s["next_fetch"] - s["last_success"]).total_seconds()
    assert abs(interval - setting(admin, "discovery_max_refresh")) < 5, interval
    assert idp.hits[WELL_KNOWN] >= 1 and idp.hits[JWKS_PATH] >= 1

    assert tenant_rows(app, idp.mint(TENANT_A)) == (TENANT_A, ["a1", "a2"])
    assert tenant_rows(app, idp.mint(TENANT_B)) == (TENANT_B, ["b1"])
    # the issuer's other rules still hold: the audience, and the signature of a key it did not publish
    refused(app, idp.mint(TENANT_A, aud="another-api"))
    impostor = oidc_provider.SigningKey(idp.signing_kid)
    forged = jwt.encode({"iss": idp.issuer, "aud": AUD, "sub": "x", "tenant_id": str(TENANT_A),
                         "iat": int(time.time()), "exp": int(time.time()) + 300},
                        impostor.private, algorithm="EdDSA", headers={"kid": idp.signing_kid})
    refused(app, forged)
    # without a token, no rows
    assert sqlstate(app, "SELECT body FROM public.docs")[0] == "42501"


# -- 2. no keys, no tokens ---------------------------------------------------------------------------------------------

def test_tokens_are_refused_while_the_provider_is_down_from_the_start(providers, admin, app):
    idp = providers(start=False)   # its port refuses connections
    register(admin, idp)
    refused(app, idp.mint(TENANT_A))
    s = wait_for(admin, idp, failed(), "failed")
    assert [r["kid"] for r in s["rows"]] == [None]
    assert s["last_success"] is None and s["last_fetch"] is not None
    refused(app, idp.mint(TENANT_A))
    # a failed fetch is retried after discovery_min_refresh, without being asked
    idp.start()
    s = wait_fetched(admin, idp)
    assert s["last_error"] is None
    accepted(app, idp.mint(TENANT_A), TENANT_A)


def test_tokens_are_refused_until_the_first_fetch_completes(providers, admin, app):
    idp = providers(mode="slow", delay=3)
    register(admin, idp)
    wait_until(lambda: idp.hits.get(WELL_KNOWN), "asked for its configuration")
    # the worker is waiting on the provider: the issuer has no keys yet
    s = state(admin, idp.issuer)
    assert [r["kid"] for r in s["rows"]] == [None] and s["last_success"] is None
    refused(app, idp.mint(TENANT_A))
    idp.mode = "ok"   # the answer held back comes, then the key set at once
    wait_fetched(admin, idp)
    accepted(app, idp.mint(TENANT_A), TENANT_A)


# -- 3. rotation --------------------------------------------------------------------------------------------------------

def test_a_rotated_key_is_fetched_early_and_a_retired_one_stops_working(idp, admin, app):
    register(admin, idp)
    wait_fetched(admin, idp)
    first = idp.signing_kid
    old = idp.mint(TENANT_A)
    accepted(app, old, TENANT_A)

    before = idp.jwks_hits()
    new = idp.rotate()
    token = idp.mint(TENANT_B)
    # no refresh_issuer, and the next scheduled fetch is a day away: only the unknown kid makes the worker fetch
    # (at most once per discovery_min_refresh); clients retry, each on a connection of its own
    end = time.monotonic() + DEADLINE
    while True:
        with connect(user=APP) as c:
            outcome = sqlstate(c, AUTH, (token,))
        if outcome is None:
            break
        assert outcome[0] == "28000", outcome
        assert time.monotonic() < end, f"a token of the new key {new} still refused: {outcome}"
        time.sleep(0.2)
    assert idp.jwks_hits() > before
    s = state(admin, idp.issuer)
    assert s["kids"] == sorted([first, new]) and s["last_error"] is None
    # the previous key stays published (standby), so its tokens still work
    accepted(app, old, TENANT_A)
    accepted(app, token, TENANT_B)

    idp.retire(first)
    refresh(admin, idp)
    wait_fetched(admin, idp, kids=[new])
    refused(app, old)
    refused(app, idp.mint(TENANT_A, kid=first))
    accepted(app, idp.mint(TENANT_A), TENANT_A)


def test_an_unknown_kid_met_just_after_a_fetch_is_fetched_once_the_interval_has_passed(idp, admin, app):
    """The early fetch an unknown kid asks for is rate-limited (discovery_min_refresh), not dropped: a token of a new
    key met within the interval after a fetch is accepted once the interval has passed, by the same connection
    that was refused (which asks only once: it remembers the refusal until the keys change)."""
    register(admin, idp)
    s = wait_fetched(admin, idp)
    refresh(admin, idp)
    wait_for(admin, idp, fetched(idp, after=s["last_fetch"]), "fetched again")
    idp.rotate()
    token = idp.mint(TENANT_B)
    refused(app, token)    # well within a second of the last fetch
    end = time.monotonic() + DEADLINE
    while sqlstate(app, AUTH, (token,)) is not None:
        assert time.monotonic() < end, f"the new key was not fetched: {summary(state(admin, idp.issuer))}"
        time.sleep(0.2)
    assert state(admin, idp.issuer)["kids"] == sorted(idp.kids)


# -- 4. provider down -----------------------------------------------------------------------------------------------------

def test_the_keys_are_kept_while_the_provider_is_down(idp, admin, app):
    register(admin, idp)
    good = wait_fetched(admin, idp)
    token = idp.mint(TENANT_A)
    accepted(app, token, TENANT_A)

    idp.stop()
    refresh(admin, idp)
    s = wait_for(admin, idp, failed(after=good["last_fetch"]), "failed")
    assert s["kids"] == good["kids"]
    assert s["last_success"] == good["last_success"] and s["updated_at"] == good["updated_at"]
    accepted(app, token, TENANT_A)
    accepted(app, idp.mint(TENANT_B), TENANT_B)

    idp.start()
    refresh(admin, idp)
    s = wait_for(admin, idp, fetched(idp, after=s["last_fetch"]), "fetched again")
    assert s["last_error"] is None and s["last_success"] > good["last_success"]


# -- 5. misbehaving providers ---------------------------------------------------------------------------------------------

MISBEHAVIOURS = {
    # mode: (any of these lowercased substrings in last_error)
    "garbage": ("json", "key set"),
    "not_a_key_set": ("key set", "keys"),
    "bad_key": ("key set", "key 1"),
    "status_500": ("500",),
    "status_500_config": ("500",),
    "redirect": ("redirect",),
    "redirect_config": ("redirect",),
    "huge": ("larger than", "too large", "1048576"),
    "wrong_issuer": ("issuer",),
    "foreign_jwks_uri": ("host",),
    "foreign_host": ("host",),
    "http_jwks_uri": ("https",),
    "nul_member": ("nul",),
}


@pytest.mark.parametrize("mode", list(MISBEHAVIOURS))
def test_a_misbehaving_provider_changes_nothing_but_last_error(idp, admin, app, mode):
    register(admin, idp)
    good = wait_fetched(admin, idp)
    token = idp.mint(TENANT_A)

    idp.mode = mode
    refresh(admin, idp)
    s = wait_for(admin, idp, failed(after=good["last_fetch"]), f"failed ({mode})")
    error = s["last_error"].lower()
    assert any(part in error for part in MISBEHAVIOURS[mode]), error
    assert "temporarily unavailable" not in error   # what a body held is never repeated
    assert s["kids"] == good["kids"] and s["updated_at"] == good["updated_at"]
    assert s["last_success"] == good["last_success"] and s["jwks_uri"] == good["jwks_uri"]
    accepted(app, token, TENANT_A)
    accepted(app, idp.mint(TENANT_B), TENANT_B)

    idp.mode = "ok"
    refresh(admin, idp)
    wait_for(admin, idp, fetched(idp, after=s["last_fetch"]), "fetched again")


def test_a_jwks_uri_on_another_port_is_used_only_when_allowed(providers, admin, app):
    idp = providers(mode="foreign_jwks_uri")   # jwks_uri: https://127.0.0.1:<alt_port>/jwks.json
    register(admin, idp)
    s = wait_for(admin, idp, failed(), "failed")
    assert "host" in s["last_error"].lower()
    assert [r["kid"] for r in s["rows"]] == [None] and not idp.alt_hits
    refused(app, idp.mint(TENANT_A))

    register(admin, idp, allowed_hosts=[f"127.0.0.1:{idp.alt_port}"])
    s = wait_fetched(admin, idp)
    assert s["jwks_uri"] == idp.alt_origin + JWKS_PATH
    assert idp.alt_hits.get(JWKS_PATH, 0) >= 1
    accepted(app, idp.mint(TENANT_A), TENANT_A)


def test_a_provider_whose_certificate_no_trusted_ca_signed_is_refused(providers, admin, app):
    idp = providers(directory=ROGUE)
    register(admin, idp)
    s = wait_for(admin, idp, failed(), "failed")
    assert "certificate" in s["last_error"].lower(), s["last_error"]
    assert [r["kid"] for r in s["rows"]] == [None]
    refused(app, idp.mint(TENANT_A))


# -- 6. no query waits on the network -------------------------------------------------------------------------------------

def test_no_query_waits_for_a_slow_provider(providers, admin, app):
    configure(admin, "discovery_timeout", 30)
    try:
        healthy = providers()
        register(admin, healthy)
        wait_fetched(admin, healthy)
        known = healthy.mint(TENANT_A)

        slow = providers(mode="slow", delay=8)
        took, _ = timed(register, admin, slow)
        assert took < 2, f"trust_issuer_discovery took {took:.1f} s"
        wait_until(lambda: slow.hits.get(WELL_KNOWN), "asked for its configuration")
        # the worker now waits on the slow provider
        took, _ = timed(refresh, admin, slow)
        assert took < 2, f"refresh_issuer took {took:.1f} s"
        healthy.rotate()
        took, _ = timed(refused, app, healthy.mint(TENANT_A))   # an unknown kid: asks for an early fetch
        assert took < 2, f"authenticate with an unknown kid took {took:.1f} s"
        took, _ = timed(refused, app, slow.mint(TENANT_A))      # an issuer without keys yet
        assert took < 2, f"authenticate for an issuer being fetched took {took:.1f} s"
        took, _ = timed(accepted, app, known, TENANT_A)
        assert took < 2, f"authenticate with a known key took {took:.1f} s"
        took, _ = timed(state, admin, slow.issuer)
        assert took < 2, f"reading tenant.issuers took {took:.1f} s"
    finally:
        configure(admin, "discovery_timeout", None)


# -- 7. the provider's cache lifetime, within bounds -------------------------------------------------------------------

def test_the_providers_cache_lifetime_is_honored_within_bounds(providers, admin):
    short = providers(max_age=2)
    register(admin, short)
    s = wait_fetched(admin, short)
    assert abs((s["next_fetch"] - s["last_success"]).total_seconds() - 2) < 0.5, summary(s)
    before = short.jwks_hits()
    wait_until(lambda: short.jwks_hits() >= before + 2, "refetched twice (max-age=2)", deadline=8)

    # max-age=0 (or no-store): not more often than discovery_min_refresh (1 s)
    eager = providers(max_age=0)
    register(admin, eager)
    s = wait_fetched(admin, eager)
    assert abs((s["next_fetch"] - s["last_success"]).total_seconds() - 1) < 0.5, summary(s)

    configure(admin, "discovery_max_refresh", 3)
    try:
        patient = providers(max_age=3600)
        register(admin, patient)
        s = wait_fetched(admin, patient)
        assert abs((s["next_fetch"] - s["last_success"]).total_seconds() - 3) < 0.5, summary(s)
        before = patient.jwks_hits()
        wait_until(lambda: patient.jwks_hits() > before, "refetched (max-age=3600, max_refresh=3)", deadline=6)
    finally:
        configure(admin, "discovery_max_refresh", None)


# -- 8. invalid arguments and privileges ------------------------------------------------------------------------------------

BAD_ISSUERS = [
    "http://127.0.0.1:8443",
    "ftp://idp.example.com",
    "idp.example.com",
    "https://",
    "https:///realms/acme",
    "https://user:secret@idp.example.com",
    "https://user@idp.example.com",
    "https://idp.example.com/?tenant=1",
    "https://idp.example.com/#fragment",
    "",
]


def test_invalid_arguments_and_privileges(admin, providers):
    for bad in BAD_ISSUERS + [None]:
        outcome = sqlstate(admin, "SELECT tenant.trust_issuer_discovery(%s)", (bad,))
        assert outcome is not None and outcome[0] == "22023", (bad, outcome)
    for hosts in (["https://keys.example.net"], ["keys.example.net/jwks"], ["user@keys.example.net"],
                  ["keys.example.net:port"], [None]):
        outcome = sqlstate(admin, "SELECT tenant.trust_issuer_discovery(%s, allowed_hosts => %s::text[])",
                           ("https://idp.example.com", hosts))
        assert outcome is not None and outcome[0] == "22023", (hosts, outcome)
    assert admin.execute("SELECT count(*) FROM tenant.issuers WHERE issuer = ANY(%s) OR issuer LIKE %s",
                         (BAD_ISSUERS, "%idp.example.com%")).fetchone()[0] == 0

    # a database without a discovery worker
    with connect(dbname=OTHER_DB) as other:
        outcome = sqlstate(other, "SELECT tenant.trust_issuer_discovery(%s)", ("https://idp.example.com",))
        assert outcome is not None and outcome[0] == "55000", outcome
        assert other.execute("SELECT count(*) FROM tenant.issuers").fetchone()[0] == 0

    # refresh_issuer: only discovered issuers
    assert sqlstate(admin, "SELECT tenant.refresh_issuer(%s)", ("https://nobody.example.com",))[0] == "22023"
    assert sqlstate(admin, "SELECT tenant.refresh_issuer(%s)", (None,))[0] == "22023"
    manual = "https://manual.example.com"
    admin.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (manual, Jsonb(Keys().jwks(("EdDSA",))), AUD))
    try:
        assert sqlstate(admin, "SELECT tenant.refresh_issuer(%s)", (manual,))[0] == "22023"
    finally:
        admin.execute("SELECT tenant.untrust_issuer(%s)", (manual,))

    # the application role may neither register nor refresh
    idp = providers()
    register(admin, idp)
    with connect(user=APP) as app:
        assert sqlstate(app, "SELECT tenant.trust_issuer_discovery(%s)", ("https://evil.example",))[0] == "42501"
        assert sqlstate(app, "SELECT tenant.refresh_issuer(%s)", (idp.issuer,))[0] == "42501"
        assert sqlstate(app, "SELECT * FROM tenant.issuers")[0] == "42501"


# -- manual keys end discovery; untrusting removes it ----------------------------------------------------------------------

def test_keys_registered_by_hand_end_the_discovery_and_untrusting_removes_it(idp, admin, app):
    register(admin, idp)
    wait_fetched(admin, idp)
    manual = Keys(suffix="-manual")
    admin.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)",
                  (idp.issuer, Jsonb(manual.jwks(("EdDSA",))), AUD))
    s = state(admin, idp.issuer)
    assert s["kids"] == ["EdDSA-manual"]
    assert all(r[c] is None for r in s["rows"] for c in ("discovery_url", "jwks_uri", "last_fetch", "next_fetch"))
    assert sqlstate(admin, "SELECT tenant.refresh_issuer(%s)", (idp.issuer,))[0] == "22023"
    accepted(app, manual.mint(TENANT_A, alg="EdDSA", iss=idp.issuer), TENANT_A)

    # the provider's keys no longer count, and an unknown kid no longer makes anything fetch them
    hits = idp.jwks_hits()
    idp.rotate()
    refused(app, idp.mint(TENANT_A))
    time.sleep(1.5)   # longer than discovery_min_refresh
    assert idp.jwks_hits() == hits
    assert state(admin, idp.issuer)["kids"] == ["EdDSA-manual"]

    # registering it for discovery again, then untrusting it
    register(admin, idp)
    wait_fetched(admin, idp)
    token = idp.mint(TENANT_B)
    accepted(app, token, TENANT_B)
    admin.execute("SELECT tenant.untrust_issuer(%s)", (idp.issuer,))
    assert admin.execute("SELECT count(*) FROM tenant.issuers WHERE issuer = %s", (idp.issuer,)).fetchone()[0] == 0
    refused(app, token)
    assert sqlstate(admin, "SELECT tenant.refresh_issuer(%s)", (idp.issuer,))[0] == "22023"


def test_a_tenant_scope_given_at_registration_holds_for_fetched_keys(idp, admin, app):
    register(admin, idp, tenants=[TENANT_A])
    s = wait_fetched(admin, idp)
    assert s["scoped_tenants"] == 1
    assert tenant_rows(app, idp.mint(TENANT_A)) == (TENANT_A, ["a1", "a2"])
    refused(app, idp.mint(TENANT_B))
    refused(app, idp.mint(uuid.uuid4()))


# -- red team, round 7 --------------------------------------------------------------------------------------------------

def test_a_discovered_issuer_without_keys_yet_still_reserves_its_tenants(providers, admin, app):
    """An issuer whose keys cannot be used (before its first good fetch, or a provider that stays down) verifies
    nothing, and the tenants it lists stay reserved to it: another, unscoped issuer may not speak for them meanwhile."""
    down = providers(start=False)
    register(admin, down, tenants=[str(TENANT_A)])
    wait_for(admin, down, failed(), "failed")
    platform = Keys("-platform")
    platform_iss = "https://platform.discovery.test"
    admin.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (platform_iss, Jsonb(platform.jwks(("EdDSA",))), AUD))
    try:
        outcome = refused(app, platform.mint(TENANT_A, iss=platform_iss))
        assert "reserved" in outcome[1], outcome
        accepted(app, platform.mint(TENANT_B, iss=platform_iss), TENANT_B)
        # the same for stored keys that cannot be used (a table edited by hand)
        admin.execute("UPDATE tenant.trusted_issuer SET jwks = '{\"keys\": [{\"kty\": \"nope\"}]}' WHERE issuer = %s",
                      (down.issuer,))
        outcome = refused(app, platform.mint(TENANT_A, iss=platform_iss, jti="again"))
        assert "reserved" in outcome[1], outcome
    finally:
        admin.execute("SELECT tenant.untrust_issuer(%s)", (platform_iss,))


def test_a_provider_that_poisons_its_fetch_holds_up_no_other_issuer(providers, admin, app):
    """A key set PostgreSQL cannot store (a NUL in a member) is an error of that issuer's fetch, recorded; the other
    issuers' refreshes go on: a retired key of another issuer stops verifying."""
    good = providers()
    register(admin, good)
    wait_fetched(admin, good)
    first = good.signing_kid
    old = good.mint(TENANT_A)
    good.rotate()
    refresh(admin, good)
    wait_fetched(admin, good)

    poisoned = providers(mode="nul_member")
    register(admin, poisoned)
    s = wait_for(admin, poisoned, failed(), "failed")
    assert "nul" in s["last_error"].lower(), s["last_error"]
    assert [r["kid"] for r in s["rows"]] == [None]

    good.retire(first)
    refresh(admin, good)
    wait_fetched(admin, good)
    refused(app, old)
    refresh(admin, poisoned)
    s = wait_for(admin, poisoned, failed(after=s["last_fetch"]), "failed again")
    assert "nul" in s["last_error"].lower()


def test_an_unchanged_key_set_costs_the_backends_nothing(idp, admin, app):
    """A fetch that finds the same keys changes no row: no backend drops its cached keys or verifications."""
    register(admin, idp)
    s = wait_fetched(admin, idp)
    token = idp.mint(TENANT_A)
    accepted(app, token, TENANT_A)
    accepted(app, token, TENANT_A)

    def shared():
        return admin.execute("SELECT signatures_shared FROM tenant.verification_cache_stats()").fetchone()[0]

    before = shared()
    refresh(admin, idp)
    again = wait_for(admin, idp, fetched(idp, after=s["last_fetch"]), "fetched again")
    assert again["updated_at"] == s["updated_at"]
    # the app's backend still has its own verdict: it neither reloads nor asks the shared table
    accepted(app, token, TENANT_A)
    assert shared() == before


def test_the_timeout_bounds_the_whole_fetch(providers, admin):
    """Two requests of 3 s each (configuration, then key set) under a 5 s timeout: the fetch times out."""
    configure(admin, "discovery_timeout", 5)
    try:
        slow = providers(mode="slow", delay=3)
        register(admin, slow)
        s = wait_for(admin, slow, failed(), "failed")
        assert "timed out" in s["last_error"], s["last_error"]
        assert "key set" in s["last_error"], s["last_error"]
    finally:
        configure(admin, "discovery_timeout", None)


# -- red team, round 8 --------------------------------------------------------------------------------------------------

def test_a_lock_an_administrator_holds_delays_only_that_issuer(providers, admin, app):
    """An administrator's open transaction that locks issuer A's rows (a bulk scoping insert, a refresh not yet
    committed) neither blocks the fetches of issuer B, nor the early fetch an unknown kid asks for."""
    a, b = providers(), providers()
    for idp in (a, b):
        register(admin, idp)
        wait_fetched(admin, idp)
    with connect() as holder:
        holder.execute("BEGIN")
        holder.execute("INSERT INTO tenant.issuer_tenant VALUES (%s, gen_random_uuid())", (a.issuer,))
        holder.execute("SELECT tenant.refresh_issuer(%s)", (a.issuer,))
        # B rotates; a token of B's new key makes the worker fetch early, past A's locked rows
        b.rotate()
        token = b.mint(TENANT_A)
        end = time.monotonic() + DEADLINE
        while True:
            with connect(user=APP) as c:
                if sqlstate(c, AUTH, (token,)) is None:
                    break
            assert time.monotonic() < end, "B's new key was not fetched while A's rows were locked"
            time.sleep(0.3)
        holder.execute("ROLLBACK")


def test_database_settings_do_not_reach_the_worker(providers, admin, cluster):
    """A database owner may set user-level defaults for their database, which the worker picks up when it connects:
    read-only transactions, a role of their own, tight timeouts. The worker overrides them and keeps fetching."""
    for setting in ("default_transaction_read_only = on", "statement_timeout = 1", "lock_timeout = 1",
                    f"role = {APP}", "default_transaction_isolation = serializable"):
        admin.execute(f"ALTER DATABASE {DB} SET {setting}")
    try:
        # a new worker, which connects with those defaults
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = "
                      "'tenant_guard discovery'")
        idp = providers()
        register(admin, idp)
        wait_for(admin, idp, fetched(idp), "fetched by a worker started with hostile defaults", deadline=40)
    finally:
        admin.execute(f"ALTER DATABASE {DB} RESET ALL")


def test_keys_from_a_host_no_longer_allowed_stop_verifying_at_once(providers, admin, app):
    idp = providers(mode="foreign_jwks_uri")
    register(admin, idp, allowed_hosts=[f"127.0.0.1:{idp.alt_port}"])
    wait_fetched(admin, idp)
    token = idp.mint(TENANT_A)
    accepted(app, token, TENANT_A)
    register(admin, idp, allowed_hosts=[])
    s = state(admin, idp.issuer)
    assert [r["kid"] for r in s["rows"]] == [None] and s["jwks_uri"] is None
    refused(app, idp.mint(TENANT_A, jti="after"))


def test_a_fast_shutdown_waits_for_one_fetch_at_most(providers, cluster):
    """Several slow providers due at once: a fast shutdown waits for the fetch in progress, not for all of them."""
    with connect() as c:
        configure(c, "discovery_timeout", 3)
        slow = [providers(mode="slow", delay=30) for _ in range(4)]
        for idp in slow:
            register(c, idp)
        wait_until(lambda: sum(idp.hits.get(WELL_KNOWN, 0) for idp in slow) >= 1, "a fetch under way")
    start = time.monotonic()
    subprocess.run([CLUSTER, "restart", OWN_DIR], check=True, stdout=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    assert elapsed < 3 + 5, f"a fast shutdown took {elapsed:.1f} s with four slow fetches due"
    with connect() as c:
        configure(c, "discovery_timeout", None)
