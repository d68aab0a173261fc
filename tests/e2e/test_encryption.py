"""Per-tenant encryption across connections, transactions, restarts, dumps, master-key changes and a hot standby.

Single-transaction behaviour (round trips, bad ciphertexts, rotation, shredding, privileges) is in src/tests.rs.
Tests that change the server configuration, restart it or stream from it run on a cluster of their own."""

import os
import random
import subprocess
import threading
import time
import uuid

import psycopg
import pytest
from conftest import APP, AUD, DB, HOST, ISS, PG, PORT, dsn, free_port, sqlstate

SUPPORT = os.path.join(os.path.dirname(__file__), "..", "support")
CLUSTER = os.path.join(SUPPORT, "cluster.sh")
BIN = f"/usr/lib/postgresql/{PG}/bin"
DESTROYED = ("55000", "keys destroyed: the data keys of the current tenant were shredded")
NOT_AUTHENTIC = ("XX001", "ciphertext does not authenticate: it was altered, or belongs to another tenant or another "
                          "context")


def tenant_conn(keys, tenant, port=PORT, dbname=DB):
    """An app-role connection (autocommit) with a session-scoped context for `tenant`."""
    c = psycopg.connect(dsn(user=APP, port=port, dbname=dbname), autocommit=True)
    c.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(tenant, lifetime=600),))
    return c


def encrypt(c, text, context=None):
    return bytes(c.execute("SELECT tenant.encrypt(%s, %s)", (text, context)).fetchone()[0])


def decrypt(c, ct, context=None):
    return c.execute("SELECT tenant.decrypt(%s, %s)", (ct, context)).fetchone()[0]


def version(c, ct):
    return c.execute("SELECT tenant.key_version(%s)", (ct,)).fetchone()[0]


# ---------------------------------------------------------------------------------------------------------------
# On the shared cluster


def test_another_tenant_cannot_decrypt(keys, admin):
    a, b = uuid.uuid4(), uuid.uuid4()
    with tenant_conn(keys, a) as ca, tenant_conn(keys, b) as cb:
        ct = encrypt(ca, "a's diagnosis", "app.patients.diagnosis:42")
        assert decrypt(ca, ct, "app.patients.diagnosis:42") == "a's diagnosis"
        # b has no data key yet: its version 1 does not exist
        assert sqlstate(cb, "SELECT tenant.decrypt(%s, %s)", (ct, "app.patients.diagnosis:42")) == (
            "22P03", "ciphertext names data key version 1, which the current tenant does not have")
        encrypt(cb, "b's own data")  # now b has a version 1 of its own
        assert sqlstate(cb, "SELECT tenant.decrypt(%s, %s)", (ct, "app.patients.diagnosis:42")) == NOT_AUTHENTIC
        assert sqlstate(cb, "SELECT tenant.decrypt_bytea(%s, %s)", (ct, "app.patients.diagnosis:42")) == NOT_AUTHENTIC
    assert admin.execute("SELECT count(*) FROM tenant.keys WHERE tenant IN (%s, %s)", (a, b)).fetchone()[0] == 2


def test_a_shred_committed_while_a_backend_reads_the_keys_reaches_it_at_its_next_statement(keys, admin):
    """Red team, round 10: the shred commits while the backend reads the tenant's keys (it waits for a lock an
    administrator holds): the invalidation processed as it takes the lock must not be lost."""
    t = uuid.uuid4()
    with tenant_conn(keys, t) as writer:
        ct = encrypt(writer, "shredded while loading")
    with psycopg.connect(dsn()) as holder, tenant_conn(keys, t) as reader:
        holder.execute("LOCK TABLE tenant.data_key IN ACCESS EXCLUSIVE MODE")
        first = {}
        thread = threading.Thread(target=lambda: first.update(r=sqlstate(reader, "SELECT tenant.decrypt(%s)", (ct,))))
        thread.start()
        for _ in range(200):
            if admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'",
                             (APP,)).fetchone()[0]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the backend did not wait on the lock")
        holder.execute("SELECT tenant.shred(%s)", (t,))
        holder.commit()
        thread.join(timeout=30)
        assert not thread.is_alive()
        gone = ("55000", f"keys destroyed: the data keys of tenant {t} were shredded")
        assert first["r"] is None or first["r"][0] == "55000"
        for _ in range(2):
            err = sqlstate(reader, "SELECT tenant.decrypt(%s)", (ct,))
            assert err is not None and err[0] == "55000" and "keys destroyed" in err[1], (err, gone)


