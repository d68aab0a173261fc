"""tenant.audit(): each check is shown a clean schema (no row) and the bad case (its exact row).

Every test gets a fresh database with a clean SaaS schema: `app.customers` and `app.orders`, protected, owned by the
bootstrap superuser, with tenant-leading keys and a tenant-matching foreign key. Roles are cluster-wide, so checks
about roles look only at the roles the test creates."""

import psycopg
import pytest

from conftest import dsn, sqlstate

DB = "tg_audit"

CLEAN_SCHEMA = """
CREATE EXTENSION tenant_guard;
CREATE SCHEMA app;
CREATE TABLE app.customers (tenant_id uuid, id bigint GENERATED ALWAYS AS IDENTITY, email text NOT NULL,
                            PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, email));
CREATE TABLE app.orders (tenant_id uuid, id bigint GENERATED ALWAYS AS IDENTITY, customer_id bigint NOT NULL,
                         note text, PRIMARY KEY (tenant_id, id),
                         FOREIGN KEY (tenant_id, customer_id) REFERENCES app.customers (tenant_id, id));
SECURITY LABEL FOR tenant_guard ON TABLE app.customers IS 'tenant_scoped';
SECURITY LABEL FOR tenant_guard ON TABLE app.orders IS 'tenant_scoped';
CREATE TABLE app.countries (code text PRIMARY KEY, name text);
CREATE VIEW app.open_orders WITH (security_invoker = true) AS SELECT * FROM app.orders WHERE note IS NULL;
CREATE FUNCTION app.order_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM app.orders';
CREATE ROLE tg_audit_app LOGIN NOSUPERUSER NOBYPASSRLS;
GRANT USAGE ON SCHEMA app TO tg_audit_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON app.customers, app.orders TO tg_audit_app;
"""

ROLES = ("tg_audit_app", "tg_audit_bypass", "tg_audit_super", "tg_audit_owner", "tg_audit_deployer",
         "tg_audit_monitor")
ROLE_CHECKS = ("privileged_login_role", "owner_login_member", "statistics_reader_with_data_access")


@pytest.fixture
def db(database):
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        for role in ROLES:
            c.execute(f"DROP ROLE IF EXISTS {role}")
        c.execute(f"CREATE DATABASE {DB}")
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
        c.execute(CLEAN_SCHEMA)
        yield c
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        for role in ROLES:
            c.execute(f"DROP ROLE IF EXISTS {role}")


def audit(c, check=None):
    rows = c.execute("SELECT severity, check_name, object, detail, fix FROM tenant.audit()").fetchall()
    # roles are cluster-wide: other roles may exist on a shared test cluster; only ours count
    rows = [r for r in rows if r[1] not in ROLE_CHECKS or r[2].split(" ")[0] in ROLES + ("postgres",)]
    return [r for r in rows if check is None or r[1] == check]


def short(rows):
    return [(r[0], r[1], r[2]) for r in rows]


def test_clean_schema_has_no_findings_but_the_bootstrap_superuser(db):
    assert audit(db) == [(
        "info", "privileged_login_role", "postgres",
        "can log in and is a superuser, so row-level security does not confine it: it sees every tenant's rows",
        "the bootstrap superuser: use it for administration only, never for the application")]


def test_audit_is_for_administrators_only(db):
    db.execute("SET ROLE tg_audit_app")
    assert sqlstate(db, "SELECT * FROM tenant.audit()") == ("42501", "permission denied for function audit")
    db.execute("RESET ROLE")
    db.execute("CREATE ROLE tg_audit_owner NOLOGIN IN ROLE tenant_guard_admin")
    db.execute("SET ROLE tg_audit_owner")
    assert short(audit(db, "server_version")) == []


