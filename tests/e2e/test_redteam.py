"""Red-team regression suite: one scenario per attack, named after it, mapped to ../shared/reference/threats.md.

Section A (RLS bypasses and leaks, A1-A19) is tried against a real SaaS-shaped schema (see redteam.py), as an
application role that is NOSUPERUSER NOBYPASSRLS and owns nothing, and as the (NOLOGIN) table owner. Section B
(token attacks) uses real signed tokens (PyJWT, or raw signatures with the same keys where PyJWT refuses to build the
attack). Every scenario asserts the exact rows, SQLSTATEs and messages. docs/security-model.md maps each threat
to its scenarios. The escapes a later red team found (A20-A28) are in test_redteam_escapes.py.
"""

import base64
import hashlib
import hmac
import json
import os
import time
import uuid

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from redteam import (A, A_ORDERS, ALL_ORDERS, AUD, B, B_ORDERS, DB, ISS, NO_CONTEXT, SEALED, as_tenant, attacker,  # noqa: F401
                     b64url, begin_as, developer, dsn, fails, redteam_db, rows, su, superuser_orders)


# ---------------------------------------------------------------------------------------------------------------
# A1. GUC spoofing: the tenant comes only from a checked signature


def test_A1_set_config_of_an_app_setting_does_not_make_a_tenant(attacker):
    attacker.execute("SELECT set_config('app.current_tenant', %s, false)", (str(B),))
    assert fails(attacker, "SELECT id FROM app.orders") == NO_CONTEXT


def test_A1_set_local_of_an_unsigned_token_yields_no_tenant(attacker, keys):
    forged = raw_token({"alg": "none", "kid": "EdDSA"}, claims(B), b"")
    attacker.execute("BEGIN")
    attacker.execute(f"SET LOCAL tenant_guard.token = '{forged}'")
    assert fails(attacker, "SELECT id FROM app.orders") == NO_CONTEXT


def test_A1_claims_of_another_tenant_spliced_into_a_signed_token_fail_the_signature(attacker, keys):
    header, _, signature = keys.mint(A).split(".")
    spliced = f"{header}.{b64url(json.dumps(claims(B)).encode())}.{signature}"
    assert rejected(attacker, spliced) == "token signature does not verify"


def test_A1_set_config_of_the_token_setting_is_refused(attacker, keys):
    assert fails(attacker, "SELECT set_config('tenant_guard.token', %s, true)", (keys.mint(B),))[0] == "42501"


def test_A1_widening_the_clock_leeway_or_the_lifetime_cap_is_refused(attacker):
    assert fails(attacker, "SET tenant_guard.clock_skew = 300") == (
        "42501", 'permission denied to set parameter "tenant_guard.clock_skew"')
    assert fails(attacker, "SET tenant_guard.max_token_lifetime = 604800") == (
        "42501", 'permission denied to set parameter "tenant_guard.max_token_lifetime"')


# ---------------------------------------------------------------------------------------------------------------
# A2. Table owner bypass: FORCE ROW LEVEL SECURITY on every protected table


def test_A2_table_owner_sees_only_the_tenant_of_its_token(su, keys):
    su.execute("SET ROLE rt_owner")
    assert as_tenant(su, keys, A, "SELECT id, note FROM app.orders ORDER BY id") == A_ORDERS
    assert fails(su, "SELECT id FROM app.orders") == NO_CONTEXT


def test_A2_table_owner_cannot_switch_off_force_or_drop_the_policy(su):
    su.execute("SET ROLE rt_owner")
    assert fails(su, "ALTER TABLE app.orders NO FORCE ROW LEVEL SECURITY") == (
        "42501", "NO FORCE ROW LEVEL SECURITY is refused: table app.orders is protected by tenant_guard")
    assert fails(su, "DROP POLICY tenant_isolation ON app.orders") == (
        "42501", "DROP POLICY is refused: table app.orders is protected by tenant_guard")


# ---------------------------------------------------------------------------------------------------------------
# A3. Superusers and BYPASSRLS roles skip RLS: the audit lists every one that can log in


def test_A3_bypassrls_login_role_is_reported_by_the_audit(su):
    su.execute("CREATE ROLE rt_bypass LOGIN BYPASSRLS")
    try:
        found = [r[:3] for r in rows(su, "SELECT * FROM tenant.audit() WHERE object = 'rt_bypass'")]
        assert found == [("warning", "privileged_login_role", "rt_bypass")]
    finally:
        su.execute("DROP ROLE rt_bypass")


# ---------------------------------------------------------------------------------------------------------------
# A4. Owner-rights views


def test_A4_owner_rights_view_is_flagged_and_a_security_invoker_view_is_confined(su, attacker, keys):
    su.execute("CREATE VIEW app.all_orders AS SELECT tenant_id, id, note FROM app.orders")
    su.execute("CREATE VIEW app.my_orders WITH (security_invoker = true) AS SELECT id, note FROM app.orders")
    su.execute("GRANT SELECT ON app.all_orders, app.my_orders TO rt_app")
    try:
        # the leak the audit exists for: a superuser-owned plain view reads with its owner's rights
        assert len(as_tenant(attacker, keys, A, "SELECT * FROM app.all_orders")) == 5
        assert [r[:3] for r in rows(su, "SELECT * FROM tenant.audit() WHERE check_name = 'owner_rights_view'")] == [
            ("critical", "owner_rights_view", "app.all_orders")]
        assert as_tenant(attacker, keys, A, "SELECT id, note FROM app.my_orders ORDER BY id") == A_ORDERS
    finally:
        su.execute("DROP VIEW app.all_orders, app.my_orders")


