"""Red-team suite, fourth part: the owner line after the second red team's owner round (threats A33, A34, A40).

The owner line is checked on what a statement wrote, whatever the statement: each scenario is one member of a class
the red team found through one example. They run as a login member of the NOLOGIN table owner (the `owner` fixture,
not a superuser, not an administrator) and assert the exact SQLSTATE and message, and that the owner's code saw no
row (a log table the owner's functions write to stays empty).

Schema and fixtures: redteam.py (tenant A has orders 1, 2; tenant B has orders 1, 2, 3).
"""

import psycopg
import pytest

from redteam import (A, ALL_ORDERS, B, DB, attacker, begin_as, dsn, fails, owner, redteam_db, rows,  # noqa: F401
                     su, superuser_orders)

CODE = "{} is refused: {}, which calls function {} would run over every tenant's rows of table {}"
FK = "{} is refused: foreign key {} between {} and {} crosses the tenant boundary"
UNIQUE = ("{} is refused: {} on {} is unique across tenants: its key does not compare the tenant column tenant_id "
          "for equality")


@pytest.fixture
def tools(owner, su):
    """An owner's spying kit: a log table, a function that writes to it, a domain whose check calls it, a composite
    type with an attribute of that domain, and the same as a table's row type."""
    owner.execute("CREATE TABLE app.rt33_log (v text)")
    owner.execute("GRANT INSERT ON app.rt33_log TO PUBLIC")
    owner.execute("CREATE FUNCTION app.rt33_leak(text) RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER "
                  "SET search_path = pg_catalog AS 'BEGIN INSERT INTO app.rt33_log VALUES ($1); RETURN true; END'")
    owner.execute("CREATE DOMAIN app.rt33_spy AS text CHECK (app.rt33_leak(VALUE))")
    owner.execute("CREATE TYPE app.rt33_wrap AS (s app.rt33_spy)")
    owner.execute("CREATE TABLE app.rt33_shape (s app.rt33_spy)")
    owner.execute("CREATE TYPE app.rt33_range AS RANGE (subtype = app.rt33_spy)")
    try:
        yield owner
    finally:
        assert rows(su, "SELECT count(*) FROM app.rt33_log") == [(0,)], "the owner's code saw rows"
        su.execute("DROP TABLE app.rt33_log, app.rt33_shape CASCADE")
        su.execute("DROP TYPE app.rt33_wrap, app.rt33_range CASCADE")
        su.execute("DROP DOMAIN app.rt33_spy CASCADE")
        su.execute("DROP FUNCTION app.rt33_leak(text) CASCADE")
        for c in ("rt33", "name_ok", "name_ok2", "bits"):
            su.execute(f"ALTER TABLE app.orders DROP CONSTRAINT IF EXISTS {c}")


def insert_as(conn, keys, tenant, note):
    begin_as(conn, keys, tenant)
    conn.execute("INSERT INTO app.orders (id, customer_id, note) VALUES (90, 1, %s)", (note,))
    conn.execute("ROLLBACK")


# ---------------------------------------------------------------------------------------------------------------
# A33. Code the owner reaches a protected table with, through types, statements and trust


@pytest.mark.parametrize("check", [
    "(('(' || note || ')')::app.rt33_wrap) IS NOT NULL",                              # a composite's attribute domain
    "jsonb_populate_record(NULL::app.rt33_wrap, jsonb_build_object('s', note)) IS NOT NULL",
    "(('(' || note || ')')::app.rt33_shape) IS NOT NULL",                             # a table's row type
    "(('(' || note || ')')::app.rt33_wrap[]) IS NOT NULL",                            # an array of the composite
    "app.rt33_range(note, note) IS NOT NULL",                                         # a range over the domain
    "note::app.rt33_spy IS NOT NULL",                                                 # the domain itself
], ids=["composite", "populate_record", "row type", "array of composite", "range", "domain"])
def test_A33_a_check_that_reaches_a_domain_through_a_type_is_refused(tools, su, attacker, keys, check):
    """Converting text to a composite type checks the domains of its attributes: code no stored expression names."""
    assert fails(tools, f"ALTER TABLE app.orders ADD CONSTRAINT rt33 CHECK ({check}) NOT VALID") == (
        "42501", CODE.format("ALTER TABLE", "constraint rt33", "app.rt33_leak(text)", "app.orders"))
    insert_as(attacker, keys, B, "b-secret")   # nothing reaches the log (checked by the fixture)


def test_A33_a_trigger_condition_that_reaches_a_domain_through_a_composite_is_refused(tools):
    assert fails(tools, "CREATE TRIGGER rt33 BEFORE UPDATE ON app.orders FOR EACH ROW "
                        "WHEN ((('(' || NEW.note || ')')::app.rt33_wrap) IS NOT NULL) "
                        "EXECUTE FUNCTION suppress_redundant_updates_trigger()") == (
        "42501", CODE.format("CREATE TRIGGER", "trigger rt33", "app.rt33_leak(text)", "app.orders"))


def test_A33_a_domain_a_constraint_only_casts_to_cannot_gain_code_later(tools, su, attacker, keys):
    """ALTER DOMAIN on a domain no column uses: the constraint that casts to it runs the new check."""
    tools.execute("CREATE DOMAIN app.rt33_d2 AS text")
    try:
        tools.execute("ALTER TABLE app.orders ADD CONSTRAINT name_ok CHECK (note::app.rt33_d2 IS NOT NULL) NOT VALID")
        assert fails(tools, "ALTER DOMAIN app.rt33_d2 ADD CONSTRAINT spy CHECK (app.rt33_leak(VALUE)) NOT VALID") == (
            "42501", CODE.format("ALTER DOMAIN", "constraint name_ok", "app.rt33_leak(text)", "app.orders"))
        insert_as(attacker, keys, B, "b-secret")
    finally:
        su.execute("ALTER TABLE app.orders DROP CONSTRAINT IF EXISTS name_ok; DROP DOMAIN app.rt33_d2")