def test_unprotected_tenant_table(db):
    db.execute("CREATE TABLE app.invoices (tenant_id uuid, total numeric)")
    db.execute("CREATE TABLE public.invoices (tenant_id uuid, total numeric)")  # no protected table in public
    assert audit(db, "unprotected_tenant_table") == [(
        "critical", "unprotected_tenant_table", "app.invoices",
        "has the tenant column tenant_id like the protected tables of schema app, but is not protected: every tenant "
        "can read and write every row",
        "SECURITY LABEL FOR tenant_guard ON TABLE app.invoices IS 'tenant_scoped'; or label it 'global' if it is "
        "deliberately shared by all tenants")]
    db.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.invoices IS 'global'")
    assert audit(db, "unprotected_tenant_table") == []


def test_unprotected_tenant_table_with_a_custom_column(db):
    db.execute("CREATE SCHEMA crm")
    db.execute("CREATE TABLE crm.leads (org uuid, name text)")
    db.execute("SECURITY LABEL FOR tenant_guard ON TABLE crm.leads IS 'tenant_scoped column=org'")
    db.execute("CREATE TABLE crm.contacts (org uuid, tenant_id uuid, name text)")  # org is this schema's column
    assert short(audit(db, "unprotected_tenant_table")) == [("critical", "unprotected_tenant_table", "crm.contacts")]
    assert audit(db, "unprotected_tenant_table")[0][4].startswith(
        "SECURITY LABEL FOR tenant_guard ON TABLE crm.contacts IS 'tenant_scoped column=org';")


@pytest.mark.parametrize("change, problem", [
    ("ALTER TABLE app.orders NO FORCE ROW LEVEL SECURITY",
     "FORCE ROW LEVEL SECURITY is off, so the owner sees every tenant"),
    ("ALTER TABLE app.orders DISABLE ROW LEVEL SECURITY", "row-level security is disabled"),
    ("DROP POLICY tenant_isolation ON app.orders",
     "the tenant_isolation or tenant_access policy is missing or was altered"),
    ("ALTER POLICY tenant_access ON app.orders USING (true)",
     "the tenant_isolation or tenant_access policy is missing or was altered"),
    ("ALTER TABLE app.orders ALTER COLUMN tenant_id DROP DEFAULT", "the default of tenant_id is not tenant.current_id()"),
    ("ALTER TABLE app.orders ALTER COLUMN tenant_id SET DEFAULT gen_random_uuid()",
     "the default of tenant_id is not tenant.current_id()"),
])
def test_protection_altered_out_of_band(db, change, problem):
    db.execute(change)  # a superuser may; the tamper guard stops everyone else
    assert audit(db, "protection_altered") == [(
        "critical", "protection_altered", "app.orders", "its protection was changed: " + problem,
        "re-apply the protection (as a superuser or an administrator): "
        "SECURITY LABEL FOR tenant_guard ON TABLE app.orders IS 'tenant_scoped'")]
    db.execute(audit(db, "protection_altered")[0][4].split(": ", 1)[1])  # the fix, as given
    assert audit(db, "protection_altered") == []


def test_protection_altered_lists_every_problem(db):
    db.execute("ALTER TABLE app.orders NO FORCE ROW LEVEL SECURITY")
    db.execute("ALTER TABLE app.orders ALTER COLUMN tenant_id DROP DEFAULT")
    assert audit(db, "protection_altered")[0][3] == (
        "its protection was changed: FORCE ROW LEVEL SECURITY is off, so the owner sees every tenant; "
        "the default of tenant_id is not tenant.current_id()")


def test_privileged_login_roles(db):
    db.execute("CREATE ROLE tg_audit_bypass LOGIN BYPASSRLS")
    db.execute("CREATE ROLE tg_audit_super LOGIN SUPERUSER")
    db.execute("CREATE ROLE tg_audit_owner NOLOGIN BYPASSRLS")  # cannot log in: not listed
    assert audit(db, "privileged_login_role") == [
        ("warning", "privileged_login_role", "tg_audit_bypass",
         "can log in and has BYPASSRLS, so row-level security does not confine it: it sees every tenant's rows",
         "ALTER ROLE tg_audit_bypass NOBYPASSRLS; or make it NOLOGIN"),
        ("warning", "privileged_login_role", "tg_audit_super",
         "can log in and is a superuser, so row-level security does not confine it: it sees every tenant's rows",
         "if the application connects as it: ALTER ROLE tg_audit_super NOSUPERUSER NOBYPASSRLS; or make it NOLOGIN"),
        ("info", "privileged_login_role", "postgres",
         "can log in and is a superuser, so row-level security does not confine it: it sees every tenant's rows",
         "the bootstrap superuser: use it for administration only, never for the application"),
    ]