def test_rotation_and_shred_reach_other_backends_by_their_next_statement(keys, admin):
    t = uuid.uuid4()
    with tenant_conn(keys, t) as c:
        old = encrypt(c, "before rotation")
        assert version(c, old) == 1
        assert decrypt(c, old) == "before rotation"  # key 1 is cached in this backend now
        assert admin.execute("SELECT tenant.rotate_key(%s)", (t,)).fetchone()[0] == 2
        new = encrypt(c, "after rotation")
        assert version(c, new) == 2
        assert decrypt(c, old) == "before rotation"
        # inside an open transaction too: the next statement sees the shred
        c.execute("BEGIN")
        assert decrypt(c, new) == "after rotation"
        assert admin.execute("SELECT tenant.shred(%s)", (t,)).fetchone()[0] == 2
        with pytest.raises(psycopg.Error) as e:
            decrypt(c, new)
        assert (e.value.sqlstate, e.value.diag.message_primary) == DESTROYED
        c.execute("ROLLBACK")
        for ct in (old, new):
            assert sqlstate(c, "SELECT tenant.decrypt(%s)", (ct,)) == DESTROYED
        assert sqlstate(c, "SELECT tenant.encrypt('more')") == DESTROYED
    # a new connection: same
    with tenant_conn(keys, t) as c:
        assert sqlstate(c, "SELECT tenant.decrypt(%s)", (old,)) == DESTROYED
    rows = admin.execute("SELECT version, state, kek_id IS NULL FROM tenant.keys WHERE tenant = %s ORDER BY 1",
                         (t,)).fetchall()
    assert rows == [(1, "destroyed", True), (2, "destroyed", True)]


def test_a_key_created_in_a_rolled_back_transaction_is_not_used(keys, admin):
    t = uuid.uuid4()
    with tenant_conn(keys, t) as c:
        c.execute("BEGIN")
        lost = encrypt(c, "never committed")
        c.execute("ROLLBACK")
        assert admin.execute("SELECT count(*) FROM tenant.keys WHERE tenant = %s", (t,)).fetchone()[0] == 0
        kept = encrypt(c, "committed")
        assert decrypt(c, kept) == "committed"
        # the rolled-back key is gone for good, and the backend did not keep using it
        assert sqlstate(c, "SELECT tenant.decrypt(%s)", (lost,)) == NOT_AUTHENTIC
    assert admin.execute("SELECT count(*) FROM tenant.keys WHERE tenant = %s", (t,)).fetchone()[0] == 1


def test_concurrent_first_encryptions_create_one_key(keys, admin):
    t = uuid.uuid4()
    conns = [tenant_conn(keys, t) for _ in range(8)]
    barrier = threading.Barrier(len(conns))
    results, errors = [], []

    def work(c):
        barrier.wait()
        try:
            results.append(encrypt(c, "first"))
        except psycopg.Error as e:
            errors.append((e.sqlstate, e.diag.message_primary))

    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(results) == 8
    assert {decrypt(conns[0], ct) for ct in results} == {"first"}
    assert admin.execute("SELECT count(*) FROM tenant.keys WHERE tenant = %s", (t,)).fetchone()[0] == 1
    for c in conns:
        c.close()


def test_rotation_under_concurrent_load_has_zero_failures(keys, admin):
    t = uuid.uuid4()
    admin.execute("SELECT tenant.create_key(%s)", (t,))
    stop = threading.Event()
    failures, done, versions = [], [0], set()
    lock = threading.Lock()

    def worker(n):
        rng = random.Random(n)
        history = []
        with tenant_conn(keys, t) as c:
            while not stop.is_set():
                try:
                    value = f"worker {n} value {len(history)}"
                    ct = encrypt(c, value, f"ctx:{n}")
                    history.append((ct, value))
                    old_ct, old_value = rng.choice(history)
                    assert decrypt(c, old_ct, f"ctx:{n}") == old_value
                    with lock:
                        done[0] += 1
                        versions.add(version(c, ct))
                except (psycopg.Error, AssertionError) as e:
                    failures.append(repr(e))
            # at the end every ciphertext ever made still decrypts
            for ct, value in history:
                if decrypt(c, ct, f"ctx:{n}") != value:
                    failures.append("final check")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    rotations = 0
    for _ in range(15):
        time.sleep(0.2)
        admin.execute("SELECT tenant.rotate_key(%s)", (t,))
        rotations += 1
    stop.set()
    for th in threads:
        th.join()
    assert failures == []
    assert done[0] > 100
    assert len(versions) > 5, versions
    assert admin.execute("SELECT count(*) FILTER (WHERE state = 'active'), count(*) FROM tenant.keys "
                         "WHERE tenant = %s", (t,)).fetchone() == (1, rotations + 1)