def test_A33_a_composite_a_constraint_only_casts_to_cannot_gain_an_attribute_with_code(tools, su):
    tools.execute("CREATE TYPE app.rt33_w2 AS (a text)")
    try:
        tools.execute("ALTER TABLE app.orders ADD CONSTRAINT name_ok "
                      "CHECK ((('(' || note || ')')::app.rt33_w2) IS NOT NULL) NOT VALID")
        assert fails(tools, "ALTER TYPE app.rt33_w2 ADD ATTRIBUTE s app.rt33_spy") == (
            "42501", CODE.format("ALTER TYPE", "constraint name_ok", "app.rt33_leak(text)", "app.orders"))
    finally:
        su.execute("ALTER TABLE app.orders DROP CONSTRAINT IF EXISTS name_ok; DROP TYPE app.rt33_w2")


def test_A33_code_an_administrator_allowed_cannot_be_swapped_under_the_same_name(tools, su):
    """The owner line judges the catalog rows a statement wrote, not the names it leaves: a constraint dropped and
    added again under its name is new."""
    su.execute("ALTER TABLE app.orders ADD CONSTRAINT name_ok2 CHECK (note::app.rt33_spy IS NOT NULL) NOT VALID")
    assert fails(tools, "ALTER TABLE app.orders DROP CONSTRAINT name_ok2, ADD CONSTRAINT name_ok2 "
                        "CHECK (app.rt33_leak(note || '/' || id)) NOT VALID") == (
        "42501", CODE.format("ALTER TABLE", "constraint name_ok2", "app.rt33_leak(text)", "app.orders"))
    # what an administrator put there does not block the owner's unrelated changes
    tools.execute("ALTER TABLE app.orders ADD COLUMN rt33_z text")
    tools.execute("ALTER TABLE app.orders DROP COLUMN rt33_z")


@pytest.mark.parametrize("change", [
    "CREATE OR REPLACE FUNCTION app.rt33_mine(text) RETURNS boolean LANGUAGE plpgsql AS "
    "'BEGIN RETURN app.rt33_leak($1); END'",
    "ALTER FUNCTION app.rt33_mine(text) SET search_path = app",
    "ALTER FUNCTION app.rt33_mine(text) SECURITY DEFINER",
], ids=["replace", "set", "security definer"])
def test_A33_a_function_code_on_a_protected_table_calls_cannot_be_changed_by_its_owner(tools, su, change):
    """An administrator let a constraint and a domain call the owner's function (the audit reports both): the owner
    cannot change that function afterwards."""
    tools.execute("CREATE FUNCTION app.rt33_mine(text) RETURNS boolean LANGUAGE sql AS 'SELECT true'")
    tools.execute("CREATE DOMAIN app.rt33_d3 AS text CHECK (app.rt33_mine(VALUE))")
    su.execute("ALTER TABLE app.orders ADD CONSTRAINT rt33 CHECK (app.rt33_mine(note)) NOT VALID")
    su.execute("CREATE TABLE app.rt33_t (tenant_id uuid, v app.rt33_d3)")
    su.execute("ALTER TABLE app.rt33_t OWNER TO rt_owner")
    su.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.rt33_t IS 'tenant_scoped'")
    try:
        sqlstate, message = fails(tools, change)
        assert (sqlstate, message) in [
            ("42501", CODE.format(change.split(" app.")[0].replace("CREATE OR REPLACE", "CREATE"), "constraint rt33",
                                  "app.rt33_mine(text)", "app.orders")),
            ("42501", CODE.format(change.split(" app.")[0].replace("CREATE OR REPLACE", "CREATE"), "column v",
                                  "app.rt33_mine(text)", "app.rt33_t"))]
    finally:
        su.execute("DROP TABLE app.rt33_t; ALTER TABLE app.orders DROP CONSTRAINT rt33")
        su.execute("DROP DOMAIN app.rt33_d3; DROP FUNCTION app.rt33_mine(text)")


def test_A33_nextval_on_a_condition_over_the_row_is_refused(tools, su, attacker, keys):
    """A sequence is read by every role: nextval() called when a bit of the row is set writes that bit out."""
    tools.execute("CREATE SEQUENCE app.rt33_b0 MINVALUE 0 START 0")
    try:
        assert fails(tools, "ALTER TABLE app.orders ADD CONSTRAINT bits CHECK (coalesce(CASE WHEN "
                            "get_bit(convert_to(note, 'UTF8'), 0) = 1 THEN nextval('app.rt33_b0') END, 0) >= 0) "
                            "NOT VALID") == (
            "42501", CODE.format("ALTER TABLE", "constraint bits", "nextval(regclass)", "app.orders"))
        insert_as(attacker, keys, B, "b-secret")
        assert rows(su, "SELECT last_value, is_called FROM app.rt33_b0") == [(0, False)]
    finally:
        su.execute("DROP SEQUENCE app.rt33_b0")


def test_A33_nextval_in_a_column_default_stays_allowed(tools, su):
    """A default sees no row: a serial column, or 'INV-' || nextval(...), counts rows as every sequence does."""
    tools.execute("CREATE SEQUENCE app.rt33_s")
    try:
        tools.execute("ALTER TABLE app.orders ADD COLUMN rt33_n text")
        tools.execute("ALTER TABLE app.orders ALTER COLUMN rt33_n SET DEFAULT 'INV-' || nextval('app.rt33_s')")
        tools.execute("ALTER TABLE app.orders ALTER COLUMN rt33_n SET DEFAULT nextval('app.rt33_s')::text")
    finally:
        su.execute("ALTER TABLE app.orders DROP COLUMN IF EXISTS rt33_n; DROP SEQUENCE app.rt33_s")


@pytest.fixture
def owner_may_create(su):
    su.execute(f"GRANT CREATE ON DATABASE {DB} TO rt_owner")
    try:
        yield
    finally:
        su.execute(f"REVOKE CREATE ON DATABASE {DB} FROM rt_owner")