# ---------------------------------------------------------------------------------------------------------------
# A5. SECURITY DEFINER functions


def test_A5_definer_function_of_a_bypassing_owner_is_flagged(su, attacker, keys):
    su.execute("CREATE FUNCTION app.count_orders() RETURNS bigint SECURITY DEFINER LANGUAGE sql "
               "AS 'SELECT count(*) FROM app.orders'")
    try:
        assert as_tenant(attacker, keys, A, "SELECT app.count_orders()") == [(5,)]  # the leak the audit finds
        assert [r[:3] for r in rows(su, "SELECT * FROM tenant.audit() WHERE check_name = 'definer_function'")] == [
            ("critical", "definer_function", "app.count_orders()")]
    finally:
        su.execute("DROP FUNCTION app.count_orders()")


def test_A5_definer_function_of_a_confined_owner_sees_only_the_callers_tenant(su, attacker, keys):
    su.execute("CREATE FUNCTION app.count_orders() RETURNS bigint SECURITY DEFINER LANGUAGE sql "
               "AS 'SELECT count(*) FROM app.orders'")
    su.execute("ALTER FUNCTION app.count_orders() OWNER TO rt_owner")
    try:
        assert as_tenant(attacker, keys, A, "SELECT app.count_orders()") == [(2,)]
        assert as_tenant(attacker, keys, B, "SELECT app.count_orders()") == [(3,)]
    finally:
        su.execute("DROP FUNCTION app.count_orders()")


# ---------------------------------------------------------------------------------------------------------------
# A6. TRUNCATE ignores RLS


def test_A6_truncate_is_refused_even_with_the_truncate_privilege(su, attacker, keys):
    su.execute("GRANT TRUNCATE ON app.orders TO rt_app")
    try:
        begin_as(attacker, keys, A)
        assert fails(attacker, "TRUNCATE app.orders") == (
            "42501", "TRUNCATE is refused: table app.orders is protected by tenant_guard")
        attacker.execute("COMMIT")
        assert superuser_orders(su) == ALL_ORDERS
    finally:
        su.execute("REVOKE TRUNCATE ON app.orders FROM rt_app")


def test_A6_truncate_cascade_by_the_owner_is_refused(su):
    su.execute("SET ROLE rt_owner")
    assert fails(su, "TRUNCATE app.customers CASCADE") == (
        "42501", "TRUNCATE is refused: table app.customers is protected by tenant_guard")
    su.execute("RESET ROLE")
    assert len(superuser_orders(su)) == 5


# ---------------------------------------------------------------------------------------------------------------
# A7 / A9. Unique-key oracles and ON CONFLICT


def test_A7_a_tenant_leading_unique_key_reveals_nothing_about_other_tenants(attacker, keys):
    begin_as(attacker, keys, A)
    assert rows(attacker, "INSERT INTO app.customers (id, email) VALUES (7, 'b3@x') RETURNING id") == [(7,)]
    attacker.execute("ROLLBACK")


def test_A7_a_global_unique_key_is_an_oracle_and_the_audit_flags_it(su, attacker, keys):
    su.execute("CREATE TABLE app.logins (tenant_id uuid, login text UNIQUE)")
    su.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.logins IS 'tenant_scoped'")
    su.execute("GRANT SELECT, INSERT ON app.logins TO rt_app")
    su.execute("INSERT INTO app.logins VALUES (%s, 'ceo')", (B,))
    try:
        begin_as(attacker, keys, A)
        assert fails(attacker, "INSERT INTO app.logins (login) VALUES ('ceo')")[0] == "23505"  # B has 'ceo'
        attacker.execute("ROLLBACK")
        assert [r[:3] for r in rows(su, "SELECT * FROM tenant.audit() WHERE check_name = 'unique_without_tenant'")] \
            == [("warning", "unique_without_tenant", "app.logins_login_key on app.logins")]
    finally:
        su.execute("DROP TABLE app.logins")


def test_A9_on_conflict_do_update_cannot_reach_another_tenants_row(su, attacker, keys):
    begin_as(attacker, keys, A)
    assert rows(attacker, "INSERT INTO app.customers (id, email) VALUES (3, 'mine@x') ON CONFLICT (tenant_id, id) "
                          "DO UPDATE SET email = 'hijacked' RETURNING tenant_id, id, email") == [(A, 3, "mine@x")]
    attacker.execute("ROLLBACK")
    assert rows(su, "SELECT email FROM app.customers WHERE tenant_id = %s AND id = 3", (B,)) == [("b3@x",)]


def test_A9_update_and_delete_returning_of_another_tenants_rows_return_nothing(su, attacker, keys):
    begin_as(attacker, keys, A)
    assert rows(attacker, "UPDATE app.orders SET note = 'x' WHERE tenant_id = %s RETURNING id", (B,)) == []
    assert rows(attacker, "DELETE FROM app.orders WHERE tenant_id = %s RETURNING id", (B,)) == []
    attacker.execute("COMMIT")
    assert superuser_orders(su) == ALL_ORDERS


