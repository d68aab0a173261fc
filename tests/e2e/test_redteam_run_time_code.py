"""Red-team suite: the owner's code that PostgreSQL picks at run time, and what it may leave behind (threats A43,
A46; red team of issue 16).

- A46: casts and operators over a type a protected table's column has run on that column's values whenever a query
  converts or compares them (`to_jsonb`, `row_to_json`, `::text`, `=`), in each tenant's statements and in an
  administrator's export: the owner may not add them, nor give a protected table a column of a type that has them.
- A43: the owner's code reached by an administrator runs as the owner, as a restricted operation, and nothing it
  sets outlives it: no session setting (a search_path naming the owner's schema) stays in the administrator's session.

Schema and fixtures: redteam.py. The owner's functions write to a log table that must stay empty.
"""

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
], ids=["default runs a query", "check sets", "rule sets", "view sets", "superuser-only function"])
def test_A43_an_administrator_does_not_run_the_owners_expressions_with_its_rights(owned, su, ddl, statement,
                                                                                   function):
    owned.execute(ddl)
    owned.execute("GRANT ALL ON ALL TABLES IN SCHEMA app TO PUBLIC")
    relation = "app.rt48_v" if "VIEW" in ddl else "app.rt48"
    settings = rows(su, "SELECT current_setting('work_mem'), current_setting('statement_timeout'), "
                        "current_setting('application_name')")
    assert fails(su, statement) == (REACHES[0], REACHES[1].format(relation, function))
    assert rows(su, "SELECT current_setting('work_mem'), current_setting('statement_timeout'), "
                    "current_setting('application_name')") == settings


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