def test_A33_a_function_the_owner_adds_to_its_own_extension_is_not_trusted(tools, su, owner_may_create):
    """A trusted extension created by the owner is the owner's: it can add its own STABLE function to it."""
    tools.execute("CREATE EXTENSION tsm_system_rows SCHEMA app")
    try:
        tools.execute("CREATE FUNCTION app.rt33_stable(text) RETURNS boolean LANGUAGE plpgsql STABLE AS "
                      "'BEGIN RETURN app.rt33_leak($1); END'")
        tools.execute("ALTER EXTENSION tsm_system_rows ADD FUNCTION app.rt33_stable(text)")
        assert fails(tools, "ALTER TABLE app.orders ADD CONSTRAINT rt33 CHECK (app.rt33_stable(note)) NOT VALID") == (
            "42501", CODE.format("ALTER TABLE", "constraint rt33", "app.rt33_stable(text)", "app.orders"))
        # the extension's own functions are the bootstrap superuser's: judged by what they are
        assert rows(su, "SELECT r.rolsuper FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner "
                        "WHERE p.oid = 'app.system_rows(internal)'::regprocedure") == [(True,)]
    finally:
        su.execute("DROP EXTENSION tsm_system_rows CASCADE")


def test_A33_schema_elements_are_checked_and_protected_like_any_statement(tools, su, attacker, keys, owner_may_create):
    """CREATE SCHEMA runs its elements as parts of itself: a partition made there is protected, and code on it is
    judged once the statement has run."""
    try:
        tools.execute("CREATE SCHEMA rt33_side CREATE TABLE events_x PARTITION OF app.events FOR VALUES IN ('x')")
        assert rows(su, "SELECT table_name::text, rls_forced, policy_intact FROM tenant.scoped_tables "
                        "WHERE table_name = 'rt33_side.events_x'::regclass") == [("rt33_side.events_x", True, True)]
        su.execute("GRANT USAGE ON SCHEMA rt33_side TO rt_app; GRANT SELECT, INSERT ON rt33_side.events_x TO rt_app")
        for tenant, body in ((A, "a-x"), (B, "b-x")):
            begin_as(attacker, keys, tenant)
            attacker.execute("INSERT INTO app.events VALUES (%s, 'x', %s)", (tenant, body))
            attacker.execute("COMMIT")
        begin_as(attacker, keys, A)
        assert rows(attacker, "SELECT body FROM rt33_side.events_x") == [("a-x",)]
        attacker.execute("COMMIT")
        assert fails(tools, "CREATE SCHEMA rt33_side2 CREATE TABLE events_y PARTITION OF app.events "
                            "FOR VALUES IN ('y') CREATE TRIGGER spy AFTER INSERT ON events_y FOR EACH ROW "
                            "WHEN (app.rt33_leak(NEW.body)) EXECUTE FUNCTION suppress_redundant_updates_trigger()") == (
            "42501", CODE.format("protecting it", "trigger spy", "app.rt33_leak(text)", "rt33_side2.events_y"))
    finally:
        su.execute("DELETE FROM app.events WHERE kind = 'x'")
        su.execute("DROP SCHEMA IF EXISTS rt33_side, rt33_side2 CASCADE")


# ---------------------------------------------------------------------------------------------------------------
# A34. What a table brings along when it is protected, or gains as a new table


def test_A34_the_owner_cannot_protect_a_table_with_a_key_that_crosses_the_boundary(owner, su):
    owner.execute("CREATE TABLE app.rt34_inv (id int PRIMARY KEY, tenant_id uuid, code text UNIQUE)")
    owner.execute("CREATE TABLE app.rt34_probe (code text REFERENCES app.rt34_inv (code))")
    owner.execute("CREATE TABLE app.rt34_ref (code text PRIMARY KEY)")
    try:
        assert fails(owner, "SECURITY LABEL FOR tenant_guard ON TABLE app.rt34_inv IS 'tenant_scoped'") == (
            "42501", FK.format("SECURITY LABEL", "rt34_probe_code_fkey", "app.rt34_probe", "app.rt34_inv"))
        owner.execute("DROP TABLE app.rt34_probe")
        owner.execute("ALTER TABLE app.rt34_inv ADD FOREIGN KEY (code) REFERENCES app.rt34_ref (code) "
                      "ON UPDATE CASCADE NOT VALID")
        assert fails(owner, "SECURITY LABEL FOR tenant_guard ON TABLE app.rt34_inv IS 'tenant_scoped'") == (
            "42501", FK.format("SECURITY LABEL", "rt34_inv_code_fkey", "app.rt34_inv", "app.rt34_ref"))
        assert fails(owner, "SELECT tenant.protect('app.rt34_inv')")[1] == \
            FK.format("SECURITY LABEL", "rt34_inv_code_fkey", "app.rt34_inv", "app.rt34_ref")
        assert rows(su, "SELECT count(*) FROM tenant.scoped_tables WHERE table_name = 'app.rt34_inv'::regclass") == \
            [(0,)]
    finally:
        su.execute("DROP TABLE IF EXISTS app.rt34_probe, app.rt34_inv, app.rt34_ref")


@pytest.fixture
def scoped_schema(su):
    su.execute("CREATE SCHEMA rt34 AUTHORIZATION rt_owner")
    su.execute("SECURITY LABEL FOR tenant_guard ON SCHEMA rt34 IS 'tenant_scoped'")
    try:
        yield "rt34"
    finally:
        su.execute("DROP SCHEMA rt34 CASCADE")