# ---------------------------------------------------------------------------------------------------------------
# A8. Foreign keys: cross-tenant references


def test_A8_an_order_cannot_reference_another_tenants_customer(attacker, keys):
    begin_as(attacker, keys, A)  # A has no customer 3; B has
    assert fails(attacker, "INSERT INTO app.orders (id, customer_id) VALUES (9, 3)") == (
        "23503", 'insert or update on table "orders" violates foreign key constraint '
                 '"orders_tenant_id_customer_id_fkey"')


def test_A8_a_foreign_key_without_the_tenant_column_is_flagged(su):
    su.execute("ALTER TABLE app.customers ADD COLUMN code text UNIQUE")
    su.execute("ALTER TABLE app.orders ADD COLUMN customer_code text REFERENCES app.customers (code)")
    try:
        found = [r[:3] for r in rows(su, "SELECT * FROM tenant.audit() WHERE check_name = 'foreign_key_without_tenant'")]
        assert found == [("critical", "foreign_key_without_tenant", "orders_customer_code_fkey on app.orders")]
    finally:
        su.execute("ALTER TABLE app.orders DROP COLUMN customer_code")
        su.execute("ALTER TABLE app.customers DROP COLUMN code")


# ---------------------------------------------------------------------------------------------------------------
# A10. Missing WITH CHECK, permissive OR


def test_A10_insert_for_another_tenant_is_refused(attacker, keys):
    begin_as(attacker, keys, A)
    assert fails(attacker, "INSERT INTO app.orders (tenant_id, id, customer_id) VALUES (%s, 9, 1)", (B,)) == (
        "42501", 'new row violates row-level security policy for table "orders"')


def test_A10_moving_a_row_to_another_tenant_is_refused(attacker, keys):
    begin_as(attacker, keys, A)
    assert fails(attacker, "UPDATE app.orders SET tenant_id = %s WHERE id = 1", (B,)) == (
        "42501", 'new row violates row-level security policy for table "orders"')


def test_A10_a_permissive_true_policy_cannot_widen_the_tenant(su, attacker, keys):
    su.execute("CREATE POLICY anything ON app.orders USING (true) WITH CHECK (true)")
    try:
        begin_as(attacker, keys, A)
        assert rows(attacker, "SELECT id, note FROM app.orders ORDER BY id") == A_ORDERS
        assert fails(attacker, "INSERT INTO app.orders (tenant_id, id, customer_id) VALUES (%s, 9, 1)", (B,)) == (
            "42501", 'new row violates row-level security policy "tenant_isolation" for table "orders"')
        attacker.execute("ROLLBACK")
    finally:
        su.execute("DROP POLICY anything ON app.orders")


# ---------------------------------------------------------------------------------------------------------------
# A11. EXPLAIN ANALYZE row counts


EXPLAIN_REFUSED = ("42501", "EXPLAIN ANALYZE is refused: table app.orders is protected by tenant_guard")
PLAIN_EXPLAIN_REFUSED = ("42501", "EXPLAIN is refused: table app.orders is protected by tenant_guard")


def test_A11_explain_analyze_and_plain_explain_are_refused(su, attacker, developer, keys):
    begin_as(attacker, keys, A)
    assert fails(attacker, "EXPLAIN ANALYZE SELECT * FROM app.orders") == EXPLAIN_REFUSED
    assert fails(attacker, "EXPLAIN (ANALYZE, COSTS OFF) WITH o AS (SELECT * FROM app.orders) SELECT count(*) FROM o"
                 ) == EXPLAIN_REFUSED
    assert fails(attacker, "EXPLAIN (ANALYZE) SELECT 1 WHERE EXISTS (SELECT 1 FROM app.orders WHERE note = 'x')"
                 ) == EXPLAIN_REFUSED
    # plain EXPLAIN shows estimates from statistics over every tenant's rows (A21): refused by default too
    assert fails(attacker, "EXPLAIN SELECT * FROM app.orders") == PLAIN_EXPLAIN_REFUSED
    assert fails(attacker, "EXPLAIN (COSTS OFF) SELECT * FROM app.orders") == PLAIN_EXPLAIN_REFUSED
    assert len(rows(attacker, "EXPLAIN ANALYZE SELECT * FROM app.countries")) > 0  # unprotected: allowed
    attacker.execute("ROLLBACK")
    # a role a superuser allowed plain EXPLAIN (a developer role) gets estimates, never actual counts
    begin_as(developer, keys, A)
    plan = rows(developer, "EXPLAIN (COSTS OFF) SELECT * FROM app.orders")
    assert "actual" not in str(plan) and "orders" in str(plan)
    assert fails(developer, "EXPLAIN ANALYZE SELECT * FROM app.orders") == EXPLAIN_REFUSED
    developer.execute("ROLLBACK")
    assert len(rows(su, "EXPLAIN ANALYZE SELECT * FROM app.orders")) > 0  # superusers see everything anyway


def test_A11_explain_analyze_of_a_partition_or_a_prepared_statement_is_refused(attacker, keys):
    begin_as(attacker, keys, A)
    assert fails(attacker, "EXPLAIN ANALYZE SELECT * FROM app.events_b") == (
        "42501", "EXPLAIN ANALYZE is refused: table app.events_b is protected by tenant_guard")
    attacker.execute("PREPARE q11 AS SELECT * FROM app.orders")
    assert fails(attacker, "EXPLAIN ANALYZE EXECUTE q11") == EXPLAIN_REFUSED