def test_app_role_owns_protected_table(db):
    db.execute("ALTER TABLE app.customers OWNER TO tg_audit_app")
    assert audit(db, "app_role_owns_table") == [(
        "critical", "app_role_owns_table", "app.customers",
        "is owned by tg_audit_app, which can log in and is not an administrator: as the owner it can drop the table "
        "with every tenant's rows and grant any privilege on it",
        "ALTER TABLE app.customers OWNER TO <a NOLOGIN role>; then GRANT the application only the privileges it "
        "needs")]
    db.execute("CREATE ROLE tg_audit_owner NOLOGIN")
    db.execute("ALTER TABLE app.customers OWNER TO tg_audit_owner")
    assert audit(db, "app_role_owns_table") == []


def test_owner_rights_views(db):
    db.execute("CREATE VIEW app.all_orders AS SELECT * FROM app.orders")
    db.execute("CREATE VIEW app.big_orders AS SELECT * FROM app.all_orders WHERE note <> ''")  # through a view
    db.execute("CREATE ROLE tg_audit_owner NOLOGIN")
    db.execute("GRANT USAGE ON SCHEMA app TO tg_audit_owner")
    db.execute("GRANT SELECT ON app.customers TO tg_audit_owner")
    db.execute("CREATE VIEW app.customer_names AS SELECT email FROM app.customers")
    db.execute("ALTER VIEW app.customer_names OWNER TO tg_audit_owner")
    db.execute("CREATE MATERIALIZED VIEW app.order_totals AS SELECT tenant_id, count(*) FROM app.orders GROUP BY 1")
    rows = audit(db, "owner_rights_view")
    assert short(rows) == [
        ("critical", "owner_rights_view", "app.all_orders"),
        ("critical", "owner_rights_view", "app.big_orders"),
        ("critical", "owner_rights_view", "app.order_totals"),
        ("warning", "owner_rights_view", "app.customer_names"),
    ]
    assert rows[0][3:] == (
        "reads protected table(s) app.orders with the rights of its owner postgres, not the caller's: the owner "
        "bypasses row-level security, so every caller sees every tenant's rows",
        "ALTER VIEW app.all_orders SET (security_invoker = true)")
    assert rows[2][3:] == (
        "is a materialized view of protected table(s) app.orders: it holds the rows its owner postgres saw at "
        "refresh time, under whatever tenant context was active, and serves them to every caller with no row-level "
        "security",
        "DROP MATERIALIZED VIEW app.order_totals; use a view WITH (security_invoker = true) instead")
    assert rows[3][3] == (
        "reads protected table(s) app.customers with the rights of its owner tg_audit_owner, not the caller's "
        "(the policies still confine it to the caller's tenant, but privileges are checked as the owner)")
    for view in ("app.all_orders", "app.big_orders", "app.customer_names"):
        db.execute(f"ALTER VIEW {view} SET (security_invoker = true)")
    db.execute("DROP MATERIALIZED VIEW app.order_totals")
    assert audit(db, "owner_rights_view") == []