@pytest.mark.parametrize("statement,index,table", [
    ("CREATE TABLE rt34.users (tenant_id uuid, email text UNIQUE)", "rt34.users_email_key", "rt34.users"),
    ("CREATE TABLE rt34.users (tenant_id uuid, email text, PRIMARY KEY (email))", "rt34.users_pkey", "rt34.users"),
    ("CREATE TABLE rt34.users (tenant_id uuid, email text, EXCLUDE USING btree (email WITH =))",
     "rt34.users_email_excl", "rt34.users"),
    ("CREATE TABLE app.events_u PARTITION OF app.events (UNIQUE (body)) FOR VALUES IN ('u')",
     "app.events_u_body_key", "app.events_u"),
    ("CREATE TABLE rt34.users (tenant_id uuid, email text, UNIQUE (email) INCLUDE (tenant_id))",
     "rt34.users_email_tenant_id_key", "rt34.users"),
    # the tenant column in the key, but compared with <>: it conflicts only between different tenants
    ("CREATE TABLE rt34.users (tenant_id uuid, email text, EXCLUDE USING gist (tenant_id WITH <>, email WITH =))",
     "rt34.users_tenant_id_email_excl", "rt34.users"),
    ("CREATE TABLE rt34.users (tenant_id uuid, email text, EXCLUDE USING gist (email WITH =, tenant_id WITH <>))",
     "rt34.users_email_tenant_id_excl", "rt34.users"),
    # a default that only looks generated: clients write whatever they like into a text or numeric column
    ("CREATE TABLE rt34.users (tenant_id uuid, email text DEFAULT gen_random_uuid() UNIQUE)",
     "rt34.users_email_key", "rt34.users"),
    ("CREATE TABLE rt34.users (tenant_id uuid, n numeric DEFAULT nextval('rt34.s') UNIQUE)",
     "rt34.users_n_key", "rt34.users"),
    # an exclusion constraint is never "generated": WITH <> conflicts with every other tenant's row
    ("CREATE TABLE rt34.users (tenant_id uuid, ref uuid DEFAULT gen_random_uuid(), EXCLUDE USING gist (ref WITH <>))",
     "rt34.users_ref_excl", "rt34.users"),
], ids=["unique", "primary key", "exclusion", "partition", "include", "tenant column with <>",
        "tenant column with <> last", "text with a uuid default", "numeric from a sequence",
        "exclusion on a generated column"])
def test_A34_a_new_protected_table_cannot_come_with_a_unique_key_across_tenants(owner, scoped_schema, su, statement,
                                                                                 index, table):
    """A collision with another tenant's value fails, which tells the writer the value exists."""
    su.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")   # trusted: an owner with CREATE could install it
    owner.execute("CREATE SEQUENCE rt34.s")
    assert fails(owner, statement) == ("42501", UNIQUE.format("CREATE TABLE", index, table))


def test_A34_unique_keys_per_tenant_or_generated_by_the_server_stay_allowed(owner, scoped_schema, su):
    su.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    owner.execute("CREATE TABLE rt34.users (tenant_id uuid, id bigserial PRIMARY KEY, email text, "
                  "ref uuid DEFAULT gen_random_uuid() UNIQUE, n int GENERATED ALWAYS AS IDENTITY UNIQUE, "
                  "UNIQUE (tenant_id, email), EXCLUDE USING gist (email WITH <>, tenant_id WITH =))")
    assert rows(su, "SELECT count(*) FROM tenant.scoped_tables WHERE table_name = 'rt34.users'::regclass") == [(1,)]


@pytest.mark.parametrize("how", ["attach", "inherit"])
def test_A34_a_table_attached_or_inherited_into_a_protected_one_cannot_bring_a_key_across_tenants(owner, su, how):
    """A table made earlier with UNIQUE (email) becomes part of a protected table: its key now spans every tenant's
    rows routed into it."""
    if how == "attach":
        owner.execute("CREATE TABLE app.rt34_accts (tenant_id uuid NOT NULL, id int, email text, region int NOT NULL) "
                      "PARTITION BY LIST (region)")
        owner.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.rt34_accts IS 'tenant_scoped'")
        statement = "ALTER TABLE app.rt34_accts ATTACH PARTITION app.rt34_accts_2 FOR VALUES IN (2)"
        what = "ALTER TABLE"
    else:
        owner.execute("CREATE TABLE app.rt34_accts (tenant_id uuid NOT NULL, id int, email text, region int NOT NULL)")
        owner.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.rt34_accts IS 'tenant_scoped'")
        statement = "ALTER TABLE app.rt34_accts_2 INHERIT app.rt34_accts"
        what = "ALTER TABLE"
    try:
        owner.execute("CREATE TABLE app.rt34_accts_2 (tenant_id uuid NOT NULL DEFAULT tenant.current_id(), id int, "
                      "email text, region int NOT NULL, UNIQUE (email))")
        assert fails(owner, statement) == ("42501", UNIQUE.format(what, "app.rt34_accts_2_email_key",
                                                                  "app.rt34_accts_2"))
    finally:
        su.execute("DROP TABLE IF EXISTS app.rt34_accts_2, app.rt34_accts")


@pytest.mark.parametrize("change", [
    "ALTER TABLE rt34.users ALTER COLUMN ref DROP DEFAULT",
    "ALTER TABLE rt34.users ALTER COLUMN ref SET DEFAULT md5(current_user)::uuid",
    "ALTER TABLE rt34.users ALTER COLUMN n DROP IDENTITY",
], ids=["drop default", "deterministic default", "drop identity"])
def test_A34_a_key_allowed_for_a_generated_column_is_judged_again_when_the_column_changes(owner, scoped_schema, change):
    """The key was allowed because the server generated its values; a later transaction makes them the client's (or
    guessable): the key would now tell a tenant which values another tenant holds."""
    owner.execute("CREATE TABLE rt34.users (tenant_id uuid, ref uuid DEFAULT gen_random_uuid() UNIQUE, "
                  "n int GENERATED BY DEFAULT AS IDENTITY UNIQUE)")
    column = "ref" if " ref " in change else "n"
    assert fails(owner, change) == ("42501", UNIQUE.format("ALTER TABLE", f"rt34.users_{column}_key", "rt34.users"))