# ---------------------------------------------------------------------------------------------------------------
# A12. Leaky functions in WHERE


def test_A12_a_leaky_function_in_where_never_sees_hidden_rows(su, attacker, keys):
    su.execute("""CREATE FUNCTION app.leak(v text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS
                  'BEGIN RAISE NOTICE ''leak: %'', v; RETURN true; END'""")
    su.execute("GRANT EXECUTE ON FUNCTION app.leak(text) TO rt_app")
    leaked = []
    attacker.add_notice_handler(lambda d: leaked.append(d.message_primary))
    try:
        assert as_tenant(attacker, keys, A, "SELECT id FROM app.orders WHERE app.leak(note) ORDER BY id") == [(1,), (2,)]
        assert sorted(leaked) == ["leak: a-order-1", "leak: a-order-2"]
    finally:
        su.execute("DROP FUNCTION app.leak(text)")


# ---------------------------------------------------------------------------------------------------------------
# A13. Connection pooling: nothing survives COMMIT or ROLLBACK


def test_A13_the_context_ends_at_commit(attacker, keys):
    assert as_tenant(attacker, keys, A, "SELECT count(*) FROM app.orders") == [(2,)]
    assert fails(attacker, "SELECT count(*) FROM app.orders") == NO_CONTEXT


def test_A13_the_context_ends_at_rollback(attacker, keys):
    begin_as(attacker, keys, A)
    attacker.execute("ROLLBACK")
    assert fails(attacker, "SELECT count(*) FROM app.orders") == NO_CONTEXT


def test_A13_a_session_set_of_an_app_setting_survives_commit_but_grants_nothing(attacker, keys):
    attacker.execute("SET app.current_tenant = %s" % f"'{B}'")
    as_tenant(attacker, keys, A, "SELECT 1")
    assert fails(attacker, "SELECT count(*) FROM app.orders") == NO_CONTEXT


def test_A13_session_scope_is_refused_for_a_pooled_role(su, keys):
    su.execute("ALTER ROLE rt_app SET tenant_guard.allow_session_scope = off")
    refused = ("42501", "a session-scoped tenant context is not allowed here (tenant_guard.allow_session_scope is off)")
    try:
        with psycopg.connect(dsn(user="rt_app", dbname=DB), autocommit=True) as c:
            assert fails(c, "SELECT tenant.authenticate(%s, 'session')", (keys.mint(A),)) == refused
            assert fails(c, f"SET tenant_guard.token = '{keys.mint(A)}'") == refused
            assert fails(c, f"SET SESSION tenant_guard.token = '{keys.mint(A)}'") == refused
            assert fails(c, "SET tenant_guard.allow_session_scope = on") == (
                "42501", 'permission denied to set parameter "tenant_guard.allow_session_scope"')
            c.execute("BEGIN")
            c.execute(f"SET LOCAL tenant_guard.token = '{keys.mint(A)}'")
            assert rows(c, "SELECT count(*) FROM app.orders") == [(2,)]
            c.execute("COMMIT")
            c.execute("RESET tenant_guard.token")
            assert fails(c, "SELECT count(*) FROM app.orders") == NO_CONTEXT
    finally:
        su.execute("ALTER ROLE rt_app RESET ALL")


def test_A13_a_holdable_cursor_cannot_carry_rows_past_commit(attacker, keys):
    begin_as(attacker, keys, A)
    assert fails(attacker, "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM app.orders") == (
        "42501", "DECLARE ... WITH HOLD is refused: table app.orders is protected by tenant_guard")
    attacker.execute("DECLARE c CURSOR FOR SELECT id FROM app.orders ORDER BY id")  # without HOLD: fine
    assert rows(attacker, "FETCH ALL FROM c") == [(1,), (2,)]
    attacker.execute("COMMIT")
    assert fails(attacker, "FETCH ALL FROM c") == ("34000", 'cursor "c" does not exist')


# ---------------------------------------------------------------------------------------------------------------
# A14. Plan caching


def test_A14_a_generic_prepared_plan_follows_the_tenant(attacker, keys):
    attacker.execute("SET plan_cache_mode = force_generic_plan")
    attacker.execute("PREPARE q14 AS SELECT id, note FROM app.orders ORDER BY id")
    for _ in range(3):
        assert as_tenant(attacker, keys, A, "EXECUTE q14") == A_ORDERS
        assert as_tenant(attacker, keys, B, "EXECUTE q14") == B_ORDERS


def test_A14_a_plpgsql_cached_plan_follows_the_tenant(su, attacker, keys):
    su.execute("CREATE FUNCTION app.notes() RETURNS SETOF text LANGUAGE plpgsql STABLE AS "
               "'BEGIN RETURN QUERY SELECT note FROM app.orders ORDER BY id; END'")
    su.execute("GRANT EXECUTE ON FUNCTION app.notes() TO rt_app")
    try:
        for _ in range(3):
            assert as_tenant(attacker, keys, A, "SELECT * FROM app.notes()") == [("a-order-1",), ("a-order-2",)]
            assert as_tenant(attacker, keys, B, "SELECT * FROM app.notes()") == [
                ("b-order-1",), ("b-order-2",), ("b-order-3",)]
    finally:
        su.execute("DROP FUNCTION app.notes()")