def test_pg_dump_and_restore_keep_ciphertexts_decryptable(keys, admin):
    t = uuid.uuid4()
    admin.execute("DROP TABLE IF EXISTS public.vault")
    admin.execute("CREATE TABLE public.vault (id int PRIMARY KEY, tenant_id uuid NOT NULL, secret bytea NOT NULL)")
    admin.execute("GRANT SELECT, INSERT ON public.vault TO tg_app")
    with tenant_conn(keys, t) as c:
        for i in range(5):
            c.execute("INSERT INTO public.vault VALUES (%s, %s, tenant.encrypt(%s, %s))",
                      (i, t, f"secret {i}", f"vault:{i}"))
    admin.execute("SELECT tenant.rotate_key(%s)", (t,))
    with tenant_conn(keys, t) as c:
        c.execute("INSERT INTO public.vault VALUES (5, %s, tenant.encrypt('secret 5', 'vault:5'))", (t,))
    before = admin.execute("SELECT id, secret FROM public.vault ORDER BY id").fetchall()
    keys_before = admin.execute("SELECT tenant, version, state, wrapped FROM tenant.data_key ORDER BY 1, 2").fetchall()

    dump = f"/tmp/tenant_guard-e2e-{os.getpid()}.dump"
    target = "tg_restored"
    conn = ["-h", HOST, "-p", str(PORT), "-U", "postgres"]
    subprocess.run([f"{BIN}/pg_dump", *conn, "-Fc", "-f", dump, DB], check=True)
    try:
        admin.execute(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {target}")
        subprocess.run([f"{BIN}/pg_restore", *conn, "-d", target, "--exit-on-error", dump], check=True)
        with psycopg.connect(dsn(dbname=target), autocommit=True) as r:
            # the same bytes: nothing was decrypted or encrypted again on the way
            assert r.execute("SELECT id, secret FROM public.vault ORDER BY id").fetchall() == before
            assert r.execute("SELECT tenant, version, state, wrapped FROM tenant.data_key ORDER BY 1, 2"
                             ).fetchall() == keys_before
        with tenant_conn(keys, t, dbname=target) as c:
            got = c.execute("SELECT id, tenant.decrypt(secret, 'vault:' || id), tenant.key_version(secret) "
                            "FROM public.vault ORDER BY id").fetchall()
            assert got == [(i, f"secret {i}", 1 if i < 5 else 2) for i in range(6)]
    finally:
        os.unlink(dump)
        admin.execute(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
        admin.execute("DROP TABLE public.vault")


# ---------------------------------------------------------------------------------------------------------------
# On a cluster of their own: restarts, master-key configuration, a hot standby

OWN_PORT = PORT + 200
OWN_DIR = f"/tmp/tenant_guard-e2e-keys-{OWN_PORT}"


def owner_uid():
    return os.stat(OWN_DIR).st_uid


def write_kek(path, mode=0o600):
    """A fresh random master key in `path`, owned by the server's OS user. Returns its hex."""
    key = os.urandom(32).hex()
    with open(path, "w") as f:
        f.write(key + "\n")
    os.chmod(path, mode)
    if os.getuid() == 0:
        os.chown(path, owner_uid(), -1)
    return key


class Own:
    def __init__(self, keys):
        self.keys = keys
        self.kek_file = OWN_DIR + ".kek"

    def admin(self):
        return psycopg.connect(dsn(port=OWN_PORT), autocommit=True)

    def app(self, tenant):
        return tenant_conn(self.keys, tenant, port=OWN_PORT)

    def reconfigure(self, **settings):
        """ALTER SYSTEM SET (None: RESET) tenant_guard.<name>, reload, and wait until new sessions see it."""
        with self.admin() as c:
            for name, value in settings.items():
                if value is None:
                    c.execute(f"ALTER SYSTEM RESET tenant_guard.{name}")
                else:
                    c.execute(f"ALTER SYSTEM SET tenant_guard.{name} = '{value}'")
            c.execute("SELECT pg_reload_conf()")
        deadline = time.time() + 10
        while True:
            with self.admin() as c:
                seen = {n: c.execute(f"SELECT current_setting('tenant_guard.{n}')").fetchone()[0] for n in settings}
            wanted = {n: (v if v is not None else (self.kek_file if n == "kek_file" else "")) for n, v in
                      settings.items()}
            if seen == wanted:
                return
            assert time.time() < deadline, (seen, wanted)
            time.sleep(0.05)


@pytest.fixture(scope="module")
def own(keys):
    subprocess.run([CLUSTER, "stop", OWN_DIR], check=True)
    subprocess.run([CLUSTER, "start", OWN_DIR, str(OWN_PORT)], check=True, stdout=subprocess.DEVNULL)
    try:
        with psycopg.connect(dsn(port=OWN_PORT, dbname="postgres"), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {DB}")
            c.execute(f"DROP ROLE IF EXISTS {APP}")
            c.execute(f"CREATE ROLE {APP} LOGIN NOSUPERUSER NOBYPASSRLS")
        with psycopg.connect(dsn(port=OWN_PORT), autocommit=True) as c:
            c.execute("CREATE EXTENSION tenant_guard")
            c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)",
                      (ISS, psycopg.types.json.Jsonb(keys.jwks()), AUD))
        yield Own(keys)
    finally:
        subprocess.run([CLUSTER, "stop", OWN_DIR], check=True)


@pytest.fixture
def files():
    """A scratch directory the server's OS user can traverse (pytest's tmp_path is private to the test user)."""
    path = f"{OWN_DIR}-files-{uuid.uuid4().hex[:8]}"
    os.mkdir(path, 0o755)
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["rm", "-rf", path], check=True)