def test_A34_a_generated_key_column_may_get_another_generated_default(owner, scoped_schema):
    owner.execute("CREATE TABLE rt34.users (tenant_id uuid, ref uuid DEFAULT gen_random_uuid() UNIQUE)")
    owner.execute("ALTER TABLE rt34.users ALTER COLUMN ref SET DEFAULT gen_random_uuid()")


def test_A34_a_table_moved_into_a_tenant_scoped_schema_is_protected_like_one_created_there(owner, scoped_schema, su):
    su.execute("CREATE SCHEMA rt34_stage AUTHORIZATION rt_owner")
    try:
        owner.execute("CREATE TABLE rt34_stage.contacts (tenant_id uuid, email text)")
        owner.execute("CREATE TABLE rt34_stage.countries (code text)")
        owner.execute("ALTER TABLE rt34_stage.contacts SET SCHEMA rt34")
        assert rows(su, "SELECT policy_intact FROM tenant.scoped_tables WHERE table_name = 'rt34.contacts'::regclass"
                    ) == [(True,)]
        # without the tenant column, it must be labelled global in the same transaction, as if created there
        owner.execute("BEGIN")
        owner.execute("ALTER TABLE rt34_stage.countries SET SCHEMA rt34")
        with pytest.raises(psycopg.errors.InvalidTableDefinition) as e:
            owner.execute("COMMIT")
        assert e.value.diag.message_primary == (
            'table rt34.countries is in a tenant_scoped schema but has no column "tenant_id"')
    finally:
        su.execute("DROP SCHEMA rt34_stage CASCADE")


def test_A34_children_of_a_protected_inheritance_parent_are_protected_too(owner, su, attacker, keys):
    owner.execute("CREATE TABLE app.rt34_parent (tenant_id uuid, v text)")
    owner.execute("CREATE TABLE app.rt34_child () INHERITS (app.rt34_parent)")
    owner.execute("CREATE TABLE app.rt34_grandchild () INHERITS (app.rt34_child)")
    try:
        owner.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.rt34_parent IS 'tenant_scoped'")
        assert rows(su, "SELECT table_name::text FROM tenant.scoped_tables WHERE table_name::text LIKE 'app.rt34%' "
                        "ORDER BY 1") == [("app.rt34_child",), ("app.rt34_grandchild",), ("app.rt34_parent",)]
        su.execute("INSERT INTO app.rt34_child VALUES (%s, 'a-child'), (%s, 'b-child')", (A, B))
        su.execute("GRANT SELECT ON app.rt34_parent, app.rt34_child TO rt_app")
        begin_as(attacker, keys, A)
        assert rows(attacker, "SELECT v FROM app.rt34_child") == [("a-child",)]
        attacker.execute("COMMIT")
    finally:
        su.execute("DROP TABLE app.rt34_parent CASCADE")


# ---------------------------------------------------------------------------------------------------------------
# A40. The audit, for administrators who are not superusers


def test_A40_the_audit_works_for_an_administrator_without_usage_on_the_owners_schema(su, owner):
    su.execute("DROP ROLE IF EXISTS rt_dba")
    su.execute("CREATE ROLE rt_dba LOGIN IN ROLE tenant_guard_admin")
    owner.execute("CREATE FUNCTION app.rt40_copy() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'")
    su.execute("CREATE TRIGGER rt40 BEFORE INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.rt40_copy()")
    owner.execute("REVOKE USAGE ON SCHEMA app FROM tenant_guard_admin")
    try:
        with psycopg.connect(dsn(user="rt_dba", dbname=DB), autocommit=True) as dba:
            found = rows(dba, "SELECT severity, object FROM tenant.audit() WHERE check_name = 'untrusted_code'")
        assert found == [("critical", "trigger rt40 on app.orders")]
    finally:
        su.execute("DROP TRIGGER rt40 ON app.orders; DROP FUNCTION app.rt40_copy(); DROP ROLE rt_dba")


# ---------------------------------------------------------------------------------------------------------------
# A41. Code run inside foreign-key actions, where PostgreSQL switches off row-level security for the owner


@pytest.fixture
def cascade(owner, su):
    """Two shared (global) tables of the owner, tied by a cascading foreign key, and a trigger on the child that
    tries to read and write every tenant's orders: PostgreSQL runs the cascade as the owner with row-level security
    off for the owner's tables (SECURITY_NOFORCE_RLS)."""
    owner.execute("BEGIN")
    owner.execute("CREATE TABLE app.rt41_parent (k int PRIMARY KEY)")
    owner.execute("CREATE TABLE app.rt41_child (k int REFERENCES app.rt41_parent (k) ON UPDATE CASCADE "
                  "ON DELETE SET DEFAULT DEFAULT 0)")
    owner.execute("CREATE TABLE app.rt41_log (v text)")
    for t in ("rt41_parent", "rt41_child", "rt41_log"):
        owner.execute(f"SECURITY LABEL FOR tenant_guard ON TABLE app.{t} IS 'global'")
    owner.execute("COMMIT")
    owner.execute("CREATE FUNCTION app.rt41_dump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "INSERT INTO app.rt41_log SELECT note FROM app.orders; "
                  "UPDATE app.orders SET note = 'owner-was-here'; RETURN NEW; END $$")
    owner.execute("CREATE TRIGGER rt41 BEFORE UPDATE ON app.rt41_child FOR EACH ROW EXECUTE FUNCTION app.rt41_dump()")
    owner.execute("INSERT INTO app.rt41_parent VALUES (0), (1); INSERT INTO app.rt41_child VALUES (1)")
    try:
        yield owner
    finally:
        assert rows(su, "SELECT count(*) FROM app.rt41_log") == [(0,)], "code in a cascade saw rows"
        assert superuser_orders(su) == ALL_ORDERS
        su.execute("DROP TABLE app.rt41_child, app.rt41_parent, app.rt41_log; DROP FUNCTION app.rt41_dump()")


NO_CONTEXT_IN_POLICY = ("42501", "no tenant context")