def test_security_definer_functions(db):
    db.execute("CREATE FUNCTION app.all_orders() RETURNS bigint SECURITY DEFINER LANGUAGE plpgsql AS "
               "'BEGIN RETURN (SELECT count(*) FROM app.ORDERS); END'")
    db.execute("CREATE FUNCTION app.customer_count() RETURNS bigint SECURITY DEFINER LANGUAGE sql "
               "BEGIN ATOMIC SELECT count(*) FROM app.customers; END")
    db.execute("CREATE FUNCTION app.harmless() RETURNS int SECURITY DEFINER LANGUAGE sql AS 'SELECT 1'")
    db.execute("CREATE FUNCTION app.orders_sorted() RETURNS int SECURITY DEFINER LANGUAGE sql AS "
               "'SELECT 1 /* reorders */'")  # a word that only contains a table name
    assert audit(db, "definer_function") == [
        ("critical", "definer_function", "app.all_orders()",
         "is SECURITY DEFINER and reads protected table(s) app.orders with the rights of its owner postgres: the "
         "owner bypasses row-level security, so every caller sees every tenant's rows",
         "ALTER FUNCTION app.all_orders() SECURITY INVOKER; or make its owner a role without SUPERUSER and "
         "BYPASSRLS"),
        ("critical", "definer_function", "app.customer_count()",
         "is SECURITY DEFINER and reads protected table(s) app.customers with the rights of its owner postgres: "
         "the owner bypasses row-level security, so every caller sees every tenant's rows",
         "ALTER FUNCTION app.customer_count() SECURITY INVOKER; or make its owner a role without SUPERUSER and "
         "BYPASSRLS"),
    ]
    db.execute("CREATE ROLE tg_audit_owner NOLOGIN")
    db.execute("ALTER FUNCTION app.all_orders() OWNER TO tg_audit_owner")
    db.execute("ALTER FUNCTION app.customer_count() SECURITY INVOKER")
    assert short(audit(db, "definer_function")) == [("warning", "definer_function", "app.all_orders()")]


UNIQUE_DETAIL = ("is {} across tenants: its key does not compare the tenant column tenant_id for equality: an insert or "
                 "update that collides with another tenant's value fails, which tells the caller that the value exists")
UNIQUE_FIX = "make it unique per tenant: put tenant_id in the key, for example UNIQUE (tenant_id, ...)"


def test_unique_without_tenant_column(db):
    db.execute("ALTER TABLE app.customers ADD CONSTRAINT customers_email_key UNIQUE (email)")
    db.execute("CREATE UNIQUE INDEX orders_note_idx ON app.orders (lower(note))")
    db.execute("ALTER TABLE app.orders ADD COLUMN ref bigint GENERATED ALWAYS AS IDENTITY UNIQUE")
    assert audit(db, "unique_without_tenant") == [
        ("warning", "unique_without_tenant", "app.customers_email_key on app.customers", UNIQUE_DETAIL.format("unique"),
         UNIQUE_FIX),
        ("warning", "unique_without_tenant", "app.orders_note_idx on app.orders", UNIQUE_DETAIL.format("unique"),
         UNIQUE_FIX),
        ("info", "unique_without_tenant", "app.orders_ref_key on app.orders",
         UNIQUE_DETAIL.format("unique") + " (its columns are generated by the server, so there is little to learn)",
         UNIQUE_FIX),
    ]


def test_unique_with_the_tenant_column_only_in_include_or_an_exclusion_is_an_oracle_too(db):
    # INCLUDE columns are stored, not compared: UNIQUE (email) INCLUDE (tenant_id) is unique across tenants
    db.execute("ALTER TABLE app.customers ADD CONSTRAINT customers_email_incl UNIQUE (email) INCLUDE (tenant_id)")
    db.execute("CREATE EXTENSION btree_gist")
    db.execute("ALTER TABLE app.orders ADD CONSTRAINT orders_note_excl EXCLUDE USING gist (note WITH =)")
    db.execute("ALTER TABLE app.orders ADD CONSTRAINT orders_note_tenant_excl "
               "EXCLUDE USING gist (tenant_id WITH =, note WITH =)")  # per tenant: fine
    # the tenant column compared with <>: conflicts only between different tenants
    db.execute("ALTER TABLE app.orders ADD CONSTRAINT orders_note_other_tenant_excl "
               "EXCLUDE USING gist (tenant_id WITH <>, note WITH =)")
    assert audit(db, "unique_without_tenant") == [
        ("warning", "unique_without_tenant", "app.customers_email_incl on app.customers",
         UNIQUE_DETAIL.format("unique"), UNIQUE_FIX),
        ("warning", "unique_without_tenant", "app.orders_note_excl on app.orders",
         UNIQUE_DETAIL.format("an exclusion constraint"), UNIQUE_FIX),
        ("warning", "unique_without_tenant", "app.orders_note_other_tenant_excl on app.orders",
         UNIQUE_DETAIL.format("an exclusion constraint"), UNIQUE_FIX),
    ]


