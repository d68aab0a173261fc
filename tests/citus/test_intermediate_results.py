"""Citus's intermediate results (a CTE's rows passed between the steps of a distributed query) belong to one
distributed transaction: another session cannot read or write them by giving itself that transaction's id (red
team, round 3: the application role read another tenant's rows that way, without a token)."""

import psycopg
import pytest

from conftest import OWNER, PORT, TENANT_A, TENANT_B, WORKERS, app_conn, connect, fill, make_table, mint, rows, sqlstate

CTE = ("WITH c AS MATERIALIZED (SELECT tenant_id, item FROM ir_orders ORDER BY item LIMIT 100) "
       "SELECT count(*) FROM c JOIN ir_local l ON l.tenant_id = c.tenant_id AND l.item = c.item")


@pytest.fixture(scope="module")
def tables(cluster):
    with connect(user=OWNER) as owner:
        make_table(owner, "ir_orders")
        owner.execute("DROP TABLE IF EXISTS ir_local")
        owner.execute("CREATE TABLE ir_local (tenant_id uuid NOT NULL, item text)")
        owner.execute("SECURITY LABEL FOR tenant_guard ON TABLE ir_local IS 'tenant_scoped'")
        owner.execute("GRANT SELECT, INSERT ON ir_local TO tg_app")
    fill("ir_orders")
    for tenant, prefix in ((TENANT_A, "a"), (TENANT_B, "b")):
        with app_conn() as c, c.transaction():
            c.execute("SELECT tenant.authenticate(%s)", (mint(tenant),))
            c.execute("INSERT INTO ir_local (item) VALUES (%s), (%s)", (f"{prefix}0", f"{prefix}1"))


def test_a_query_with_intermediate_results_works(tables):
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
        assert rows(c, CTE) == [(2,)]
    with app_conn() as c:   # a single-statement transaction, a session token
        c.execute("SELECT tenant.authenticate(%s, 'session')", (mint(TENANT_A),))
        assert rows(c, CTE) == [(2,)]


def test_another_session_cannot_read_them(tables):
    with app_conn() as victim, app_conn() as attacker:
        victim.execute("BEGIN")
        victim.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
        assert rows(victim, CTE) == [(2,)]   # B's rows are now in an intermediate result of this transaction
        number, stamp = rows(victim, "SELECT transaction_number, transaction_stamp FROM get_current_transaction_id()")[0]
        with attacker.transaction():
            attacker.execute("SELECT assign_distributed_transaction_id(0, %s, %s)", (number, stamp))
            assert sqlstate(attacker, "SELECT * FROM read_intermediate_result('1_1', 'binary') "
                                      "AS r(tenant_id uuid, item text)") == "42501"
            # nor with a tenant of its own, nor with a ticket it made up
            attacker.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
            attacker.execute("SET LOCAL tenant_guard.citus_ticket = '" + "0" * 64 + "'")
            assert sqlstate(attacker, "SELECT * FROM read_intermediate_result('1_1', 'binary') "
                                      "AS r(tenant_id uuid, item text)") == "42501"
            assert sqlstate(attacker, "SELECT broadcast_intermediate_result('1_1', 'SELECT 1')") == "42501"
        victim.execute("COMMIT")


def test_nor_on_a_worker(tables):
    with app_conn() as victim, app_conn(WORKERS[0]) as attacker:
        victim.execute("BEGIN")
        victim.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
        rows(victim, CTE)
        number, stamp = rows(victim, "SELECT transaction_number, transaction_stamp FROM get_current_transaction_id()")[0]
        with attacker.transaction():
            attacker.execute("SELECT assign_distributed_transaction_id(0, %s, %s)", (number, stamp))
            assert sqlstate(attacker, "SELECT * FROM read_intermediate_result('1_1', 'binary') "
                                      "AS r(tenant_id uuid, item text)") == "42501"
        victim.execute("COMMIT")


def job_files(port, number):
    """The result ids of distributed transaction `number`'s intermediate results on node `port` (as a superuser)."""
    with connect(port) as su:
        for (d,) in rows(su, "SELECT pg_ls_dir('base/pgsql_job_cache')"):
            if d.endswith(f"_0_{number}"):
                return [f.removesuffix(".data")
                        for (f,) in rows(su, "SELECT pg_ls_dir(%s)", (f"base/pgsql_job_cache/{d}",))]
    return []


def copy_error(conn, sql, data=None):
    """The SQLSTATE a COPY fails with (None when it runs)."""
    try:
        with conn.transaction():
            with conn.cursor().copy(sql) as copy:
                if data is not None:
                    copy.write(data)
                else:
                    for _ in copy:
                        pass
    except psycopg.Error as e:
        return e.sqlstate
    return None


@pytest.mark.parametrize("node", ["coordinator", "worker"])
def test_copy_in_result_format_is_refused_too(tables, node):
    """Citus also serves intermediate results through COPY ... WITH (format result), a statement and no function
    call (red team, round 4: the app role, without a token, read and replaced another tenant's results)."""
    join = ("WITH c AS MATERIALIZED (SELECT item FROM ir_orders ORDER BY item LIMIT 100) "
            "SELECT count(*) FROM ir_orders o LEFT JOIN c USING (item)")
    with app_conn() as victim:
        victim.execute("BEGIN")
        victim.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
        rows(victim, CTE if node == "coordinator" else join)
        number, stamp = rows(victim, "SELECT transaction_number, transaction_stamp FROM get_current_transaction_id()")[0]
        found = [(p, f) for p in ((PORT,) if node == "coordinator" else WORKERS) for f in job_files(p, number)]
        assert found, "the victim's query left no intermediate result on the " + node
        port, result = found[0]
        with app_conn(port) as attacker, attacker.transaction():
            attacker.execute("SELECT assign_distributed_transaction_id(0, %s, %s)", (number, stamp))
            assert copy_error(attacker, f'COPY "{result}" TO STDOUT WITH (format result)') == "42501"
            assert copy_error(attacker, f'COPY "{result}" FROM STDIN WITH (FORMAT RESULT)', b"") == "42501"
            assert sqlstate(attacker, "SELECT * FROM worker_partition_query_result('1_9', 'SELECT 1', 0, "
                                      "'hash', '{-2147483648}'::text[], '{2147483647}'::text[], true)") == "42501"
        victim.execute("COMMIT")


def test_the_coordinator_mints_no_ticket_for_a_transaction_id_the_session_gave_itself(tables):
    """A ticket for an assigned id would open another transaction's results on the workers (red team, round 4)."""
    with app_conn() as victim, app_conn() as attacker:
        victim.execute("BEGIN")
        victim.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
        rows(victim, CTE)
        number, stamp = rows(victim, "SELECT transaction_number, transaction_stamp FROM get_current_transaction_id()")[0]
        with attacker.transaction():
            attacker.execute("SELECT assign_distributed_transaction_id(0, %s, %s)", (number, stamp))
            attacker.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
            attacker.execute("SET LOCAL citus.log_remote_commands = on")
            notices = []
            attacker.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            assert sqlstate(attacker, "SELECT o.item, r.item FROM ir_orders o "
                                      "JOIN read_intermediate_result('1_1', 'binary') AS r(item text) ON true") \
                == "42501"
            assert not any("citus_ticket" in n for n in notices)
        victim.execute("COMMIT")