def test_A41_a_trigger_an_on_update_cascade_fires_does_not_see_other_tenants_rows(cascade):
    assert fails(cascade, "UPDATE app.rt41_parent SET k = 2 WHERE k = 1") == NO_CONTEXT_IN_POLICY


def test_A41_a_default_an_on_delete_set_default_computes_does_not_see_other_tenants_rows(cascade, owner):
    owner.execute("CREATE FUNCTION app.rt41_grab() RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
                  "INSERT INTO app.rt41_log SELECT note FROM app.orders; RETURN 0; END $$")
    owner.execute("ALTER TABLE app.rt41_child ALTER COLUMN k SET DEFAULT app.rt41_grab()")
    owner.execute("DROP TRIGGER rt41 ON app.rt41_child")
    assert fails(owner, "DELETE FROM app.rt41_parent WHERE k = 1") == NO_CONTEXT_IN_POLICY


def test_A41_a_tenant_whose_write_cascades_only_reaches_its_own_rows(cascade, su, attacker, keys):
    """Run by tenant A, the same trigger reads and writes A's rows only: row-level security applies inside it."""
    su.execute("GRANT UPDATE, SELECT ON app.rt41_parent TO rt_app; GRANT INSERT, SELECT ON app.rt41_log TO rt_app")
    begin_as(attacker, keys, A)
    attacker.execute("UPDATE app.rt41_parent SET k = 2 WHERE k = 1")
    assert rows(attacker, "SELECT v FROM app.rt41_log ORDER BY v") == [("a-order-1",), ("a-order-2",)]
    attacker.execute("ROLLBACK")


# ---------------------------------------------------------------------------------------------------------------
# A42. Code that runs a type or a query chosen at runtime, and partition keys


@pytest.mark.parametrize("check,function", [
    ("domain_in(note::cstring, 'app.rt33_spy'::regtype::oid, -1) IS NOT NULL", "domain_in(cstring,oid,integer)"),
    ("domain_in(note::cstring, 'app.rt33_spy'::text::regtype, -1) IS NOT NULL", "domain_in(cstring,oid,integer)"),
    ("array_in(('{' || note || '}')::cstring, 'app.rt33_spy'::regtype, -1) IS NOT NULL",
     "array_in(cstring,oid,integer)"),
    ("record_in(('(' || note || ')')::cstring, 'app.rt33_wrap'::regtype, -1) IS NOT NULL",
     "record_in(cstring,oid,integer)"),
], ids=["domain_in", "domain_in by name", "array_in", "record_in"])
def test_A42_input_functions_told_the_type_at_runtime_are_not_trusted(tools, attacker, keys, check, function):
    """No stored expression names the type: the input function runs whatever checks the type given at runtime has."""
    # where the type is a constant, PostgreSQL records it and its domain's own function is named first
    assert fails(tools, f"ALTER TABLE app.orders ADD CONSTRAINT rt33 CHECK ({check}) NOT VALID") in [
        ("42501", CODE.format("ALTER TABLE", "constraint rt33", f, "app.orders"))
        for f in (function, "app.rt33_leak(text)")]
    insert_as(attacker, keys, B, "b-secret")


def test_A42_an_untrusted_partition_key_cannot_take_a_protected_table(tools, su):
    """ATTACH PARTITION runs the parent's partition key over every row it attaches, before any check after the
    statement could refuse it."""
    tools.execute("CREATE FUNCTION app.rt42_key(text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS "
                  "$$ BEGIN PERFORM app.rt33_leak($1); RETURN 'zzz'; END $$")
    tools.execute("CREATE TABLE app.rt42_all (LIKE app.orders) PARTITION BY LIST ((app.rt42_key(note)))")
    try:
        assert fails(tools, "SECURITY LABEL FOR tenant_guard ON TABLE app.rt42_all IS 'tenant_scoped'") == (
            "42501", CODE.format("protecting it", "partition key of app.rt42_all", "app.rt42_key(text)",
                                 "app.rt42_all"))
        su.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.rt42_all IS 'tenant_scoped'")   # an administrator
        assert fails(tools, "ALTER TABLE app.rt42_all ATTACH PARTITION app.orders FOR VALUES IN ('zzz')") == (
            "42501", CODE.format("ATTACH PARTITION", "partition key of app.rt42_all", "app.rt42_key(text)",
                                 "app.rt42_all"))
    finally:
        su.execute("DROP TABLE app.rt42_all; DROP FUNCTION app.rt42_key(text)")


def test_A45_a_partition_bound_of_built_in_code_is_no_oracle(tools, su):
    """ATTACH PARTITION checks the bound against every row of the attached table: with a key of built-in code only
    (no untrusted function to refuse), a bound over another tenant's values would answer yes or no about them
    (red team on Citus, round 3, where the table was a worker's shard)."""
    tools.execute("CREATE TABLE app.rt45_all (LIKE app.orders) PARTITION BY LIST ((note = 'b-secret'))")
    try:
        tools.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.rt45_all IS 'tenant_scoped'")
        assert fails(tools, "ALTER TABLE app.rt45_all ATTACH PARTITION app.orders FOR VALUES IN (false)") == (
            "42501", "ATTACH PARTITION (its bound is checked against every row) is refused: it would read every "
                     "tenant's rows of table app.orders, which is protected by tenant_guard")
    finally:
        su.execute("DROP TABLE app.rt45_all")