def test_foreign_key_from_an_unprotected_table_into_a_protected_one(db):
    db.execute("CREATE TABLE app.notes (customer_tenant uuid, customer_id bigint, body text, "
               "FOREIGN KEY (customer_tenant, customer_id) REFERENCES app.customers (tenant_id, id))")
    assert audit(db, "foreign_key_without_tenant") == [(
        "critical", "foreign_key_without_tenant", "notes_customer_tenant_customer_id_fkey on app.notes",
        "references protected table app.customers from a table that is not protected: whoever can write to it can "
        "probe any tenant's keys (foreign-key checks ignore row-level security), and the error for a missing key "
        "tells whether some tenant has it",
        "protect app.notes too, with the tenant column in the key")]


def test_foreign_key_without_tenant_column(db):
    db.execute("ALTER TABLE app.customers ADD COLUMN code text UNIQUE")
    db.execute("ALTER TABLE app.orders ADD COLUMN customer_code text REFERENCES app.customers (code)")
    db.execute("ALTER TABLE app.orders ADD COLUMN other_tenant uuid")
    db.execute("ALTER TABLE app.orders ADD CONSTRAINT cross_ref FOREIGN KEY (other_tenant, customer_id) "
               "REFERENCES app.customers (tenant_id, id)")  # a tenant column, but not the row's own
    assert short(audit(db, "foreign_key_without_tenant")) == [
        ("critical", "foreign_key_without_tenant", "cross_ref on app.orders"),
        ("critical", "foreign_key_without_tenant", "orders_customer_code_fkey on app.orders"),
    ]
    assert audit(db, "foreign_key_without_tenant")[0][3:] == (
        "references app.customers without matching tenant_id to tenant_id: a row of one tenant can reference "
        "another tenant's row (foreign-key checks ignore row-level security), and the error for a missing key tells "
        "whether another tenant has it",
        "add the tenant column to the key: FOREIGN KEY (tenant_id, ...) REFERENCES app.customers (tenant_id, ...), "
        "with a UNIQUE (tenant_id, ...) on the referenced table")


def test_no_index_leading_with_tenant_column(db):
    db.execute("CREATE TABLE app.events (id bigint PRIMARY KEY, tenant_id uuid, at timestamptz)")
    db.execute("CREATE INDEX ON app.events (at, tenant_id)")  # has the column, but not first
    db.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.events IS 'tenant_scoped'")
    assert audit(db, "no_tenant_index") == [(
        "warning", "no_tenant_index", "app.events",
        "has no index that leads with tenant_id: every query scans every tenant's rows and filters them",
        "CREATE INDEX ON app.events (tenant_id, ...)")]
    db.execute("CREATE INDEX ON app.events (tenant_id, at)")
    assert audit(db, "no_tenant_index") == []


def test_permissive_always_true_policies(db):
    db.execute("CREATE POLICY see_all ON app.orders USING (true)")
    db.execute("CREATE POLICY insert_any ON app.customers FOR INSERT WITH CHECK (1 = 1)")
    db.execute("CREATE POLICY narrow ON app.customers AS RESTRICTIVE USING (true)")  # restrictive: harmless
    db.execute("CREATE POLICY real_rule ON app.orders USING (note IS NOT NULL)")
    assert short(audit(db, "permissive_always_true")) == [
        ("warning", "permissive_always_true", "insert_any on app.customers"),
        ("warning", "permissive_always_true", "see_all on app.orders"),
    ]
    assert audit(db, "permissive_always_true")[1][3:] == (
        "is a PERMISSIVE policy whose expression is always true: the RESTRICTIVE tenant_isolation policy still "
        "confines it to the tenant, but it grants its roles every row of the tenant, and every tenant's rows if the "
        "table is ever unprotected",
        "DROP POLICY see_all ON app.orders; or give it a real condition")