def test_A14_a_prepared_statement_across_a_rolled_back_savepoint(attacker, keys):
    attacker.execute("PREPARE q14s AS SELECT id, note FROM app.orders ORDER BY id")
    begin_as(attacker, keys, B)
    attacker.execute("SAVEPOINT s")
    assert rows(attacker, "EXECUTE q14s") == B_ORDERS
    attacker.execute("ROLLBACK TO SAVEPOINT s")
    assert rows(attacker, "EXECUTE q14s") == B_ORDERS
    attacker.execute("COMMIT")
    assert fails(attacker, "EXECUTE q14s") == NO_CONTEXT


# ---------------------------------------------------------------------------------------------------------------
# A15. Parallel workers


PARALLEL = ["SET parallel_setup_cost = 0", "SET parallel_tuple_cost = 0", "SET min_parallel_table_scan_size = 0",
            "SET max_parallel_workers_per_gather = 2", "SET enable_indexscan = off", "SET enable_bitmapscan = off"]


def test_A15_parallel_workers_see_the_callers_tenant(developer, keys):
    attacker = developer  # the app role, allowed EXPLAIN to check the plan
    for s in PARALLEL:
        attacker.execute(s)
    begin_as(attacker, keys, A)
    plan = str(rows(attacker, "EXPLAIN (COSTS OFF) SELECT count(*) FROM app.orders"))
    assert "Gather" in plan and "Parallel Seq Scan on orders" in plan
    assert rows(attacker, "SELECT count(*), array_agg(note ORDER BY note) FROM app.orders") == [
        (2, ["a-order-1", "a-order-2"])]
    attacker.execute("COMMIT")


def test_A15_a_parallel_plan_inside_a_savepoint_sees_the_callers_tenant(developer, keys):
    attacker = developer  # the app role, allowed EXPLAIN to check the plan
    for s in PARALLEL:
        attacker.execute(s)
    begin_as(attacker, keys, B)
    assert "Parallel Seq Scan on events" in str(rows(attacker, "EXPLAIN (COSTS OFF) SELECT count(*) FROM app.events"))
    attacker.execute("SAVEPOINT s1")
    assert fails(attacker, "SELECT 1/0 FROM app.orders")[0] == "22012"
    attacker.execute("SAVEPOINT s2")
    assert rows(attacker, "SELECT count(*) FROM app.events") == [(3,)]
    attacker.execute("RELEASE SAVEPOINT s2")
    assert rows(attacker, "SELECT array_agg(body ORDER BY body) FROM app.events") == [
        (["b-event-a", "b-event-b", "b-event-b2"],)]
    attacker.execute("COMMIT")


# ---------------------------------------------------------------------------------------------------------------
# A16. Subtransactions


def test_A16_a_context_set_in_a_rolled_back_savepoint_is_undone_and_the_seal_stays(attacker, keys):
    attacker.execute("BEGIN")
    attacker.execute("SAVEPOINT s")
    attacker.execute("SELECT tenant.authenticate(%s)", (keys.mint(A),))
    attacker.execute("ROLLBACK TO SAVEPOINT s")
    assert fails(attacker, "SELECT count(*) FROM app.orders") == NO_CONTEXT
    assert fails(attacker, "SELECT tenant.authenticate(%s)", (keys.mint(B),)) == SEALED


# ---------------------------------------------------------------------------------------------------------------
# A17. Role switching and definer code


def test_A17_set_role_after_authenticate_keeps_the_tenant(attacker, keys):
    begin_as(attacker, keys, A)
    attacker.execute("SET LOCAL ROLE rt_other")
    assert rows(attacker, "SELECT current_user, count(*) FROM app.orders") == [("rt_other", 2)]
    attacker.execute("COMMIT")


def test_A17_a_definer_function_calling_authenticate_cannot_switch_the_tenant(su, attacker, keys):
    su.execute("CREATE FUNCTION app.become(token text) RETURNS void SECURITY DEFINER LANGUAGE plpgsql "
               "SET search_path = pg_catalog AS 'BEGIN PERFORM tenant.authenticate(token); END'")
    su.execute("GRANT EXECUTE ON FUNCTION app.become(text) TO rt_app")
    try:
        begin_as(attacker, keys, A)
        assert rows(attacker, "SELECT count(*) FROM app.orders") == [(2,)]
        assert fails(attacker, "SELECT app.become(%s)", (keys.mint(B),)) == SEALED
        assert rows(attacker, "SELECT count(*) FROM app.orders") == [(2,)]
        attacker.execute("COMMIT")
    finally:
        su.execute("DROP FUNCTION app.become(text)")


def test_A17_a_definer_function_storing_a_forged_token_yields_no_tenant(su, attacker, keys):
    forged = raw_token({"alg": "none", "kid": "EdDSA"}, claims(B), b"")
    su.execute("CREATE FUNCTION app.forge(token text) RETURNS void SECURITY DEFINER LANGUAGE sql "
               "AS $$ SELECT set_config('tenant_guard.token', token, true) $$")
    su.execute("GRANT EXECUTE ON FUNCTION app.forge(text) TO rt_app")
    try:
        attacker.execute("BEGIN")
        attacker.execute("SELECT app.forge(%s)", (forged,))
        assert fails(attacker, "SELECT count(*) FROM app.orders") == NO_CONTEXT
    finally:
        attacker.execute("ROLLBACK")
        su.execute("DROP FUNCTION app.forge(text)")