def test_A42_no_partition_can_be_added_under_an_untrusted_key_an_administrator_left(tools, su):
    tools.execute("CREATE FUNCTION app.rt42_key(text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS "
                  "$$ BEGIN PERFORM app.rt33_leak($1); RETURN $1; END $$")
    su.execute("CREATE TABLE app.rt42_p (tenant_id uuid, note text) PARTITION BY LIST ((app.rt42_key(note)))")
    su.execute("CREATE TABLE app.rt42_p_default PARTITION OF app.rt42_p DEFAULT")
    su.execute("ALTER TABLE app.rt42_p OWNER TO rt_owner; ALTER TABLE app.rt42_p_default OWNER TO rt_owner")
    su.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.rt42_p IS 'tenant_scoped'")
    su.execute("INSERT INTO app.rt42_p VALUES (%s, 'b-secret')", (B,))
    try:
        assert fails(tools, "CREATE TABLE app.rt42_p_x PARTITION OF app.rt42_p FOR VALUES IN ('x')") == (
            "42501", CODE.format("CREATE TABLE", "partition key of app.rt42_p", "app.rt42_key(text)", "app.rt42_p"))
    finally:
        su.execute("TRUNCATE app.rt33_log")   # the administrator's insert ran the key: that was the administrator's
        su.execute("DROP TABLE app.rt42_p; DROP FUNCTION app.rt42_key(text)")


# ---------------------------------------------------------------------------------------------------------------
# A43. The owner's code reached by an administrator runs with the owner's rights


