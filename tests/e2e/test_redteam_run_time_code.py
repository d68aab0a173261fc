"""Red-team suite: the owner's code that PostgreSQL picks at run time, and what it may leave behind (threats A43,
A46; red team of issue 16).

- A46: casts and operators over a type a protected table's column has run on that column's values whenever a query
  converts or compares them (`to_jsonb`, `row_to_json`, `::text`, `=`), in each tenant's statements and in an
  administrator's export: the owner may not add them, nor give a protected table a column of a type that has them.
- A43: the owner's code reached by an administrator runs as the owner, as a restricted operation, and nothing it
  sets outlives it: no session setting (a search_path naming the owner's schema) stays in the administrator's session.

Schema and fixtures: redteam.py. The owner's functions write to a log table that must stay empty.
"""

import psycopg
import pytest

from redteam import (A, B, DB, attacker, dsn, fails, owner, redteam_db, rows, su)  # noqa: F401

CODE = "{} is refused: {}, which calls function {} would run over every tenant's rows of table {}"


@pytest.fixture
def spy(owner, su):
    """An enum of the owner's, and a function that writes what it is given to the owner's log."""
    owner.execute("CREATE TABLE app.rt46_log (v text)")
    owner.execute("GRANT INSERT ON app.rt46_log TO PUBLIC")
    owner.execute("CREATE TYPE app.rt46_flag AS ENUM ('plain', 'gold')")
    owner.execute("CREATE FUNCTION app.rt46_json(app.rt46_flag) RETURNS json LANGUAGE plpgsql AS "
                  "$$ BEGIN INSERT INTO app.rt46_log VALUES ($1::text); RETURN '\"x\"'; END $$")
    owner.execute("CREATE FUNCTION app.rt46_eq(app.rt46_flag, app.rt46_flag) RETURNS boolean LANGUAGE plpgsql AS "
                  "$$ BEGIN INSERT INTO app.rt46_log VALUES ($1::text); RETURN $1::text = $2::text; END $$")
    try:
        yield owner
    finally:
        assert rows(su, "SELECT count(*) FROM app.rt46_log") == [(0,)], "the owner's code saw values"
        su.execute("ALTER TABLE app.orders DROP COLUMN IF EXISTS flag")
        su.execute("DROP TABLE app.rt46_log; DROP TYPE app.rt46_flag CASCADE")


def test_A46_no_cast_over_the_type_of_a_protected_column(spy):
    spy.execute("ALTER TABLE app.orders ADD COLUMN flag app.rt46_flag")
    assert fails(spy, "CREATE CAST (app.rt46_flag AS json) WITH FUNCTION app.rt46_json(app.rt46_flag)") == (
        "42501", CODE.format("CREATE CAST", "column flag", "app.rt46_json(app.rt46_flag)", "app.orders"))


def test_A46_no_operator_over_the_type_of_a_protected_column(spy):
    spy.execute("ALTER TABLE app.orders ADD COLUMN flag app.rt46_flag")
    assert fails(spy, "CREATE OPERATOR app.=== (LEFTARG = app.rt46_flag, RIGHTARG = app.rt46_flag, "
                      "FUNCTION = app.rt46_eq)") == (
        "42501", CODE.format("CREATE OPERATOR", "column flag", "app.rt46_eq(app.rt46_flag,app.rt46_flag)",
                             "app.orders"))


def test_A46_no_protected_column_of_a_type_that_has_a_cast(spy):
    spy.execute("CREATE CAST (app.rt46_flag AS json) WITH FUNCTION app.rt46_json(app.rt46_flag)")
    assert fails(spy, "ALTER TABLE app.orders ADD COLUMN flag app.rt46_flag") == (
        "42501", CODE.format("ALTER TABLE", "column flag", "app.rt46_json(app.rt46_flag)", "app.orders"))


def test_A46_the_audit_names_a_cast_an_administrator_left_on_a_protected_column(spy, su):
    su.execute("ALTER TABLE app.orders ADD COLUMN flag app.rt46_flag")
    su.execute("CREATE CAST (app.rt46_flag AS json) WITH FUNCTION app.rt46_json(app.rt46_flag)")
    try:
        found = rows(su, "SELECT severity, check_name FROM tenant.audit() "
                         "WHERE object = 'column flag on app.orders' AND detail LIKE 'calls app.rt46_json(%'")
        assert found == [("critical", "untrusted_code")]
    finally:
        su.execute("DROP CAST (app.rt46_flag AS json)")


@pytest.fixture
def seeded(owner, su):
    """A trigger of the owner's on a table administrators seed (app.countries), whose function tries to leave
    something in the administrator's session."""
    owner.execute("CREATE TABLE app.rt43_log (v text)")
    owner.execute("GRANT INSERT ON app.rt43_log TO PUBLIC")
    try:
        yield owner
    finally:
        su.execute("DROP TRIGGER IF EXISTS rt43b ON app.countries; DROP FUNCTION IF EXISTS app.rt43b_hook() CASCADE")
        su.execute("DELETE FROM app.countries; DROP TABLE app.rt43_log")