@pytest.fixture
def baseline(own):
    """Every test here leaves the configuration as it found it (the master key of cluster.sh)."""
    yield own
    with own.admin() as c:
        c.execute("ALTER SYSTEM RESET ALL")
    own.reconfigure(kek_file=None, kek_command=None, kek_previous_file=None, kek_previous_command=None)


def test_restart_keeps_everything_decryptable(baseline):
    own = baseline
    t = uuid.uuid4()
    with own.app(t) as c:
        ct = encrypt(c, "survives a restart", "ctx")
    subprocess.run([CLUSTER, "restart", OWN_DIR], check=True)
    with own.app(t) as c:
        assert decrypt(c, ct, "ctx") == "survives a restart"
        assert version(c, encrypt(c, "after")) == 1


def test_master_key_change_rewraps_without_reencrypting(baseline, files):
    own = baseline
    tenants = [uuid.uuid4() for _ in range(3)]
    data = {}
    for t in tenants:
        with own.app(t) as c:
            data[t] = encrypt(c, f"data of {t}")
    with own.admin() as a:
        old_ids = {r[0] for r in a.execute("SELECT DISTINCT kek_id FROM tenant.keys WHERE kek_id IS NOT NULL")}
        wrapped_before = a.execute("SELECT count(*) FROM tenant.data_key WHERE wrapped IS NOT NULL").fetchone()[0]
    assert len(old_ids) == 1

    new_kek = f"{files}/new.kek"
    write_kek(new_kek)
    # new key current, old key previous: everything still decrypts during the transition
    own.reconfigure(kek_file=new_kek, kek_previous_file=own.kek_file)
    for t in tenants:
        with own.app(t) as c:
            assert decrypt(c, data[t]) == f"data of {t}"
    with own.admin() as a:
        assert a.execute("SELECT tenant.rewrap_keys()").fetchone()[0] == wrapped_before
        assert a.execute("SELECT tenant.rewrap_keys()").fetchone()[0] == 0
        new_ids = {r[0] for r in a.execute("SELECT DISTINCT kek_id FROM tenant.keys WHERE kek_id IS NOT NULL")}
    assert len(new_ids) == 1 and new_ids != old_ids
    # the old key is gone from the configuration: data keys unwrap with the new one alone
    own.reconfigure(kek_previous_file=None)
    for t in tenants:
        with own.app(t) as c:
            assert decrypt(c, data[t]) == f"data of {t}"
            assert c.execute("SELECT tenant.decrypt(%s) IS NOT NULL", (data[t],)).fetchone()[0]

    # a master key that wrapped nothing: clear errors, nothing rewrapped
    stranger = f"{files}/stranger.kek"
    write_kek(stranger)
    own.reconfigure(kek_file=stranger)
    with own.app(tenants[0]) as c:
        assert sqlstate(c, "SELECT tenant.decrypt(%s)", (data[tenants[0]],)) == (
            "58000", "the data key was wrapped by a master key that is not configured")
    with own.admin() as a:
        assert sqlstate(a, "SELECT tenant.rewrap_keys()") == (
            "58000", f"{wrapped_before} data keys are wrapped by a master key that is neither the current nor the "
                     "previous one")

    # and back to the cluster's own key, the same way
    own.reconfigure(kek_file=own.kek_file, kek_previous_file=new_kek)
    with own.admin() as a:
        assert a.execute("SELECT tenant.rewrap_keys()").fetchone()[0] == wrapped_before
        assert {r[0] for r in a.execute("SELECT DISTINCT kek_id FROM tenant.keys WHERE kek_id IS NOT NULL")} == old_ids