def test_truncate_granted_to_non_admin_roles(db):
    db.execute("GRANT TRUNCATE ON app.orders TO tg_audit_app, PUBLIC")
    db.execute("CREATE ROLE tg_audit_owner NOLOGIN IN ROLE tenant_guard_admin")
    db.execute("GRANT TRUNCATE ON app.customers TO tg_audit_owner")  # an administrator: fine
    assert audit(db, "truncate_granted") == [
        ("warning", "truncate_granted", "app.orders",
         "grants TRUNCATE to PUBLIC; TRUNCATE ignores row-level security (tenant_guard refuses it for roles that are "
         "not administrators, but the grant should go)", "REVOKE TRUNCATE ON app.orders FROM PUBLIC"),
        ("warning", "truncate_granted", "app.orders",
         "grants TRUNCATE to tg_audit_app; TRUNCATE ignores row-level security (tenant_guard refuses it for roles "
         "that are not administrators, but the grant should go)", "REVOKE TRUNCATE ON app.orders FROM tg_audit_app"),
    ]


@pytest.mark.parametrize("old,minimum", [(150013, "15.14"), (160009, "16.10"), (170005, "17.6")])
def test_server_older_than_its_majors_minimum(db, old, minimum):
    this = int(db.execute("SHOW server_version_num").fetchone()[0])
    assert audit(db, "server_version") == [], this
    rows = db.execute("SELECT * FROM tenant._audit(%s) WHERE check_name = 'server_version'", (old,)).fetchall()
    major = old // 10000
    assert rows == [(
        "critical", "server_version", "server",
        f"PostgreSQL {major}.{old % 10000} is older than {minimum}: it leaks rows hidden by row-level security "
        "through planner statistics (CVE-2025-8713) and has other fixed RLS bugs",
        f"upgrade to the latest PostgreSQL {major} minor release ({minimum} or later)")]
    assert db.execute("SELECT count(*) FROM tenant._audit(%s) WHERE check_name = 'server_version'",
                      (old + 1,)).fetchone()[0] == 0


def test_every_release_of_18_is_supported(db):
    assert db.execute("SELECT count(*) FROM tenant._audit(180000) WHERE check_name = 'server_version'"
                      ).fetchone()[0] == 0


def test_indexes_that_do_not_lead_with_the_tenant_column(db):
    db.execute("CREATE INDEX orders_note_idx ON app.orders (note)")
    db.execute("CREATE INDEX orders_note_tenant_idx ON app.orders (note, tenant_id)")
    db.execute("CREATE INDEX orders_tenant_note_idx ON app.orders (tenant_id, note)")  # leads: fine
    detail = ("does not lead with the tenant column tenant_id: a scan of it reads every tenant's entries in its range, "
              "so its timing tells how many other tenants' rows match (its counters are hidden by "
              "tenant_guard.hide_statistics)")
    fix = "CREATE INDEX ON app.orders (tenant_id, ...) with the same columns after the tenant column, then drop this one"
    assert audit(db, "index_without_tenant_lead") == [
        ("info", "index_without_tenant_lead", "app.orders_note_idx on app.orders", detail, fix),
        ("info", "index_without_tenant_lead", "app.orders_note_tenant_idx on app.orders", detail, fix)]
    db.execute("SET tenant_guard.hide_statistics = off")  # then its counters leak too: a warning
    assert short(audit(db, "index_without_tenant_lead"))[0] == (
        "warning", "index_without_tenant_lead", "app.orders_note_idx on app.orders")