def test_A17_an_owner_rights_view_of_a_confined_owner_stays_confined(su, attacker, keys):
    su.execute("CREATE VIEW app.owner_orders AS SELECT id, note FROM app.orders")
    su.execute("ALTER VIEW app.owner_orders OWNER TO rt_owner")
    su.execute("GRANT SELECT ON app.owner_orders TO rt_app")
    try:
        assert as_tenant(attacker, keys, A, "SELECT * FROM app.owner_orders ORDER BY id") == A_ORDERS
    finally:
        su.execute("DROP VIEW app.owner_orders")


# ---------------------------------------------------------------------------------------------------------------
# A18. Planner statistics


def test_A18_pg_stats_of_protected_tables_are_hidden_from_the_app_role(su, attacker):
    su.execute("ANALYZE app.orders")
    assert int(rows(su, "SHOW server_version_num")[0][0]) >= 150014
    assert rows(su, "SELECT count(*) > 0 FROM pg_stats WHERE schemaname = 'app' AND tablename = 'orders'") == [(True,)]
    assert rows(attacker, "SELECT count(*) FROM pg_stats WHERE schemaname = 'app' AND tablename = 'orders'") == [(0,)]


# ---------------------------------------------------------------------------------------------------------------
# A19. row_security = off


def test_A19_row_security_off_raises_instead_of_bypassing(attacker, keys):
    attacker.execute("SET row_security = off")
    begin_as(attacker, keys, A)
    assert fails(attacker, "SELECT count(*) FROM app.orders") == (
        "42501", 'query would be affected by row-level security policy for table "orders"')


# ---------------------------------------------------------------------------------------------------------------
# Combinations: CTEs, partitions, COPY, subqueries, logging


def test_a_writing_cte_cannot_reach_another_tenant(su, attacker, keys):
    assert as_tenant(attacker, keys, A, "WITH u AS (UPDATE app.orders SET note = note RETURNING tenant_id) "
                                        "SELECT tenant_id, count(*) FROM u GROUP BY 1") == [(A, 2)]
    assert superuser_orders(su) == ALL_ORDERS


def test_a_partition_queried_directly_is_confined(attacker, keys):
    assert as_tenant(attacker, keys, A, "SELECT body FROM app.events_b") == [("a-event-b",)]
    assert as_tenant(attacker, keys, B, "SELECT body FROM app.events_b ORDER BY body") == [
        ("b-event-b",), ("b-event-b2",)]


def test_a_detached_partition_stays_protected(su, attacker, keys):
    su.execute("ALTER TABLE app.events DETACH PARTITION app.events_b")
    try:
        assert as_tenant(attacker, keys, A, "SELECT body FROM app.events_b") == [("a-event-b",)]
        assert fails(attacker, "SELECT body FROM app.events_b") == NO_CONTEXT
    finally:
        su.execute("ALTER TABLE app.events ATTACH PARTITION app.events_b FOR VALUES IN ('b')")


def test_copy_to_exports_only_the_tenants_rows(attacker, keys):
    begin_as(attacker, keys, A)
    with attacker.cursor().copy("COPY app.orders (id, note) TO STDOUT") as copy:
        exported = b"".join(bytes(chunk) for chunk in copy)
    attacker.execute("COMMIT")
    assert sorted(exported.decode().splitlines()) == ["1\ta-order-1", "2\ta-order-2"]


def test_copy_from_into_a_protected_table_is_refused(attacker, keys):
    begin_as(attacker, keys, A)
    with pytest.raises(psycopg.Error) as e:
        with attacker.cursor().copy("COPY app.orders (tenant_id, id, customer_id) FROM STDIN") as copy:
            copy.write(f"{B}\t9\t1\n")
    assert (e.value.sqlstate, e.value.diag.message_primary) == (
        "0A000", "COPY FROM into app.orders is refused: the table is protected by tenant_guard")
    assert "INSERT ... VALUES" in e.value.diag.message_hint


def test_subqueries_and_joins_count_only_the_tenants_rows(attacker, keys):
    assert as_tenant(attacker, keys, B, """
        SELECT (SELECT count(*) FROM app.orders), (SELECT count(*) FROM app.customers),
               (SELECT count(*) FROM app.orders o JOIN app.customers c USING (tenant_id) WHERE c.id = o.customer_id)
        """) == [(3, 3, 3)]


def test_a_token_written_into_sql_never_reaches_the_server_log(su, keys):
    log = os.environ.get("TG_LOG")
    if not log:
        pytest.skip("TG_LOG is not set")
    literal, bound, failing = keys.mint(A), keys.mint(A), keys.mint(A, aud="someone-else")
    su.execute("ALTER ROLE rt_app SET log_statement = 'all'")
    su.execute("ALTER ROLE rt_app SET log_parameter_max_length = -1")
    try:
        with psycopg.connect(dsn(user="rt_app", dbname=DB), autocommit=True) as c:
            c.execute(f"SELECT tenant.authenticate('{literal}')")
            c.execute("SELECT tenant.authenticate(%s)", (bound,))
            c.execute("BEGIN")
            c.execute(f"SET LOCAL tenant_guard.token = '{literal}'")
            c.execute("ROLLBACK")
            assert fails(c, f"SELECT tenant.authenticate('{failing}')")[0] == "28000"  # logged with STATEMENT:
    finally:
        su.execute("ALTER ROLE rt_app RESET ALL")
    time.sleep(0.3)
    text = open(log, encoding="utf-8", errors="replace").read()
    for token in (literal, bound, failing):
        for part in token.split("."):
            assert part not in text
    assert "[token redacted by tenant_guard]" in text
    assert "STATEMENT:  SELECT tenant.authenticate('[token redacted by tenant_guard]')" in text