def test_master_key_providers_and_their_errors(baseline, files):
    own = baseline
    with open(own.kek_file) as f:
        current_hex = f.read().strip()

    def first_encryption():
        with own.app(uuid.uuid4()) as c:
            return sqlstate(c, "SELECT tenant.encrypt('x')")

    # the command provider: a stand-in for a KMS that prints the same key
    from pathlib import Path

    script = Path(files) / "kms.sh"
    script.write_text(f"#!/bin/sh\necho 'noise on stderr' >&2\nprintf '%s\\n' {current_hex}\n")
    script.chmod(0o755)
    own.reconfigure(kek_file="", kek_command=str(script))
    t = uuid.uuid4()
    with own.app(t) as c:
        ct = encrypt(c, "via the command")
    with own.app(t) as c:
        assert decrypt(c, ct) == "via the command"

    open_file = f"{files}/open.kek"
    write_kek(open_file, mode=0o644)
    garbage = Path(files) / "garbage.kek"
    garbage.write_text("not a key at all\n")
    garbage.chmod(0o600)
    if os.getuid() == 0:
        os.chown(garbage, owner_uid(), -1)
    cases = [
        ({"kek_command": "", "kek_file": ""}, "no master key is configured"),
        ({"kek_command": "exit 3", "kek_file": ""}, "the master key cannot be loaded: the master key command exited "
                                                    "with status 3"),
        ({"kek_command": "echo not-a-key", "kek_file": ""},
         "the master key cannot be loaded: the master key is not 32 bytes written as 64 hex digits or as base64"),
        ({"kek_command": "", "kek_file": f"{files}/missing.kek"},
         "the master key cannot be loaded: the master key file cannot be read (entity not found)"),
        ({"kek_command": "", "kek_file": open_file},
         "the master key cannot be loaded: the master key file has mode 0644; it must be readable by the server's "
         "OS user only (0600)"),
        ({"kek_command": "", "kek_file": str(garbage)},
         "the master key cannot be loaded: the master key is not 32 bytes written as 64 hex digits or as base64"),
        ({"kek_command": str(script), "kek_file": own.kek_file},
         "both tenant_guard.kek_file and tenant_guard.kek_command are set"),
    ]
    for settings, message in cases:
        own.reconfigure(**settings)
        assert first_encryption() == ("58000", message), settings
    # no key material reached the server log
    with open(OWN_DIR + "/server.log", errors="replace") as log:
        text = log.read()
    assert current_hex not in text and "not a key at all" not in text and "noise on stderr" not in text


def test_a_failing_previous_key_provider_fails_only_what_needs_it(baseline, files):
    own = baseline
    t = uuid.uuid4()
    with own.app(t) as c:
        current = encrypt(c, "wrapped by the current key")
    # a previous-key command that fails: data wrapped by the current key decrypts, in a fresh backend too
    own.reconfigure(kek_previous_command="exit 7")
    with own.app(t) as c:
        assert decrypt(c, current) == "wrapped by the current key"
        assert version(c, encrypt(c, "more")) == 1
    # data that needs the previous key fails clearly, naming the previous-key settings
    new_kek = f"{files}/new.kek"
    write_kek(new_kek)
    own.reconfigure(kek_file=new_kek)
    with own.app(t) as c:
        try:
            c.execute("SELECT tenant.decrypt(%s)", (current,))
            raise AssertionError("decrypted without the previous key")
        except psycopg.Error as e:
            assert (e.sqlstate, e.diag.message_primary) == (
                "58000", "the master key cannot be loaded: the master key command exited with status 7")
            assert e.diag.message_hint == "Check tenant_guard.kek_previous_file or tenant_guard.kek_previous_command."
    own.reconfigure(kek_previous_command=None, kek_previous_file=own.kek_file)
    with own.app(t) as c:
        assert decrypt(c, current) == "wrapped by the current key"