@pytest.mark.parametrize("setting", [
    "search_path', 'app, pg_catalog",
    "statement_timeout', '1",
    "application_name', 'owned",
])
def test_A43_nothing_the_owners_code_sets_outlives_it_in_an_administrators_session(seeded, su, setting):
    seeded.execute("CREATE FUNCTION app.rt43b_hook() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   f"PERFORM set_config('{setting}', false); RETURN NEW; END $$")
    seeded.execute("CREATE TRIGGER rt43b BEFORE INSERT ON app.countries FOR EACH ROW EXECUTE FUNCTION "
                   "app.rt43b_hook()")
    name = setting.split("'")[0]
    before = rows(su, f"SHOW {name}")
    assert fails(su, "INSERT INTO app.countries VALUES ('FR')") == (
        "42501", "set_config() is refused: code of a table owner, run on an administrator's behalf, leaves nothing in "
                 "the administrator's session")
    assert rows(su, f"SHOW {name}") == before


def test_A43_the_owners_code_reached_by_an_administrator_makes_no_temporary_object(seeded, su):
    seeded.execute("CREATE FUNCTION app.rt43b_hook() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "CREATE TEMP TABLE countries (code text); RETURN NEW; END $$")
    seeded.execute("CREATE TRIGGER rt43b BEFORE INSERT ON app.countries FOR EACH ROW EXECUTE FUNCTION "
                   "app.rt43b_hook()")
    assert fails(su, "INSERT INTO app.countries VALUES ('FR')") == (
        "42501", "cannot create temporary table within security-restricted operation")


@pytest.mark.parametrize("body", [
    "PERFORM set_config('search_path', 'app, pg_catalog', false)",
    "PERFORM set_config('search_path', 'app, pg_catalog', true)",
    "SET search_path = app, pg_catalog",
    "SET LOCAL search_path = app, pg_catalog",
])
def test_A43_the_owners_code_with_a_set_clause_changes_no_setting_for_an_administrator(seeded, su, body):
    """A SET clause (the recommended form of SECURITY DEFINER) keeps working; a plain SET inside it would outlive
    the function, so the owner's code changes no setting while it runs for an administrator."""
    seeded.execute("CREATE FUNCTION app.rt43b_hook() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                   f"SET search_path = pg_catalog AS $$ BEGIN {body}; RETURN NEW; END $$")
    seeded.execute("CREATE TRIGGER rt43b BEFORE INSERT ON app.countries FOR EACH ROW EXECUTE FUNCTION "
                   "app.rt43b_hook()")
    before = rows(su, "SHOW search_path")
    what = "set_config()" if "set_config" in body else "SET"
    assert fails(su, "INSERT INTO app.countries VALUES ('FR')") == (
        "42501", f"{what} is refused: code of a table owner, run on an administrator's behalf, leaves nothing in the "
                 "administrator's session")
    assert rows(su, "SHOW search_path") == before
    # the application's own statements are not the administrator's: its owner's function may set what it likes
    seeded.execute("DROP TRIGGER rt43b ON app.countries")


def test_A43_a_set_clause_alone_is_fine(seeded, su):
    seeded.execute("CREATE FUNCTION app.rt43b_hook() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                   "SET search_path = pg_catalog AS $$ BEGIN INSERT INTO app.rt43_log VALUES (NEW.code); "
                   "RETURN NEW; END $$")
    seeded.execute("CREATE TRIGGER rt43b BEFORE INSERT ON app.countries FOR EACH ROW EXECUTE FUNCTION "
                   "app.rt43b_hook()")
    su.execute("INSERT INTO app.countries VALUES ('FR')")
    assert rows(su, "SELECT v FROM app.rt43_log") == [("FR",)]


def test_A43_the_owners_code_run_for_an_administrator_takes_no_session_lock(seeded, su):
    seeded.execute("CREATE FUNCTION app.rt43b_hook() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "PERFORM pg_advisory_lock(42); RETURN NEW; END $$")
    seeded.execute("CREATE TRIGGER rt43b BEFORE INSERT ON app.countries FOR EACH ROW EXECUTE FUNCTION "
                   "app.rt43b_hook()")
    assert fails(su, "INSERT INTO app.countries VALUES ('FR')") == (
        "42501", "pg_advisory_lock() is refused: code of a table owner, run on an administrator's behalf, leaves "
                 "nothing in the administrator's session")
    assert rows(su, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()") == [(0,)]


# ---------------------------------------------------------------------------------------------------------------
# A43, PostgreSQL's own functions written into the owner's expressions (red team round 12)


REACHES = ("42501", "an administrator's statement is refused: {}, of a role that is not an administrator, calls {} "
                    "in its expressions")


@pytest.fixture
def owned(owner, su):
    yield owner
    su.execute("DROP VIEW IF EXISTS app.rt48_v; DROP TABLE IF EXISTS app.rt48 CASCADE")


@pytest.mark.parametrize("ddl, statement, function", [
    ("CREATE TABLE app.rt48 (code text, loot text DEFAULT query_to_xml('select 1', false, false, '')::text)",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "query_to_xml(text,boolean,boolean,text)"),
    ("CREATE TABLE app.rt48 (code text CHECK (set_config('work_mem', '77kB', false) IS NOT NULL))",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "set_config(text,text,boolean)"),
    ("CREATE TABLE app.rt48 (code text); CREATE RULE rt48 AS ON INSERT TO app.rt48 DO ALSO "
     "SELECT set_config('statement_timeout', '1234', false)",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "set_config(text,text,boolean)"),
    ("CREATE TABLE app.rt48 (code text); CREATE VIEW app.rt48_v AS "
     "SELECT code, set_config('application_name', 'owned', false) AS s FROM app.rt48",
     "SELECT * FROM app.rt48_v", "set_config(text,text,boolean)"),
    ("CREATE TABLE app.rt48 (code text, f text DEFAULT pg_read_file('/etc/hostname'))",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "pg_read_file(text)"),
    ("CREATE TABLE app.rt48 (id int, code text) PARTITION BY LIST (id); "
     "CREATE TABLE app.rt48_1 PARTITION OF app.rt48 FOR VALUES IN (1); "
     "ALTER TABLE app.rt48_1 ADD CONSTRAINT c CHECK (set_config('work_mem', '77kB', false) IS NOT NULL)",
     "INSERT INTO app.rt48 VALUES (1, 'FR')", "set_config(text,text,boolean)"),
    ("CREATE TABLE app.rt48 (code text, f text DEFAULT current_setting('data_directory'))",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "current_setting(text)"),
    ("CREATE TABLE app.rt48 (code text, f boolean DEFAULT pg_cancel_backend(0))",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "pg_cancel_backend(integer)"),
], ids=["default runs a query", "check sets", "rule sets", "view sets", "superuser-only function",
        "a partition's check", "reads a setting", "signals a session"])
def test_A43_an_administrator_does_not_run_the_owners_expressions_with_its_rights(owned, su, ddl, statement,
                                                                                   function):
    owned.execute(ddl)
    owned.execute("GRANT ALL ON ALL TABLES IN SCHEMA app TO PUBLIC")
    relation = "app.rt48_v" if "VIEW" in ddl else "app.rt48_1" if "PARTITION OF" in ddl else "app.rt48"
    settings = rows(su, "SELECT current_setting('work_mem'), current_setting('statement_timeout'), "
                        "current_setting('application_name')")
    assert fails(su, statement) == (REACHES[0], REACHES[1].format(relation, function))
    assert rows(su, "SELECT current_setting('work_mem'), current_setting('statement_timeout'), "
                    "current_setting('application_name')") == settings


# ---------------------------------------------------------------------------------------------------------------
# A43, the functions that are neither the owner's nor PostgreSQL's, and the code the owner's code reaches (round 14)


@pytest.fixture
def admin_made(su):
    """Functions an administrator made: two extensions', one of the DBA's own that runs what it is given, one SECURITY
    DEFINER helper."""
    su.execute('CREATE EXTENSION IF NOT EXISTS dblink; CREATE EXTENSION IF NOT EXISTS "uuid-ossp"')
    su.execute("CREATE FUNCTION public.rt48_run(q text) RETURNS text LANGUAGE plpgsql AS "
               "$$ BEGIN EXECUTE q; RETURN 'ran'; END $$")
    su.execute("CREATE FUNCTION public.rt48_stamp() RETURNS text LANGUAGE sql SECURITY DEFINER "
               "SET search_path = pg_catalog AS $$ SELECT 'stamped' $$")
    yield su
    su.execute("DROP TABLE IF EXISTS app.rt48_log; DROP AGGREGATE IF EXISTS app.rt48_agg(text, boolean); "
               "DROP FUNCTION public.rt48_run(text), public.rt48_stamp(); "
               'DROP EXTENSION dblink; DROP EXTENSION "uuid-ossp"')


@pytest.mark.parametrize("ddl, statement, relation, function", [
    ("CREATE TABLE app.rt48 (code text, f text DEFAULT dblink_exec('dbname=postgres', 'CREATE ROLE rt48_x'))",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "app.rt48", "public.dblink_exec(text,text)"),
    ("CREATE TABLE app.rt48 (code text, f boolean DEFAULT tenant.revoke_token('an honest jti'))",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "app.rt48", "tenant.revoke_token(text)"),
    ("CREATE TABLE app.rt48 (code text, f text DEFAULT public.rt48_run('ALTER ROLE rt48_x SUPERUSER'))",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "app.rt48", "public.rt48_run(text)"),
    ("CREATE TABLE app.rt48 (code text, f bytea DEFAULT lo_get(1))",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "app.rt48", "lo_get(oid)"),
    ("CREATE AGGREGATE app.rt48_agg(text, boolean) (SFUNC = set_config, STYPE = text, INITCOND = 'work_mem'); "
     "CREATE TABLE app.rt48 (code text); CREATE VIEW app.rt48_v AS SELECT app.rt48_agg(code, false) FROM app.rt48",
     "SELECT * FROM app.rt48_v", "app.rt48_v", "set_config(text,text,boolean)"),
    ("CREATE TABLE app.rt48 (code text); CREATE TABLE app.rt48_log (s text); "
     "CREATE RULE rt48 AS ON INSERT TO app.rt48 DO ALSO "
     "INSERT INTO app.rt48_log SELECT setting FROM pg_settings WHERE name = 'data_directory'",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "app.rt48", "pg_show_all_settings()"),
    ("CREATE TABLE app.rt48 (code text); CREATE TABLE app.rt48_log (s text); "
     "CREATE RULE rt48 AS ON INSERT TO app.rt48 DO ALSO "
     "INSERT INTO app.rt48_log SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'orders'",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "app.rt48", "has_column_privilege(oid,smallint,text)"),
], ids=["an extension runs a query", "tenant_guard's API", "an administrator's own function", "a large object",
        "an aggregate's step", "a rule reads settings through a catalog view",
        "a rule reads sampled values through a catalog view"])
def test_A43_an_administrator_does_not_run_other_code_the_owner_names_with_its_rights(admin_made, owned, su, ddl,
                                                                                       statement, relation, function):
    owned.execute(ddl)
    owned.execute("GRANT ALL ON ALL TABLES IN SCHEMA app TO PUBLIC")
    revoked = rows(su, "SELECT count(*) FROM tenant.revoked_token")
    assert fails(su, statement) == (REACHES[0], REACHES[1].format(relation, function))
    assert rows(su, "SELECT count(*) FROM pg_roles WHERE rolname = 'rt48_x'") == [(0,)]
    assert rows(su, "SELECT count(*) FROM tenant.revoked_token") == revoked


def test_A43_an_administrator_runs_listed_extensions_and_security_definer_helpers(admin_made, owned, su):
    owned.execute("CREATE TABLE app.rt48 (code text, id uuid DEFAULT uuid_generate_v4(), "
                  "stamp text DEFAULT public.rt48_stamp())")
    owned.execute("GRANT ALL ON app.rt48 TO PUBLIC")
    su.execute("INSERT INTO app.rt48 (code) VALUES ('FR')")
    assert rows(su, "SELECT code, id IS NOT NULL, stamp FROM app.rt48") == [("FR", True, "stamped")]
    # uuid-ossp is listed by default; without it, its function is refused like any other extension's
    su.execute("SET tenant_guard.admin_reach_extensions = 'pgcrypto'")
    assert fails(su, "INSERT INTO app.rt48 (code) VALUES ('DE')") == (
        REACHES[0], REACHES[1].format("app.rt48", "public.uuid_generate_v4()"))
    # listing an extension does not let through a function that runs a query
    owned.execute("CREATE TABLE app.rt48_log (s text, f text DEFAULT dblink_exec('dbname=postgres', 'SELECT 1'))")
    owned.execute("GRANT ALL ON app.rt48_log TO PUBLIC")
    su.execute("SET tenant_guard.admin_reach_extensions = 'dblink,uuid-ossp'")
    assert fails(su, "INSERT INTO app.rt48_log (s) VALUES ('DE')") == (
        REACHES[0], REACHES[1].format("app.rt48_log", "public.dblink_exec(text,text)"))
    su.execute("RESET tenant_guard.admin_reach_extensions")


def test_A43_only_superusers_choose_the_extensions_an_administrator_runs(owner):
    assert fails(owner, "SET tenant_guard.admin_reach_extensions = 'dblink'") == (
        "42501", 'permission denied to set parameter "tenant_guard.admin_reach_extensions"')


# ---------------------------------------------------------------------------------------------------------------
# A43, red team round 14: what reads with the caller's rights besides functions, what runs before the executor,
# PostgreSQL's functions that check rights inside, the owner's domains in an administrator's own expressions

READS_AS_CALLER = ("42501", "an administrator's statement is refused: {}, of a role that is not an administrator, "
                            "is {}")


@pytest.fixture
def admin_role(redteam_db, su):
    """A login member of tenant_guard_admin that is not a superuser and does not bypass row-level security."""
    su.execute("DROP ROLE IF EXISTS rt48_admin")
    su.execute("CREATE ROLE rt48_admin LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE tenant_guard_admin")
    su.execute("GRANT USAGE ON SCHEMA app TO rt48_admin")
    try:
        with psycopg.connect(dsn(user="rt48_admin", dbname=DB), autocommit=True) as c:
            yield c
    finally:
        su.execute("DROP OWNED BY rt48_admin; DROP ROLE rt48_admin")


def test_A43_a_security_invoker_view_is_not_read_with_an_administrators_rights(owned, su):
    owned.execute("CREATE TABLE app.rt48 (code text)")
    owned.execute("CREATE VIEW app.rt48_v WITH (security_invoker = true) AS "
                  "SELECT t.issuer AS code FROM tenant.trusted_issuer t")
    owned.execute("GRANT ALL ON app.rt48_v TO PUBLIC")
    assert fails(su, "SELECT * FROM app.rt48_v") == (
        READS_AS_CALLER[0], READS_AS_CALLER[1].format("app.rt48_v", "a security_invoker view"))


def test_A43_a_security_invoker_view_in_place_of_a_table_takes_no_administrators_insert(owned, su):
    owned.execute("CREATE VIEW app.rt48 WITH (security_invoker = true) AS "
                  "SELECT issuer AS code, jwks FROM tenant.trusted_issuer")
    owned.execute("ALTER VIEW app.rt48 ALTER COLUMN jwks SET DEFAULT '{\"keys\": []}'::jsonb")
    owned.execute("GRANT ALL ON app.rt48 TO PUBLIC")
    before = rows(su, "SELECT count(*) FROM tenant.trusted_issuer")
    assert fails(su, "INSERT INTO app.rt48 (code) VALUES ('FR')") == (
        READS_AS_CALLER[0], READS_AS_CALLER[1].format("app.rt48", "a security_invoker view"))
    assert rows(su, "SELECT count(*) FROM tenant.trusted_issuer") == before
    su.execute("DROP VIEW app.rt48")


def test_A43_a_policy_that_reads_relations_is_not_run_with_an_administrators_rights(owned, su, admin_role):
    owned.execute("CREATE TABLE app.rt48 (code text)")
    owned.execute("ALTER TABLE app.rt48 ENABLE ROW LEVEL SECURITY")
    owned.execute("CREATE POLICY rt48 ON app.rt48 USING (EXISTS (SELECT 1 FROM tenant.issuer_tenant))")
    owned.execute("GRANT ALL ON app.rt48 TO PUBLIC")
    assert fails(admin_role, "SELECT * FROM app.rt48") == (
        READS_AS_CALLER[0], READS_AS_CALLER[1].format("app.rt48", "a table whose policy reads other relations"))
    # a superuser is not subject to the policy: nothing is read with its rights
    assert rows(su, "SELECT count(*) FROM app.rt48") == [(0,)]


def test_A43_nothing_of_the_owners_is_evaluated_while_an_administrators_statement_is_planned(owned, su):
    owned.execute("CREATE SEQUENCE app.rt48_leak MINVALUE 0 START 0")
    owned.execute("CREATE FUNCTION app.rt48_spy(v text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS "
                  "$$ BEGIN PERFORM setval('app.rt48_leak', length(v)); RETURN v; END $$")
    owned.execute("CREATE TABLE app.rt48 (code text)")
    owned.execute("CREATE VIEW app.rt48_v AS SELECT code FROM app.rt48 "
                  "WHERE code = app.rt48_spy(current_setting('data_directory'))")
    owned.execute("GRANT ALL ON ALL TABLES IN SCHEMA app TO PUBLIC")
    for statement in ["SELECT * FROM app.rt48_v", "EXPLAIN SELECT * FROM app.rt48_v",
                      "CREATE TEMP TABLE rt48_copy AS SELECT * FROM app.rt48_v"]:
        assert fails(su, statement) == (REACHES[0], REACHES[1].format("app.rt48_v", "current_setting(text)"))
    assert rows(owned, "SELECT last_value, is_called FROM app.rt48_leak") == [(0, False)]
    owned.execute("DROP FUNCTION app.rt48_spy(text) CASCADE; DROP SEQUENCE app.rt48_leak")


@pytest.fixture
def admin_sequence(su):
    su.execute("CREATE SEQUENCE public.rt48_invoice START 1000")
    su.execute("GRANT USAGE ON SEQUENCE public.rt48_invoice TO PUBLIC")
    yield su
    su.execute("DROP TABLE IF EXISTS app.rt48 CASCADE; DROP SEQUENCE public.rt48_invoice")


@pytest.mark.parametrize("ddl, statement, function", [
    ("CREATE TABLE app.rt48 (code text, f text DEFAULT pg_create_physical_replication_slot('rt48_slot', true)::text)",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "pg_create_physical_replication_slot(name,boolean,boolean)"),
    ("CREATE TABLE app.rt48 (code text, f bigint DEFAULT setval(('public.' || 'rt48_invoice')::regclass, 1))",
     "INSERT INTO app.rt48 (code) VALUES ('FR')", "setval(regclass,bigint)"),
    ("CREATE TABLE app.rt48 (code text); CREATE VIEW app.rt48_v AS "
     "SELECT code, pg_notify('loot', code)::text AS n FROM app.rt48",
     "SELECT * FROM app.rt48_v", "pg_notify(text,text)"),
    ("CREATE TABLE app.rt48 (code text); CREATE VIEW app.rt48_v AS "
     "SELECT slot_name FROM pg_logical_slot_get_changes('rt48_slot', NULL, NULL) s(lsn, xid, slot_name)",
     "SELECT * FROM app.rt48_v", "pg_logical_slot_get_changes(name,pg_lsn,integer,text[])"),
], ids=["creates a replication slot", "resets a sequence", "notifies", "decodes the log"])
def test_A43_postgresqls_functions_that_act_beyond_their_result_are_refused(admin_sequence, owned, su, ddl,
                                                                             statement, function):
    owned.execute(ddl)
    owned.execute("GRANT ALL ON ALL TABLES IN SCHEMA app TO PUBLIC")
    relation = "app.rt48_v" if "VIEW" in ddl else "app.rt48"
    assert fails(su, statement) == (REACHES[0], REACHES[1].format(relation, function))
    assert rows(su, "SELECT count(*) FROM pg_replication_slots") == [(0,)]
    assert rows(su, "SELECT last_value, is_called FROM public.rt48_invoice") == [(1000, False)]


def test_A43_an_administrators_sequence_is_not_advanced_by_the_owners_default(admin_sequence, owned, su):
    owned.execute("CREATE TABLE app.rt48 (code text, n bigint DEFAULT nextval('public.rt48_invoice'))")
    owned.execute("GRANT ALL ON app.rt48 TO PUBLIC")
    assert fails(su, "INSERT INTO app.rt48 (code) VALUES ('FR')") == (
        READS_AS_CALLER[0], READS_AS_CALLER[1].format("app.rt48", "a relation whose code uses a sequence of an "
                                                                  "administrator's"))
    assert rows(su, "SELECT last_value, is_called FROM public.rt48_invoice") == [(1000, False)]
    # the owner's own sequences (serial, identity) still number an administrator's rows
    owned.execute("CREATE TABLE app.rt48_own (code text, id serial, n bigint GENERATED ALWAYS AS IDENTITY)")
    owned.execute("GRANT ALL ON app.rt48_own TO PUBLIC")
    su.execute("INSERT INTO app.rt48_own (code) VALUES ('FR')")
    assert rows(su, "SELECT code, id, n FROM app.rt48_own") == [("FR", 1, 1)]
    su.execute("DROP TABLE app.rt48_own")


@pytest.fixture
def owner_domain(owned, su):
    # the owner may not write such a domain (see the test below): an administrator made it and handed it over
    su.execute("CREATE DOMAIN app.rt48_code AS text "
               "CHECK (set_config('search_path', 'app, pg_catalog, public', false) IS NOT NULL)")
    su.execute("ALTER DOMAIN app.rt48_code OWNER TO rt_owner")
    owned.execute("CREATE FUNCTION app.rt48_normalize(c app.rt48_code) RETURNS text LANGUAGE sql AS "
                  "$$ SELECT upper(c) $$")
    yield owned
    su.execute("DROP TABLE IF EXISTS public.rt48_admin; DROP DOMAIN app.rt48_code CASCADE")


@pytest.mark.parametrize("statement", [
    "SELECT app.rt48_normalize('fr')",
    "SELECT 'fr'::app.rt48_code",
    "INSERT INTO public.rt48_admin VALUES ('fr')",
], ids=["an argument of the owner's function", "a cast", "a column of the administrator's own table"])
def test_A43_the_owners_domain_checks_do_not_run_in_an_administrators_expressions(owner_domain, su, statement):
    su.execute("CREATE TABLE IF NOT EXISTS public.rt48_admin (c app.rt48_code)")
    path = rows(su, "SHOW search_path")
    assert fails(su, statement) == (REACHES[0], REACHES[1].format("type app.rt48_code",
                                                                  "set_config(text,text,boolean)"))
    assert rows(su, "SHOW search_path") == path


def test_A43_the_owners_domain_default_does_not_run_in_an_administrators_own_table(owned, su):
    su.execute("CREATE DOMAIN app.rt48_dflt AS text DEFAULT query_to_xml('SELECT 1', false, false, '')::text")
    su.execute("ALTER DOMAIN app.rt48_dflt OWNER TO rt_owner")
    try:
        su.execute("CREATE TABLE public.rt48_admin (id int, d app.rt48_dflt)")
        for statement in ["INSERT INTO public.rt48_admin (id) VALUES (1)", "INSERT INTO public.rt48_admin DEFAULT VALUES",
                          "UPDATE public.rt48_admin SET d = DEFAULT"]:
            assert fails(su, statement) == (REACHES[0], REACHES[1].format(
                "type app.rt48_dflt", "query_to_xml(text,boolean,boolean,text)"))
    finally:
        su.execute("DROP TABLE IF EXISTS public.rt48_admin; DROP DOMAIN app.rt48_dflt")


def test_A43_copy_from_into_an_administrators_own_table_checks_the_owners_domain(owned, su):
    su.execute("CREATE DOMAIN app.rt48_chk AS text CHECK (query_to_xml('SELECT 1', false, false, '') IS NOT NULL)")
    su.execute("ALTER DOMAIN app.rt48_chk OWNER TO rt_owner")
    try:
        su.execute("CREATE TABLE public.rt48_admin (id int, e app.rt48_chk)")
        with su.cursor() as cur:
            try:
                with cur.copy("COPY public.rt48_admin FROM STDIN") as copy:
                    copy.write_row((1, "v"))
                raise AssertionError("COPY ran")
            except psycopg.Error as e:
                assert (e.sqlstate, e.diag.message_primary) == (REACHES[0], REACHES[1].format(
                    "type app.rt48_chk", "query_to_xml(text,boolean,boolean,text)"))
        assert rows(su, "SELECT count(*) FROM public.rt48_admin") == [(0,)]
    finally:
        su.execute("DROP TABLE IF EXISTS public.rt48_admin; DROP DOMAIN app.rt48_chk")


@pytest.mark.parametrize("ddl, statement", [
    ("CREATE TABLE app.rt48 (id int, CHECK (query_to_xml('SELECT 1', false, false, '') IS NOT NULL))",
     "ALTER TABLE app.rt48 ALTER COLUMN id TYPE bigint"),
    ("CREATE TABLE app.rt48 (id int); INSERT INTO app.rt48 VALUES (1); ALTER TABLE app.rt48 ADD CONSTRAINT c "
     "CHECK (query_to_xml('SELECT 1', false, false, '') IS NOT NULL) NOT VALID",
     "ALTER TABLE app.rt48 VALIDATE CONSTRAINT c"),
    ("CREATE TABLE app.rt48 (id int, CHECK (query_to_xml('SELECT 1', false, false, '') IS NOT NULL))",
     "ALTER TABLE app.rt48 ADD COLUMN n float8 DEFAULT random()"),
], ids=["a type change checks again", "a constraint validated", "a rewrite checks again"])
def test_A43_an_administrators_alter_table_does_not_check_the_owners_constraints_with_its_rights(owned, su, ddl,
                                                                                                 statement):
    owned.execute(ddl)
    assert fails(su, statement) == (REACHES[0], REACHES[1].format("app.rt48",
                                                                  "query_to_xml(text,boolean,boolean,text)"))
    # what the administrator does to review it is not refused: take it over, then run the statement
    su.execute("ALTER TABLE app.rt48 OWNER TO postgres")
    su.execute(statement)


def test_A43_an_administrators_alter_domain_does_not_check_the_owners_values_with_its_rights(owned, su):
    owned.execute("CREATE DOMAIN app.rt48_v AS int")
    su.execute("ALTER DOMAIN app.rt48_v ADD CONSTRAINT c CHECK (query_to_xml('SELECT 1', false, false, '') "
               "IS NOT NULL) NOT VALID")
    try:
        assert fails(su, "ALTER DOMAIN app.rt48_v VALIDATE CONSTRAINT c") == (REACHES[0], REACHES[1].format(
            "type app.rt48_v", "query_to_xml(text,boolean,boolean,text)"))
    finally:
        su.execute("DROP DOMAIN app.rt48_v")


@pytest.mark.parametrize("read, refused", [
    ("current_query()", "current_query()"),
    ("(SELECT string_agg(statement, ' | ') FROM pg_prepared_statements)", "pg_prepared_statement()"),
    ("(SELECT string_agg(statement, ' | ') FROM pg_cursors)", "pg_cursor()"),
    ("current_setting('rt48.secret', true)", "current_setting()"),
    ("(SELECT setting FROM pg_settings WHERE name = 'rt48.secret')", "pg_show_all_settings()"),
    ("array_to_string(current_schemas(true), ',')", "current_schemas()"),
    ("(SELECT string_agg(c, ',') FROM pg_listening_channels() c)", "pg_listening_channels()"),
], ids=["the statement", "prepared statements", "cursors", "a setting", "the settings view", "the search path",
        "the channels"])
def test_A43_the_owners_code_reads_nothing_of_an_administrators_session(seeded, su, read, refused):
    seeded.execute(f"CREATE FUNCTION app.rt48_read() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   f"INSERT INTO app.rt43_log VALUES ({read}); RETURN NEW; END $$")
    seeded.execute("CREATE TRIGGER rt48_read BEFORE INSERT ON app.countries FOR EACH ROW EXECUTE FUNCTION "
                   "app.rt48_read()")
    try:
        su.execute("SET rt48.secret = 'the administrator''s'")
        su.execute("PREPARE rt48_p AS SELECT 'prepared by the administrator'")
        assert fails(su, "INSERT INTO app.countries VALUES ('FR')") == (
            "42501", f"{refused} is refused: code of a table owner, run on an administrator's behalf, reads nothing "
                     "of the administrator's session")
        assert rows(su, "SELECT count(*) FROM app.rt43_log") == [(0,)]
    finally:
        su.execute("DROP TRIGGER IF EXISTS rt48_read ON app.countries; DROP FUNCTION IF EXISTS app.rt48_read()")


def test_A43_the_owners_code_takes_no_lock_for_the_administrators_transaction(seeded, su):
    seeded.execute("CREATE FUNCTION app.rt48_xlock() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "PERFORM pg_advisory_xact_lock(4848); RETURN NEW; END $$")
    seeded.execute("CREATE TRIGGER rt48_xlock BEFORE INSERT ON app.countries FOR EACH ROW EXECUTE FUNCTION "
                   "app.rt48_xlock()")
    try:
        assert fails(su, "INSERT INTO app.countries VALUES ('FR')") == (
            "42501", "pg_advisory_xact_lock() is refused: code of a table owner, run on an administrator's behalf, "
                     "leaves nothing in the administrator's session")
    finally:
        su.execute("DROP TRIGGER IF EXISTS rt48_xlock ON app.countries; DROP FUNCTION IF EXISTS app.rt48_xlock()")


def test_A43_the_owners_code_explains_nothing_in_an_administrators_session(seeded, su):
    seeded.execute("CREATE FUNCTION app.rt48_explain() RETURNS trigger LANGUAGE plpgsql AS $$ DECLARE v text; BEGIN "
                   "EXECUTE 'EXPLAIN (SETTINGS) SELECT 1' INTO v; INSERT INTO app.rt43_log VALUES (v); RETURN NEW; "
                   "END $$")
    seeded.execute("CREATE TRIGGER rt48_explain BEFORE INSERT ON app.countries FOR EACH ROW EXECUTE FUNCTION "
                   "app.rt48_explain()")
    try:
        assert fails(su, "INSERT INTO app.countries VALUES ('FR')") == (
            "42501", "EXPLAIN is refused: code of a table owner, run on an administrator's behalf, reads nothing of "
                     "the administrator's session")
    finally:
        su.execute("DROP TRIGGER IF EXISTS rt48_explain ON app.countries; DROP FUNCTION IF EXISTS app.rt48_explain()")


def test_A43_the_owners_code_does_not_show_an_administrators_settings(seeded, su):
    seeded.execute("CREATE FUNCTION app.rt48_show() RETURNS trigger LANGUAGE plpgsql AS $$ DECLARE v text; BEGIN "
                   "EXECUTE 'SHOW rt48.secret' INTO v; INSERT INTO app.rt43_log VALUES (v); RETURN NEW; END $$")
    seeded.execute("CREATE TRIGGER rt48_show BEFORE INSERT ON app.countries FOR EACH ROW EXECUTE FUNCTION "
                   "app.rt48_show()")
    try:
        su.execute("SET rt48.secret = 'the administrator''s'")
        assert fails(su, "INSERT INTO app.countries VALUES ('FR')") == (
            "42501", "SHOW is refused: code of a table owner, run on an administrator's behalf, reads nothing of the "
                     "administrator's session")
        assert rows(su, "SELECT count(*) FROM app.rt43_log") == [(0,)]
    finally:
        su.execute("DROP TRIGGER IF EXISTS rt48_show ON app.countries; DROP FUNCTION IF EXISTS app.rt48_show()")


# ---------------------------------------------------------------------------------------------------------------
# A43, red team round 16: code PostgreSQL itself runs as the owner in the administrator's session, code a trusted
# role's partition inherits, domains converted where no statement shows them


@pytest.mark.parametrize("ddl, statement, message", [
    ("CREATE RULE rt48 AS ON DELETE TO app.rt48_c DO ALSO SELECT set_config('search_path', 'app, public', false)",
     "DELETE FROM app.rt48_p", "set_config() is refused: code of a table owner, run on an administrator's behalf, "
                               "leaves nothing in the administrator's session"),
    ("CREATE RULE rt48 AS ON DELETE TO app.rt48_c DO ALSO INSERT INTO app.rt48_log VALUES (current_query())",
     "DELETE FROM app.rt48_p", "current_query() is refused: code of a table owner, run on an administrator's "
                               "behalf, reads nothing of the administrator's session"),
    ("CREATE MATERIALIZED VIEW app.rt48_mv AS SELECT current_query() AS q WITH NO DATA",
     "REFRESH MATERIALIZED VIEW app.rt48_mv", "current_query() is refused: code of a table owner, run on an "
                                              "administrator's behalf, reads nothing of the administrator's session"),
    ("CREATE MATERIALIZED VIEW app.rt48_mv AS SELECT pg_advisory_unlock_all()::text AS l WITH NO DATA",
     "REFRESH MATERIALIZED VIEW app.rt48_mv", "pg_advisory_unlock_all() is refused: code of a table owner, run on an "
                                              "administrator's behalf, leaves nothing in the administrator's session"),
], ids=["a foreign-key cascade sets", "a foreign-key cascade reads the statement", "a refresh reads the statement",
        "a refresh releases locks"])
def test_A43_code_postgresql_runs_as_the_owner_in_an_administrators_session_leaves_and_reads_nothing(
        owned, su, ddl, statement, message):
    owned.execute("CREATE TABLE app.rt48_p (id int PRIMARY KEY); CREATE TABLE app.rt48_log (v text); "
                  "CREATE TABLE app.rt48_c (id int, pid int REFERENCES app.rt48_p (id) ON DELETE CASCADE)")
    owned.execute("INSERT INTO app.rt48_p VALUES (1); INSERT INTO app.rt48_c VALUES (1, 1)")
    owned.execute(ddl)
    owned.execute("GRANT ALL ON ALL TABLES IN SCHEMA app TO PUBLIC")
    try:
        su.execute("SELECT pg_advisory_lock(4848)")
        path = rows(su, "SHOW search_path")
        assert fails(su, statement) == ("42501", message)
        assert rows(su, "SHOW search_path") == path
        assert rows(su, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                    ) == [(1,)]
        assert rows(su, "SELECT count(*) FROM app.rt48_log") == [(0,)]
    finally:
        su.execute("SELECT pg_advisory_unlock_all()")
        su.execute("DROP MATERIALIZED VIEW IF EXISTS app.rt48_mv; DROP TABLE app.rt48_c, app.rt48_p, app.rt48_log")


def test_A43_an_administrators_partition_of_the_owners_table_carries_the_owners_code(owned, su):
    owned.execute("CREATE TABLE app.rt48 (id int, day date, loot text DEFAULT query_to_xml('SELECT 1', false, false, "
                  "'')::text) PARTITION BY RANGE (day)")
    su.execute("CREATE TABLE app.rt48_2025 PARTITION OF app.rt48 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
    for statement in ["INSERT INTO app.rt48_2025 (id, day) VALUES (1, '2025-05-05')",
                      "INSERT INTO app.rt48 (id, day) VALUES (1, '2025-05-05')"]:
        assert fails(su, statement)[0] == "42501"
    assert fails(su, "INSERT INTO app.rt48_2025 (id, day) VALUES (1, '2025-05-05')") == (REACHES[0], REACHES[1].format(
        "app.rt48_2025 (code inherited from app.rt48)", "query_to_xml(text,boolean,boolean,text)"))
    assert rows(owned, "SELECT count(*) FROM app.rt48") == [(0,)]


@pytest.mark.parametrize("statement, function", [
    ("CREATE DOMAIN app.rt48_d AS text CHECK (set_config('search_path', 'app', false) IS NOT NULL)",
     "set_config(text,text,boolean)"),
    ("CREATE DOMAIN app.rt48_d AS text DEFAULT query_to_xml('SELECT 1', false, false, '')::text",
     "query_to_xml(text,boolean,boolean,text)"),
    ("CREATE DOMAIN app.rt48_d AS text; ALTER DOMAIN app.rt48_d ADD CHECK (current_setting('rt48.x', true) IS NULL)",
     "current_setting(text,boolean)"),
    ("CREATE DOMAIN app.rt48_d AS text; ALTER DOMAIN app.rt48_d SET DEFAULT tenant.revoke_token('x')::text",
     "tenant.revoke_token(text)"),
], ids=["a check sets", "a default runs a query", "a check added reads a setting", "a default calls the API"])
def test_A43_the_owner_writes_no_domain_an_administrator_could_not_convert_to(owned, su, statement, function):
    verb = "ALTER DOMAIN" if "ALTER DOMAIN" in statement else "CREATE DOMAIN"
    try:
        assert fails(owned, statement) == (
            "42501", f"{verb} is refused: domain app.rt48_d calls {function}, which would run with the rights of "
                     "whoever converts a value to it")
    finally:
        su.execute("DROP DOMAIN IF EXISTS app.rt48_d")


def test_A43_the_owner_still_writes_domains_that_call_its_own_functions(owned, su):
    owned.execute("CREATE FUNCTION app.rt48_ok(t text) RETURNS boolean LANGUAGE sql IMMUTABLE AS "
                  "$$ SELECT length(t) = 2 $$")
    try:
        owned.execute("CREATE DOMAIN app.rt48_d AS text CHECK (app.rt48_ok(VALUE) AND upper(VALUE) = VALUE) "
                      "DEFAULT 'FR'")
        su.execute("DO $$ DECLARE v app.rt48_d := 'DE'; BEGIN NULL; END $$")
        assert fails(su, "SELECT 'fr'::app.rt48_d")[0] == "23514"
    finally:
        su.execute("DROP DOMAIN IF EXISTS app.rt48_d; DROP FUNCTION app.rt48_ok(text)")


# ---------------------------------------------------------------------------------------------------------------
# A43, red team round 17: the administrator's cursors, a partition detached by the table's owner, a temporary
# lookalike of a new domain


def test_A43_the_owners_code_fetches_nothing_from_an_administrators_cursors(seeded, su):
    seeded.execute("CREATE FUNCTION app.rt48_fetch() RETURNS trigger LANGUAGE plpgsql AS $$ DECLARE r refcursor := "
                   "'rt48_c'; v record; BEGIN FETCH r INTO v; INSERT INTO app.rt43_log VALUES (v::text); "
                   "RETURN NEW; END $$")
    seeded.execute("CREATE TRIGGER rt48_fetch BEFORE INSERT ON app.countries FOR EACH ROW EXECUTE FUNCTION "
                   "app.rt48_fetch()")
    try:
        su.execute("BEGIN")
        su.execute("DECLARE rt48_c CURSOR FOR SELECT issuer FROM tenant.trusted_issuer ORDER BY issuer")
        assert fails(su, "INSERT INTO app.countries VALUES ('FR')") == (
            "42501", "FETCH from a cursor of the administrator's is refused: code of a table owner, run on an "
                     "administrator's behalf, reads nothing of the administrator's session")
        su.execute("ROLLBACK")
        assert rows(su, "SELECT count(*) FROM app.rt43_log") == [(0,)]
    finally:
        if su.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            su.execute("ROLLBACK")
        su.execute("DROP TRIGGER IF EXISTS rt48_fetch ON app.countries; DROP FUNCTION IF EXISTS app.rt48_fetch()")


def test_A43_the_owner_does_not_detach_an_administrators_partition(owned, su):
    owned.execute("CREATE TABLE app.rt48 (id int, loot text DEFAULT query_to_xml('SELECT 1', false, false, '')"
                  "::text) PARTITION BY LIST (id)")
    su.execute("CREATE TABLE app.rt48_1 PARTITION OF app.rt48 FOR VALUES IN (1)")
    assert fails(owned, "ALTER TABLE app.rt48 DETACH PARTITION app.rt48_1") == (
        "42501", "DETACH PARTITION is refused: app.rt48_1 belongs to an administrator")
    su.execute("ALTER TABLE app.rt48 DETACH PARTITION app.rt48_1")      # an administrator may
    su.execute("DROP TABLE app.rt48_1")


def test_A43_a_temporary_lookalike_does_not_hide_a_new_domain(owned, su):
    owned.execute("CREATE DOMAIN pg_temp.rt48_d AS text")
    owned.execute("SET search_path = app")
    try:
        assert fails(owned, "CREATE DOMAIN rt48_d AS text CHECK (set_config('search_path', 'app', false) IS NOT NULL)"
                     ) == ("42501", "CREATE DOMAIN is refused: domain app.rt48_d calls set_config(text,text,boolean), "
                                    "which would run with the rights of whoever converts a value to it")
    finally:
        su.execute("DROP DOMAIN IF EXISTS app.rt48_d")


def test_A43_the_owners_code_does_not_release_an_administrators_session_locks(seeded, su):
    seeded.execute("CREATE FUNCTION app.rt48_unlock() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "PERFORM pg_advisory_unlock_all(); RETURN NEW; END $$")
    seeded.execute("CREATE TRIGGER rt48_unlock BEFORE INSERT ON app.countries FOR EACH ROW EXECUTE FUNCTION "
                   "app.rt48_unlock()")
    try:
        su.execute("SELECT pg_advisory_lock(4848)")
        assert fails(su, "INSERT INTO app.countries VALUES ('FR')") == (
            "42501", "pg_advisory_unlock_all() is refused: code of a table owner, run on an administrator's behalf, "
                     "leaves nothing in the administrator's session")
        assert rows(su, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                    ) == [(1,)]
    finally:
        su.execute("SELECT pg_advisory_unlock_all()")
        su.execute("DROP TRIGGER IF EXISTS rt48_unlock ON app.countries; DROP FUNCTION IF EXISTS app.rt48_unlock()")


def test_A43_copy_from_by_an_administrator_is_refused_the_same_way(owned, su):
    owned.execute("CREATE TABLE app.rt48 (code text, loot text DEFAULT query_to_xml('select 1', false, false, '')"
                  "::text)")
    with su.cursor() as cur:
        try:
            with cur.copy("COPY app.rt48 (code) FROM STDIN") as copy:
                copy.write_row(("FR",))
            raise AssertionError("COPY ran")
        except Exception as e:  # noqa: BLE001
            assert getattr(e, "sqlstate", None) == "42501", e


def test_A43_the_owners_ordinary_expressions_still_run_for_an_administrator(owned, su):
    owned.execute("CREATE TABLE app.rt48 (code text CHECK (length(code) = 2), at timestamptz DEFAULT now(), "
                  "n int GENERATED ALWAYS AS (length(code)) STORED)")
    owned.execute("CREATE VIEW app.rt48_v AS SELECT upper(code) AS code FROM app.rt48")
    su.execute("INSERT INTO app.rt48 (code) VALUES ('fr')")
    assert rows(su, "SELECT code FROM app.rt48_v") == [("FR",)]