def test_unprotected_parent_and_child(db):
    # (a protected table without an identity column: from PostgreSQL 17 a partition may not have its own)
    db.execute("CREATE TABLE app.archived (tenant_id uuid, id int, note text)")
    db.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.archived IS 'tenant_scoped'")
    db.execute("CREATE TABLE app.all_archived (LIKE app.archived) PARTITION BY RANGE (id)")
    db.execute("ALTER TABLE app.all_archived ATTACH PARTITION app.archived FOR VALUES FROM (MINVALUE) TO (MAXVALUE)")
    db.execute("CREATE TABLE app.old_customers (LIKE app.customers)")
    db.execute("ALTER TABLE app.old_customers INHERIT app.customers")  # a superuser: allowed, then labelled
    db.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.old_customers IS 'global'")
    assert audit(db, "unprotected_parent") == [(
        "critical", "unprotected_parent", "app.archived",
        "is a partition or child of app.all_archived, which is not protected with the same label: a query on "
        "app.all_archived reads its rows under the parent's row-level security only, so every tenant's rows",
        "SECURITY LABEL FOR tenant_guard ON TABLE app.all_archived IS 'tenant_scoped'; or detach app.archived from it")]
    assert audit(db, "unprotected_child") == [(
        "critical", "unprotected_child", "app.old_customers",
        "is a partition or child of protected table app.customers but is not protected with the same label: queried "
        "directly, it shows every tenant's rows it holds",
        "SECURITY LABEL FOR tenant_guard ON TABLE app.old_customers IS 'tenant_scoped'")]
    db.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.all_archived IS 'tenant_scoped'")
    db.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.old_customers IS 'tenant_scoped'")
    assert audit(db, "unprotected_parent") == [] and audit(db, "unprotected_child") == []


def test_untrusted_code_on_protected_tables(db):
    db.execute("CREATE ROLE tg_audit_owner NOLOGIN")
    db.execute("GRANT CREATE, USAGE ON SCHEMA app TO tg_audit_owner")
    db.execute("SET ROLE tg_audit_owner")
    db.execute("CREATE TABLE app.log (body text)")
    db.execute("CREATE FUNCTION app.copy() RETURNS trigger LANGUAGE plpgsql AS "
               "'BEGIN INSERT INTO app.log VALUES (NEW.note); RETURN NEW; END'")
    db.execute("CREATE FUNCTION app.peek(text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT $1'")
    db.execute("RESET ROLE")
    # created before the guard existed, or by an administrator on behalf of the owner
    db.execute("CREATE TRIGGER copy AFTER INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.copy()")
    db.execute("CREATE INDEX orders_peek ON app.orders (tenant_id, app.peek(note))")
    db.execute("CREATE RULE keep AS ON DELETE TO app.customers DO ALSO INSERT INTO app.log VALUES (OLD.email)")
    db.execute("CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'")
    db.execute("CREATE TRIGGER touch BEFORE INSERT ON app.customers FOR EACH ROW EXECUTE FUNCTION app.touch()")
    assert audit(db, "untrusted_code") == [
        ("critical", "untrusted_code", "index app.orders_peek on app.orders",
         "calls app.peek(text), which is not trusted with every tenant's rows (owned by tg_audit_owner, which is not a "
         "superuser or an administrator): it sees every tenant's rows the table holds or receives",
         "have an administrator review and own the function (ALTER FUNCTION app.peek(text) OWNER TO <an "
         "administrator>), or drop the index app.orders_peek"),
        ("critical", "untrusted_code", "rule keep on app.customers",
         "is a rule: its actions receive every row that any tenant writes, and can copy them anywhere",
         "drop the rule keep"),
        ("critical", "untrusted_code", "trigger copy on app.orders",
         "calls app.copy(), which is not trusted with every tenant's rows (owned by tg_audit_owner, which is not a "
         "superuser or an administrator): it sees every tenant's rows the table holds or receives",
         "have an administrator review and own the function (ALTER FUNCTION app.copy() OWNER TO <an "
         "administrator>), or drop the trigger copy"),
    ]  # app.touch() is a superuser's: trusted