@pytest.fixture
def trojan(owner, su):
    """A trigger of the owner on a shared table that administrators seed, which tries to use an administrator's
    rights: trust its own issuer, make the owner's login a superuser."""
    owner.execute("CREATE FUNCTION app.rt43_hook() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "PERFORM tenant.trust_issuer('https://evil.test', "
                  "'{\"keys\":[{\"kty\":\"oct\",\"k\":\"" + "A" * 43 + "\"}]}'::jsonb, 'aud'); "
                  "RETURN NEW; END $$")
    owner.execute("CREATE TRIGGER rt43 BEFORE INSERT ON app.countries FOR EACH ROW EXECUTE FUNCTION app.rt43_hook()")
    su.execute("DROP ROLE IF EXISTS rt_dba")
    su.execute("CREATE ROLE rt_dba LOGIN IN ROLE tenant_guard_admin")
    su.execute("GRANT USAGE ON SCHEMA app TO rt_dba; GRANT INSERT ON app.countries TO rt_dba")
    try:
        yield owner
    finally:
        assert rows(su, "SELECT count(*) FROM tenant.issuers WHERE issuer = 'https://evil.test'") == [(0,)]
        su.execute("DROP TRIGGER rt43 ON app.countries; DROP FUNCTION app.rt43_hook()")
        su.execute("DELETE FROM app.countries; REVOKE ALL ON app.countries FROM rt_dba; "
                   "REVOKE USAGE ON SCHEMA app FROM rt_dba; DROP ROLE rt_dba")


DENIED_TRUST = ("42501", "permission denied for function trust_issuer")


def test_A43_an_administrator_seeding_a_table_does_not_lend_its_rights_to_the_owners_trigger(trojan):
    with psycopg.connect(dsn(user="rt_dba", dbname=DB), autocommit=True) as dba:
        assert fails(dba, "INSERT INTO app.countries VALUES ('FR')") == DENIED_TRUST


def test_A43_a_superuser_does_not_lend_its_rights_either(trojan, su):
    assert fails(su, "INSERT INTO app.countries VALUES ('FR')") == DENIED_TRUST
    su.execute("ALTER FUNCTION app.rt43_hook() OWNER TO postgres")   # reviewed and owned by a superuser: trusted
    su.execute("INSERT INTO app.countries VALUES ('FR')")
    su.execute("SELECT tenant.untrust_issuer('https://evil.test')")


# ---------------------------------------------------------------------------------------------------------------
# A44. Code PostgreSQL keeps from an earlier lookup: a type's functions, a domain's planned checks, inlined bodies


def test_A44_a_query_run_by_a_builtin_inside_a_foreign_key_action_is_refused(owner, su):
    """A domain check of PostgreSQL's own functions only: query_to_xml would run its query with row-level security
    off for the owner's tables. (The owner may not write such a domain itself: an administrator made it, then handed
    it over.)"""
    su.execute("CREATE DOMAIN app.rt44_d AS int CHECK (CASE WHEN row_security_active('app.orders') THEN true ELSE "
               "set_config('rt.loot', query_to_xml('SELECT note FROM app.orders', false, false, '')::text, false) "
               "IS NOT NULL END)")
    su.execute("ALTER DOMAIN app.rt44_d OWNER TO rt_owner")
    owner.execute("BEGIN")
    owner.execute("CREATE TABLE app.rt44_p (k int PRIMARY KEY)")
    owner.execute("CREATE TABLE app.rt44_c (k app.rt44_d REFERENCES app.rt44_p ON UPDATE CASCADE)")
    for t in ("rt44_p", "rt44_c"):
        owner.execute(f"SECURITY LABEL FOR tenant_guard ON TABLE app.{t} IS 'global'")
    owner.execute("COMMIT")
    try:
        owner.execute("INSERT INTO app.rt44_p VALUES (1); INSERT INTO app.rt44_c VALUES (1)")
        assert fails(owner, "UPDATE app.rt44_p SET k = k + 1") == (
            "42501", "function query_to_xml cannot run inside a foreign-key check or action (tenant_guard)")
        assert rows(owner, "SELECT current_setting('rt.loot', true)") in [[(None,)], [("",)]]
    finally:
        su.execute("DROP TABLE app.rt44_c, app.rt44_p; DROP DOMAIN app.rt44_d")


@pytest.fixture
def gist_range(owner, su):
    """A range type whose subtype_diff is the owner's, with a GiST index that calls it on every insert."""
    owner.execute("CREATE TABLE app.rt44_loot (v text)")
    owner.execute("GRANT INSERT ON app.rt44_loot TO PUBLIC")
    owner.execute("CREATE FUNCTION app.rt44_diff(a int4, b int4) RETURNS float8 LANGUAGE plpgsql IMMUTABLE AS $$ "
                  "BEGIN IF NOT row_security_active('app.orders') THEN "
                  "INSERT INTO app.rt44_loot SELECT note FROM app.orders; END IF; "
                  "IF pg_has_role(current_user, 'tenant_guard_admin', 'USAGE') THEN "
                  "PERFORM tenant.trust_issuer('https://evil44.test', "
                  "'{\"keys\":[{\"kty\":\"oct\",\"k\":\"" + "B" * 43 + "\"}]}'::jsonb); END IF; "
                  "RETURN a - b; END $$")
    owner.execute("CREATE TYPE app.rt44_r AS RANGE (subtype = int4, subtype_diff = app.rt44_diff)")
    owner.execute("BEGIN")
    owner.execute("CREATE TABLE app.rt44_keys (k int PRIMARY KEY)")
    owner.execute("CREATE TABLE app.rt44_shared (k int REFERENCES app.rt44_keys ON UPDATE CASCADE, name text, "
                  "rr app.rt44_r)")
    for t in ("rt44_keys", "rt44_shared", "rt44_loot"):
        owner.execute(f"SECURITY LABEL FOR tenant_guard ON TABLE app.{t} IS 'global'")
    owner.execute("COMMIT")
    owner.execute("CREATE INDEX ON app.rt44_shared USING gist (rr)")
    owner.execute("CREATE INDEX ON app.rt44_shared (k)")
    owner.execute("GRANT INSERT, SELECT ON app.rt44_shared TO PUBLIC")
    owner.execute("INSERT INTO app.rt44_keys VALUES (1)")
    owner.execute("INSERT INTO app.rt44_shared SELECT 1, g::text, int4range(g, g + 10)::text::app.rt44_r "
                  "FROM generate_series(1, 500) g")
    su.execute("TRUNCATE app.rt44_loot")
    try:
        yield owner
    finally:
        assert rows(su, "SELECT count(*) FROM app.rt44_loot") == [(0,)], "the type's function saw rows"
        assert rows(su, "SELECT count(*) FROM tenant.issuers WHERE issuer = 'https://evil44.test'") == [(0,)]
        su.execute("DROP TABLE app.rt44_shared, app.rt44_keys, app.rt44_loot; DROP TYPE app.rt44_r; "
                   "DROP FUNCTION app.rt44_diff")


def test_A44_a_type_function_looked_up_earlier_does_not_see_other_tenants_rows_in_a_cascade(gist_range):
    """The type's functions are looked up outside the foreign-key action, then called inside it."""
    gist_range.execute("SELECT '[1,5)'::app.rt44_r")             # loads the type's functions in this backend
    gist_range.execute("UPDATE app.rt44_keys SET k = 2")         # the cascade rewrites the GiST index entries


def test_A44_a_type_function_looked_up_earlier_still_runs_with_its_owners_rights_for_an_administrator(gist_range, su):
    su.execute("DROP ROLE IF EXISTS rt_dba")
    su.execute("CREATE ROLE rt_dba LOGIN IN ROLE tenant_guard_admin")
    su.execute("GRANT USAGE ON SCHEMA app TO rt_dba")
    try:
        with psycopg.connect(dsn(user="rt_dba", dbname=DB), autocommit=True) as dba:
            dba.execute("SELECT '[1,5)'::app.rt44_r")           # loads the type's functions in this backend
            # the owner's function runs, as its owner: it is no administrator, so it tries nothing
            dba.execute("INSERT INTO app.rt44_shared SELECT 1, 'x' || g, int4range(g, g + 3)::text::app.rt44_r "
                        "FROM generate_series(1, 200) g")
    finally:
        su.execute("REVOKE USAGE ON SCHEMA app FROM rt_dba; DROP ROLE rt_dba")


def test_A44_a_domain_check_planned_earlier_is_not_inlined_into_an_administrators_statement(owner, su):
    owner.execute("CREATE FUNCTION app.rt44_g(t text) RETURNS boolean LANGUAGE sql VOLATILE AS "
                  "$$ SELECT CASE WHEN pg_has_role(current_user, 'tenant_guard_admin', 'USAGE') THEN "
                  "tenant.trust_issuer('https://evil44.test', '{\"keys\":[{\"kty\":\"oct\",\"k\":\"" + "C" * 43 +
                  "\"}]}'::jsonb) IS NOT NULL ELSE true END $$")
    owner.execute("CREATE DOMAIN app.rt44_dd AS text CHECK (app.rt44_g(VALUE))")
    owner.execute("CREATE TABLE app.rt44_notes (body app.rt44_dd)")
    owner.execute("CREATE TABLE app.rt44_log (line text)")
    owner.execute("CREATE FUNCTION app.rt44_touch() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN PERFORM 'x'::app.rt44_dd; RETURN NEW; END $$")
    owner.execute("CREATE TRIGGER rt44 BEFORE INSERT ON app.rt44_log FOR EACH ROW EXECUTE FUNCTION app.rt44_touch()")
    owner.execute("GRANT INSERT ON app.rt44_notes, app.rt44_log TO PUBLIC")
    su.execute("DROP ROLE IF EXISTS rt_dba")
    su.execute("CREATE ROLE rt_dba LOGIN IN ROLE tenant_guard_admin")
    su.execute("GRANT USAGE ON SCHEMA app TO rt_dba")
    try:
        denied = ("42501", "permission denied for function trust_issuer")   # the owner may not call it
        with psycopg.connect(dsn(user="rt_dba", dbname=DB), autocommit=True) as dba:
            assert fails(dba, "INSERT INTO app.rt44_log VALUES ('migration 42')") == denied  # plans the check
            assert fails(dba, "INSERT INTO app.rt44_notes VALUES ('n2')") == denied         # runs it again
        assert rows(su, "SELECT count(*) FROM tenant.issuers WHERE issuer = 'https://evil44.test'") == [(0,)]
    finally:
        su.execute("REVOKE USAGE ON SCHEMA app FROM rt_dba; DROP ROLE rt_dba")
        su.execute("DROP TABLE app.rt44_notes, app.rt44_log; DROP DOMAIN app.rt44_dd; DROP FUNCTION app.rt44_g(text); "
                   "DROP FUNCTION app.rt44_touch()")