def test_a_bound_token_does_not_show_in_pg_stat_activity(su, attacker, keys, redteam_db):
    attacker.execute("BEGIN")
    attacker.execute("SELECT tenant.authenticate(%s)", (keys.mint(A),))
    seen = rows(su, "SELECT query FROM pg_stat_activity WHERE pid = %s", (attacker.info.backend_pid,))
    with psycopg.connect(dsn(user="rt_app", dbname=DB), autocommit=True) as spy:  # another session of the role
        refused = fails(spy, "SELECT query FROM pg_stat_activity WHERE pid = %s", (attacker.info.backend_pid,))
    attacker.execute("ROLLBACK")
    assert seen == [("SELECT tenant.authenticate($1)",)]
    assert refused == ("42501", "function pg_stat_get_activity is hidden from roles confined by tenant_guard")


# ---------------------------------------------------------------------------------------------------------------
# B. Token attacks (RFC 8725), with real signatures


def claims(tenant, **over):
    now = int(time.time())
    c = {"iss": ISS, "aud": AUD, "sub": "attacker", "tenant_id": str(tenant), "iat": now, "exp": now + 300}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def raw_token(header, payload, signature, header_text=None, payload_text=None):
    h = b64url((header_text or json.dumps(header)).encode())
    p = b64url((payload_text or json.dumps(payload)).encode())
    return f"{h}.{p}.{b64url(signature)}"


def signed_raw(keys, header_text, payload_text, alg="HS256", secret=None):
    """A token whose header and claims are exactly the given JSON text, validly signed."""
    signing_input = f"{b64url(header_text.encode())}.{b64url(payload_text.encode())}".encode()
    if alg == "HS256":
        sig = hmac.new(secret or keys.secret, signing_input, hashlib.sha256).digest()
    elif alg == "EdDSA":
        sig = keys.ed.sign(signing_input)
    else:
        raise ValueError(alg)
    return f"{signing_input.decode()}.{b64url(sig)}"


def rejected(conn, token):
    """The check named by the 28000 rejection of `token`; asserts no part of the token is echoed back."""
    try:
        conn.execute("SELECT tenant.authenticate(%s)", (token,))
    except psycopg.Error as e:
        assert e.sqlstate == "28000", (e.sqlstate, e.diag.message_primary)
        said = " ".join(filter(None, (e.diag.message_primary, e.diag.message_detail, e.diag.message_hint)))
        for part in token.split("."):
            assert len(part) < 8 or part not in said, "the rejection echoed the token"
        assert e.diag.message_primary.startswith("token rejected: ")
        return e.diag.message_primary.removeprefix("token rejected: ")
    raise AssertionError("the token was accepted")


def test_B_alg_none_and_a_stripped_signature_are_rejected(attacker, keys):
    assert rejected(attacker, raw_token({"alg": "none", "kid": "EdDSA"}, claims(A), b"")) == \
        'token algorithm "none" is never accepted'
    assert rejected(attacker, raw_token({"alg": "NoNe", "kid": "EdDSA"}, claims(A), b"")) == \
        'token algorithm "none" is never accepted'
    header, payload, _ = keys.mint(A).split(".")
    assert rejected(attacker, f"{header}.{payload}.") == "token signature does not verify"


def test_B_algorithm_confusion_hs256_with_the_rsa_public_key_as_secret(attacker, keys):
    pem = keys.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    token = signed_raw(keys, json.dumps({"alg": "HS256", "kid": "RS256"}), json.dumps(claims(A)), secret=pem)
    assert rejected(attacker, token) == "token algorithm does not match its key, which is bound to RS256"


@pytest.mark.parametrize("kid, why", [
    ("../../../../etc/passwd", "token kid does not name a key of its issuer (see tenant.issuers)"),
    ("EdDSA' OR '1'='1", "token kid does not name a key of its issuer (see tenant.issuers)"),
    ("eddsa", "token kid does not name a key of its issuer (see tenant.issuers)"),
    ("k" * 300, "token kid is not a string of at most 256 bytes"),
    (["EdDSA"], "token kid is not a string of at most 256 bytes"),
])
def test_B_kid_injection(attacker, keys, kid, why):
    header = json.dumps({"alg": "EdDSA", "kid": kid})  # PyJWT refuses to put a non-string kid in a header
    assert rejected(attacker, signed_raw(keys, header, json.dumps(claims(A)), alg="EdDSA")) == why


@pytest.mark.parametrize("param", ["jku", "x5u", "jwk", "x5c"])
def test_B_key_locating_headers_are_never_trusted(attacker, keys, param):
    value = {"jku": "https://evil.test/jwks", "x5u": "https://evil.test/cert",
             "jwk": {"kty": "oct", "k": b64url(b"x" * 32)}, "x5c": ["MIIB"]}[param]
    token = jwt.encode(claims(A), keys.ed, algorithm="EdDSA", headers={"kid": "EdDSA", param: value})
    assert rejected(attacker, token) == \
        f'token header parameter "{param}" is not accepted: keys come only from tenant.trust_issuer'