def test_login_members_of_an_owner_role(db):
    db.execute("CREATE ROLE tg_audit_owner NOLOGIN")
    db.execute("ALTER TABLE app.orders OWNER TO tg_audit_owner")
    db.execute("CREATE ROLE tg_audit_deployer LOGIN IN ROLE tg_audit_owner")
    assert audit(db, "owner_login_member") == [(
        "warning", "owner_login_member", "tg_audit_deployer (owner of app.orders)",
        "can log in and is a member of tg_audit_owner, which owns protected tables: it can drop them with every "
        "tenant's rows, add columns, plain indexes and grants (the tamper guard refuses anything that would read "
        "other tenants' rows)",
        "run migrations through it only; REVOKE tg_audit_owner FROM tg_audit_deployer when it is not a deployment "
        "role, or GRANT tenant_guard_admin to it if it is trusted with every tenant's rows")]
    db.execute("GRANT tenant_guard_admin TO tg_audit_deployer")
    assert audit(db, "owner_login_member") == []


def test_statistics_visible_and_monitoring_roles_with_data_access(db):
    assert audit(db, "statistics_visible") == []
    db.execute("SET tenant_guard.hide_statistics = off")
    assert short(audit(db, "statistics_visible")) == [
        ("warning", "statistics_visible", "tenant_guard.hide_statistics")]
    db.execute("RESET tenant_guard.hide_statistics")
    db.execute("CREATE ROLE tg_audit_monitor LOGIN IN ROLE pg_monitor")
    assert audit(db, "statistics_reader_with_data_access") == []  # monitoring without data access: fine
    db.execute("GRANT pg_monitor TO tg_audit_app")
    assert audit(db, "statistics_reader_with_data_access") == [(
        "warning", "statistics_reader_with_data_access", "tg_audit_app",
        "can log in, has pg_read_all_stats (directly or through pg_monitor) and privileges on protected tables: as "
        "the application it can read counters of every tenant's rows and every session's statement text",
        "keep monitoring and the application apart: REVOKE pg_monitor, pg_read_all_stats FROM tg_audit_app, and "
        "monitor with a role that has no privileges on tenant tables")]


def test_partitions_and_partial_indexes_that_count_one_tenant(db):
    """pg_class.reltuples of a partition by tenant, or of an index WHERE tenant_id = ..., counts one tenant's rows."""
    db.execute("CREATE TABLE app.events (tenant_id uuid NOT NULL, at date, body text) PARTITION BY LIST (tenant_id)")
    db.execute("CREATE TABLE app.events_big PARTITION OF app.events "
               "FOR VALUES IN ('b0b0b0b0-0000-4000-8000-00000000000b')")
    db.execute("SECURITY LABEL FOR tenant_guard ON TABLE app.events IS 'tenant_scoped'")
    db.execute("CREATE INDEX orders_big ON app.orders (id) WHERE tenant_id = 'b0b0b0b0-0000-4000-8000-00000000000b'")
    db.execute("CREATE INDEX orders_open ON app.orders (tenant_id, id) WHERE note IS NULL")   # not per tenant
    assert audit(db, "tenant_sized_relation") == [
        ("warning", "tenant_sized_relation", "app.events_big",
         "is a partition of app.events, which is partitioned by the tenant column tenant_id: its row count in "
         "pg_class.reltuples, which every role can read, counts the rows of the tenants it holds",
         "partition by something other than the tenant column, or drop the tenant from the index predicate"),
        ("warning", "tenant_sized_relation", "app.orders_big",
         "is a partial index of app.orders whose predicate names the tenant column tenant_id: its row count in "
         "pg_class.reltuples, which every role can read, counts the rows of the tenants it holds",
         "partition by something other than the tenant column, or drop the tenant from the index predicate")]
