"""Loading: the library must be preloaded, and says how to fix it when it is not."""

import os
import subprocess

import psycopg
from conftest import HOST, free_port

CLUSTER = os.path.join(os.path.dirname(__file__), "..", "support", "cluster.sh")


def test_create_extension_without_preload_names_the_fix():
    port = free_port()
    data = f"/tmp/tenant_guard-nopreload-{port}"
    env = dict(os.environ, TG_PRELOAD="")
    subprocess.run([CLUSTER, "stop", data], check=True)
    subprocess.run([CLUSTER, "start", data, str(port)], check=True, env=env, stdout=subprocess.DEVNULL)
    try:
        with psycopg.connect(host=HOST, port=port, user="postgres", dbname="postgres", autocommit=True) as c:
            try:
                c.execute("CREATE EXTENSION tenant_guard")
                raise AssertionError("CREATE EXTENSION succeeded without preload")
            except psycopg.Error as e:
                assert e.sqlstate == "55000"
                assert e.diag.message_primary == "tenant_guard must be loaded through shared_preload_libraries"
                assert "shared_preload_libraries" in e.diag.message_hint and "restart" in e.diag.message_hint
            try:
                c.execute("LOAD 'tenant_guard'")
                raise AssertionError("LOAD succeeded without preload")
            except psycopg.Error as e:
                assert e.sqlstate == "55000"
            # nothing was left half-created
            assert c.execute("SELECT count(*) FROM pg_extension WHERE extname = 'tenant_guard'").fetchone()[0] == 0
            assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant'").fetchone()[0] == 0
    finally:
        subprocess.run([CLUSTER, "stop", data], check=True)