def test_B_crit_header_is_rejected(attacker, keys):
    token = jwt.encode(claims(A), keys.ed, algorithm="EdDSA", headers={"kid": "EdDSA", "crit": ["exp"]})
    assert rejected(attacker, token) == \
        "token header has a crit parameter; tenant_guard understands no critical extensions"


def test_B_time_claims(attacker, keys):
    now = int(time.time())
    assert rejected(attacker, keys.mint(A, exp=None)) == "token has no exp claim"
    assert rejected(attacker, keys.mint(A, iat=now - 400, exp=now - 60)) == "token has expired"
    assert rejected(attacker, keys.mint(A, nbf=now + 120)) == "token is not valid yet (nbf is in the future)"
    assert rejected(attacker, keys.mint(A, iat=now + 120, exp=now + 240)) == "token was issued in the future (iat)"
    assert rejected(attacker, keys.mint(A, exp=now + 7200)) == \
        "token lifetime exceeds tenant_guard.max_token_lifetime"
    assert rejected(attacker, keys.mint(A, exp=str(now + 60))) == "token claim exp has the wrong type"
    # within the 30 s leeway: accepted
    attacker.execute("SELECT tenant.authenticate(%s)", (keys.mint(A, iat=now - 100, exp=now - 10),))


def test_B_issuer_and_audience_must_match_exactly(attacker, keys):
    assert rejected(attacker, keys.mint(A, iss=ISS + "/")) == "token issuer is not trusted (see tenant.issuers)"
    assert rejected(attacker, keys.mint(A, iss=None)) == "token has no iss claim"
    assert rejected(attacker, keys.mint(A, aud="ORDERS-API")) == "token audience does not match its issuer's audience"
    assert rejected(attacker, keys.mint(A, aud=None)) == "token has no aud claim, but its issuer requires an audience"


def test_B_oversized_tokens_and_deep_nesting(attacker, keys):
    assert rejected(attacker, keys.mint(A, pad="x" * 9000)) == "token is longer than 8192 bytes"
    nested = {}
    for _ in range(20):
        nested = {"n": nested}
    assert rejected(attacker, keys.mint(A, deep=nested)) == "token claim set is nested too deeply"


def test_B_duplicate_json_member_names(attacker, keys):
    payload = json.dumps(claims(A))[:-1] + f', "tenant_id": "{B}"}}'  # a second tenant_id, validly signed
    token = signed_raw(keys, json.dumps({"alg": "EdDSA", "kid": "EdDSA"}), payload, alg="EdDSA")
    assert rejected(attacker, token) == "token claim set has a duplicate JSON member name"


def test_B_non_canonical_base64url(attacker, keys):
    header, payload, sig = keys.mint(A, alg="HS256").split(".")
    assert rejected(attacker, f"{header}=.{payload}.{sig}") == "token header is not canonical base64url without padding"
    assert rejected(attacker, f"{header}.{payload.replace('-', '+').replace('_', '/')}x.{sig}").startswith(
        "token claim set is not canonical")
    # HS256: 32 bytes are 43 characters; the last carries 2 unused bits, which must be zero
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    assert last & 3 == 0
    assert rejected(attacker, f"{header}.{payload}.{sig[:-1]}{alphabet[last | 1]}") == \
        "token signature is not canonical base64url without padding"
    assert rejected(attacker, f"{header}.{payload}.{sig} ") == "token signature is not canonical base64url without padding"


def test_B_es256_all_zero_psychic_signature_and_der_signatures(attacker, keys):
    header, payload, _ = keys.mint(A, alg="ES256").split(".")
    assert rejected(attacker, f"{header}.{payload}.{b64url(bytes(64))}") == "token signature does not verify"
    der = keys.ec.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))  # valid, but DER-encoded
    assert rejected(attacker, f"{header}.{payload}.{b64url(der)}") == \
        "ES256 signature must be exactly 64 bytes (R||S); DER-encoded signatures are not accepted"


def test_B_short_hs256_secrets_are_refused_when_trusting_an_issuer(su):
    jwks = {"keys": [{"kty": "oct", "kid": "weak", "k": b64url(b"s" * 16)}]}
    assert fails(su, "SELECT tenant.trust_issuer('https://weak.test', %s::jsonb)", (json.dumps(jwks),)) == (
        "22023", 'invalid key set: key 1 (kid "weak"): an HS256 secret must be at least 32 bytes')


def test_B_a_tenant_claim_in_uppercase_or_another_spelling_is_rejected(attacker, keys):
    for spelling in (str(A).upper(), "{" + str(A) + "}", str(A).replace("-", ""), "urn:uuid:" + str(A)):
        token = keys.mint(A, tenant_id=spelling)
        assert rejected(attacker, token) == 'token claim "tenant_id" is not a uuid in canonical form (lowercase, hyphenated)'


def test_B_a_token_of_another_issuer_signed_with_its_own_key_is_rejected(attacker, keys):
    from conftest import Keys
    stranger = Keys(suffix="")
    assert rejected(attacker, stranger.mint(A)) == "token signature does not verify"