def test_A31_secret_bearing_settings_are_shown_to_superusers_only(baseline):
    own = baseline
    command = "VAULT_TOKEN=s.hunter2secret /usr/local/bin/fetch-kek"
    own.reconfigure(kek_previous_command=command)
    with own.admin() as a:
        a.execute("DROP ROLE IF EXISTS tg_monitor")
        a.execute("CREATE ROLE tg_monitor LOGIN IN ROLE pg_monitor")  # pg_read_all_settings, as monitoring agents
    try:
        hidden = "(hidden: shown to superusers only)"
        with psycopg.connect(dsn(port=OWN_PORT, user="tg_monitor"), autocommit=True) as m:
            for setting in ("kek_file", "kek_previous_command"):
                assert m.execute(f"SHOW tenant_guard.{setting}").fetchone() == (hidden,)
                assert m.execute(f"SELECT current_setting('tenant_guard.{setting}')").fetchone() == (hidden,)
            assert m.execute("SELECT count(*) FROM pg_settings WHERE name LIKE 'tenant_guard.kek%'").fetchone() == (0,)
            assert sqlstate(m, "SELECT * FROM pg_file_settings")[0] == "42501"
        with own.admin() as a:
            assert a.execute("SHOW tenant_guard.kek_previous_command").fetchone() == (command,)
            assert a.execute("SELECT check_name, object FROM tenant.audit() "
                             "WHERE check_name = 'credential_in_key_setting'").fetchall() == [
                ("credential_in_key_setting", "tenant_guard.kek_previous_command")]
        with open(OWN_DIR + "/server.log", errors="replace") as log:
            text = log.read()
        assert "hunter2" not in text
        assert 'parameter "tenant_guard.kek_previous_command" changed (its value is hidden by tenant_guard)' in text
    finally:
        with own.admin() as a:
            a.execute("DROP ROLE tg_monitor")


def test_hot_standby_encrypts_and_decrypts_but_creates_no_key(baseline):
    own = baseline
    standby_port = free_port()
    standby = f"{OWN_DIR}-standby"
    t, fresh = uuid.uuid4(), uuid.uuid4()
    with own.app(t) as c:
        ct = encrypt(c, "replicated", "ctx")
    run_as = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    subprocess.run(["rm", "-rf", standby], check=True)
    subprocess.run([*run_as, f"{BIN}/pg_basebackup", "-h", HOST, "-p", str(OWN_PORT), "-U", "postgres", "-D", standby,
                    "-R", "-X", "stream"], check=True)
    subprocess.run([*run_as, "sh", "-c", f"echo \"port = {standby_port}\nunix_socket_directories = '{standby}'\" "
                                         f">> {standby}/postgresql.auto.conf"], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUST_")}
    started = subprocess.run([*run_as, f"{BIN}/pg_ctl", "-D", standby, "-l", f"{standby}.log", "-w", "start"],
                             env=env, stdout=subprocess.DEVNULL)
    if started.returncode != 0:
        raise AssertionError("the standby did not start:\n" + open(f"{standby}.log").read()[-3000:])
    try:
        with psycopg.connect(dsn(port=standby_port), autocommit=True) as s:
            assert s.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        with tenant_conn(own.keys, t, port=standby_port) as c:
            assert decrypt(c, ct, "ctx") == "replicated"
            again = encrypt(c, "written on the standby", "ctx")
            assert decrypt(c, again, "ctx") == "written on the standby"
        with tenant_conn(own.keys, fresh, port=standby_port) as c:
            assert sqlstate(c, "SELECT tenant.encrypt('x')") == (
                "25006", "cannot create a data key in a read-only transaction")
        with psycopg.connect(dsn(port=standby_port), autocommit=True) as s:
            assert sqlstate(s, "SELECT tenant.rotate_key(%s)", (t,)) == (
                "25006", "cannot rotate a data key in a read-only transaction")
        # what the standby encrypted decrypts on the primary
        with own.app(t) as c:
            assert decrypt(c, again, "ctx") == "written on the standby"
    finally:
        subprocess.run([*run_as, f"{BIN}/pg_ctl", "-D", standby, "-m", "fast", "-w", "stop"], check=False,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", standby, f"{standby}.log"], check=False)
