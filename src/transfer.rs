//! Moving and exporting one tenant: `tenant.export(tenant)` gives its rows from every protected table, its data
//! keys (wrapped, never in the clear) and a count and checksum per table, as one jsonb document;
//! `tenant.import(document)` loads it into another database with the same schema and verifies the counts and
//! checksums there; `tenant.purge(tenant)` removes the tenant from the source, rows first, then its keys shredded.
//!
//! **What is exported.** Every table `tenant.scoped_tables` lists that holds rows of the tenant, once: a partitioned table with all its partitions
//! (a partition is not exported again on its own), any other table without its inheritance children (`ONLY`). Of
//! each, the tenant's rows (the tenant column equal to it), as `to_jsonb` of the stored columns (generated columns are
//! recomputed on import); ciphertexts are bytea values, copied as they are: they are bound to the tenant, the key
//! version and their context, not to the database, so they decrypt wherever the tenant's keys are.
//!
//! **Checksums.** Per table, the SHA-256 of the rows' jsonb texts in sorted order, one per line: computed when
//! exporting, and again over what the import wrote. A mismatch (a row lost or changed, a column converted
//! differently) rolls the import back.
//!
//! **Keys.** Exported as stored: wrapped by the master key (or by the tenant's own key, see `keys`), bound to the
//! tenant and the version. The importing database must unwrap them with the same master key, or with the exporting
//! server's key configured as `tenant_guard.kek_previous_*` (then `tenant.rewrap_keys()`).
//!
//! **Rights.** The functions are for administrators and run as the bootstrap superuser to read and write the keys;
//! each table's rows are read, written and deleted as the table's owner, in the tenant's context (see
//! `privileged::as_owner_in_tenant`): row-level security confines every statement to the tenant, and code the owner
//! attached to a table (triggers, defaults, constraints, index expressions, cascades) never runs with raised rights.
//!
//! **Order.** Tables are loaded so that a table comes after the tables its foreign keys reference (among those
//! exported), and purged in the reverse order.

use crate::errors;
use crate::uuids::{from_pg, to_pg};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};
use uuid::Uuid;

/// The format this module writes and reads.
const FORMAT: &str = "tenant_guard tenant export v1";

/// A protected table as exported: its name (regclass text), tenant column, stored columns, and whether to read it
/// without its children (`ONLY`).
struct Table {
    oid: pg_sys::Oid,
    /// Its owner: the tenant's rows are read and written as the owner, in the tenant's context.
    owner: pg_sys::Oid,
    name: String,
    tenant_column: String,
    columns: Vec<String>,
    only: bool,
}

fn spi_error<T>(what: &str) -> impl FnOnce(pgrx::spi::Error) -> T + '_ {
    move |e| errors::internal(format!("tenant_guard could not {what}: {e}"))
}

fn tenant_required(tenant: Option<pgrx::Uuid>) -> Uuid {
    let Some(tenant) = tenant else { errors::invalid_parameter("tenant must not be NULL".into(), None) };
    let tenant = from_pg(&tenant);
    if tenant.is_nil() {
        errors::invalid_parameter("the nil uuid is not a tenant".into(), None);
    }
    tenant
}

fn quote(ident: &str) -> String {
    pgrx::spi::quote_identifier(ident)
}

/// The protected tables of this database, each once, parents before the tables that reference them.
fn tables() -> Vec<Table> {
    type Listed = (pg_sys::Oid, pg_sys::Oid, String, String, bool, Vec<String>);
    let rows: Vec<Listed> = Spi::connect(|client| {
        client
            .select(
                "SELECT c.oid, c.relowner, s.table_name::pg_catalog.text, s.tenant_column::pg_catalog.text, \
                        c.relkind OPERATOR(pg_catalog.<>) 'p', \
                        (SELECT pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY a.attnum) \
                           FROM pg_catalog.pg_attribute a \
                          WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 \
                            AND NOT a.attisdropped AND a.attgenerated OPERATOR(pg_catalog.=) '') \
                   FROM tenant.scoped_tables s \
                   JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.table_name::pg_catalog.oid \
                  WHERE NOT (c.relispartition AND EXISTS ( \
                            SELECT 1 FROM pg_catalog.pg_partition_ancestors(c.oid) p \
                              JOIN tenant.scoped_tables o ON o.table_name::pg_catalog.oid OPERATOR(pg_catalog.=) p.relid \
                             WHERE p.relid OPERATOR(pg_catalog.<>) c.oid)) \
                  ORDER BY 3",
                None,
                &[],
            )
            .unwrap_or_else(spi_error("list the protected tables"))
            .filter_map(|r| {
                Some((
                    r.get::<pg_sys::Oid>(1).ok()??,
                    r.get::<pg_sys::Oid>(2).ok()??,
                    r.get::<String>(3).ok()??,
                    r.get::<String>(4).ok()??,
                    r.get::<bool>(5).ok()??,
                    r.get::<Vec<String>>(6).ok()??,
                ))
            })
            .collect()
    });
    let edges: Vec<(pg_sys::Oid, pg_sys::Oid)> = Spi::connect(|client| {
        client
            .select(
                "SELECT conrelid, confrelid FROM pg_catalog.pg_constraint \
                  WHERE contype OPERATOR(pg_catalog.=) 'f' AND conrelid OPERATOR(pg_catalog.<>) confrelid",
                None,
                &[],
            )
            .unwrap_or_else(spi_error("read the foreign keys"))
            .filter_map(|r| Some((r.get::<pg_sys::Oid>(1).ok()??, r.get::<pg_sys::Oid>(2).ok()??)))
            .collect()
    });
    let mut pending: Vec<Table> = rows
        .into_iter()
        .map(|(oid, owner, name, tenant_column, only, columns)| Table {
            oid,
            owner,
            name,
            tenant_column,
            columns,
            only,
        })
        .collect();
    // Kahn's order: a table once every table it references (among the pending ones) is placed; a cycle keeps the
    // name order (its rows must then be loaded with deferrable constraints)
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending.iter().position(|t| {
            !edges.iter().any(|(from, to)| *from == t.oid && pending.iter().any(|p| p.oid == *to && p.oid != t.oid))
        });
        ordered.push(pending.remove(ready.unwrap_or(0)));
    }
    ordered
}

/// The rows of `tenant` in `table` as (count, checksum, rows as JSON text), read as the table's owner in the
/// tenant's context. The rows stay text in Rust: a value of any depth (a jsonb column) passes through unparsed.
fn read_rows(table: &Table, tenant: &Uuid) -> (i64, String, String) {
    crate::privileged::as_owner_in_tenant(table.owner, *tenant, || read_rows_here(table, tenant))
}

fn read_rows_here(table: &Table, tenant: &Uuid) -> (i64, String, String) {
    let from = format!("{}{}", if table.only { "ONLY " } else { "" }, table.name);
    let columns: Vec<String> = table.columns.iter().map(|c| quote(c)).collect();
    let sql = format!(
        "WITH r AS (SELECT pg_catalog.to_jsonb(x) AS j FROM (SELECT {} FROM {from} WHERE {} OPERATOR(pg_catalog.=) $1) x) \
         SELECT pg_catalog.count(*), \
                pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to( \
                    COALESCE(pg_catalog.string_agg(j::pg_catalog.text, E'\\n' ORDER BY j::pg_catalog.text), ''), \
                    'UTF8')), 'hex'), \
                COALESCE(pg_catalog.jsonb_agg(j ORDER BY j::pg_catalog.text), '[]')::pg_catalog.text \
           FROM r",
        columns.join(", "),
        quote(&table.tenant_column),
    );
    Spi::get_three_with_args::<i64, String, String>(&sql, &[to_pg(tenant).into()])
        .map(|(n, sum, rows)| (n.unwrap_or(0), sum.unwrap_or_default(), rows.unwrap_or_else(|| "[]".into())))
        .unwrap_or_else(spi_error("read a protected table"))
}

/// The tenant's data key rows, wrapped as stored: (version, state, wrapped as base64, created, retired, destroyed).
fn read_keys(tenant: &Uuid) -> Value {
    Spi::get_one_with_args::<JsonB>(
        "SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object( \
                    'version', version, 'state', state, \
                    'wrapped', pg_catalog.encode(wrapped, 'base64'), 'created_at', created_at, \
                    'retired_at', retired_at, 'destroyed_at', destroyed_at) ORDER BY version), '[]') \
           FROM tenant.data_key WHERE tenant OPERATOR(pg_catalog.=) $1",
        &[to_pg(tenant).into()],
    )
    .unwrap_or_else(spi_error("read tenant.data_key"))
    .map_or(json!([]), |j| j.0)
}

/// One tenant's rows from every protected table, its wrapped data keys, and a count and checksum per table.
/// The document as JSON text. Its small parts are built here; each table's rows are spliced in as the text
/// PostgreSQL produced, assembled into one jsonb by PostgreSQL.
pub fn export(tenant: &Uuid) -> String {
    crate::citus::replication::check_admin_here("export a tenant");
    // the tables that hold rows of the tenant (a table without any carries nothing, and need not exist where the
    // export is imported)
    let mut entries: Vec<String> = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    for t in tables() {
        let (count, checksum, table_rows) = read_rows(&t, tenant);
        if count > 0 {
            entries.push(
                json!({
                    "table": t.name, "tenant_column": t.tenant_column, "columns": t.columns,
                    "count": count, "checksum": checksum,
                })
                .to_string(),
            );
            rows.push(table_rows);
        }
    }
    let head = json!({
        "format": FORMAT,
        "tenant": tenant.to_string(),
        "keys": read_keys(tenant),
        "key_provider": crate::keys::own_key_ref(tenant),
    })
    .to_string();
    Spi::get_one_with_args::<String>(
        "SELECT ($1::pg_catalog.jsonb OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object( \
                    'database', pg_catalog.current_database()::pg_catalog.text, \
                    'tables', COALESCE((SELECT pg_catalog.jsonb_agg(e::pg_catalog.jsonb OPERATOR(pg_catalog.||) \
                                                pg_catalog.jsonb_build_object('rows', r::pg_catalog.jsonb) ORDER BY o) \
                                          FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), \
                                                         pg_catalog.unnest($3::pg_catalog.text[])) \
                                               WITH ORDINALITY AS u(e, r, o)), '[]')))::pg_catalog.text",
        &[head.into(), entries.into(), rows.into()],
    )
    .unwrap_or_else(spi_error("assemble the export"))
    .unwrap_or_else(|| errors::internal("tenant_guard could not assemble the export".into()))
}

/// Splits an export document (JSON text) into its skeleton, every table without its rows, parsed here, and each
/// table's rows, kept as text with their count (None: not an array). PostgreSQL takes the document apart.
fn split(document: &str) -> (Value, Vec<Option<(String, i64)>>) {
    let (skeleton, rows, counts) = Spi::get_three_with_args::<String, Vec<Option<String>>, Vec<Option<i64>>>(
        "WITH d AS (SELECT $1::pg_catalog.jsonb AS d), \
              t AS (SELECT e, o FROM d, pg_catalog.jsonb_array_elements( \
                        CASE WHEN pg_catalog.jsonb_typeof(d.d) OPERATOR(pg_catalog.=) 'object' \
                              AND pg_catalog.jsonb_typeof(d.d OPERATOR(pg_catalog.->) 'tables') \
                                  OPERATOR(pg_catalog.=) 'array' \
                             THEN d.d OPERATOR(pg_catalog.->) 'tables' ELSE '[]' END) WITH ORDINALITY AS a(e, o)) \
         SELECT (CASE WHEN pg_catalog.jsonb_typeof(d.d OPERATOR(pg_catalog.->) 'tables') OPERATOR(pg_catalog.=) 'array' \
                      THEN pg_catalog.jsonb_set(d.d, '{tables}', COALESCE((SELECT pg_catalog.jsonb_agg( \
                               CASE WHEN pg_catalog.jsonb_typeof(e) OPERATOR(pg_catalog.=) 'object' \
                                    THEN e OPERATOR(pg_catalog.-) 'rows' ELSE e END ORDER BY o) FROM t), '[]')) \
                      ELSE d.d END)::pg_catalog.text, \
                ARRAY(SELECT CASE WHEN pg_catalog.jsonb_typeof(e OPERATOR(pg_catalog.->) 'rows') \
                                       OPERATOR(pg_catalog.=) 'array' \
                                  THEN (e OPERATOR(pg_catalog.->) 'rows')::pg_catalog.text END FROM t ORDER BY o), \
                ARRAY(SELECT CASE WHEN pg_catalog.jsonb_typeof(e OPERATOR(pg_catalog.->) 'rows') \
                                       OPERATOR(pg_catalog.=) 'array' \
                                  THEN pg_catalog.jsonb_array_length(e OPERATOR(pg_catalog.->) 'rows')::pg_catalog.int8 \
                             END FROM t ORDER BY o) \
           FROM d",
        &[document.into()],
    )
    .unwrap_or_else(spi_error("read the document"));
    let skeleton: Value = serde_json::from_str(&skeleton.unwrap_or_default())
        .unwrap_or_else(|_| bad_document("its keys or table lists are nested too deeply".into()));
    let rows = rows.unwrap_or_default().into_iter().zip(counts.unwrap_or_default()).map(|(r, n)| r.zip(n)).collect();
    (skeleton, rows)
}

fn bad_document(what: String) -> ! {
    errors::bad_export(&what)
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.get(name).unwrap_or_else(|| bad_document(format!("it has no \"{name}\"")))
}

fn text<'a>(v: &'a Value, name: &str) -> &'a str {
    field(v, name).as_str().unwrap_or_else(|| bad_document(format!("\"{name}\" is not a string")))
}

/// Loads an export into this database: keys first (the tenant must have none here, or exactly these), then each
/// table's rows, then the counts and checksums are verified over what was written. Returns (table, rows) per table.
pub fn import(document: &str, expected: Option<Uuid>) -> Vec<(String, i64)> {
    crate::citus::replication::check_admin_here("import a tenant");
    let (skeleton, rows) = split(document);
    let doc = &skeleton;
    if doc.get("format").and_then(Value::as_str) != Some(FORMAT) {
        bad_document(format!("its format is not \"{FORMAT}\""));
    }
    let tenant =
        Uuid::parse_str(text(doc, "tenant")).unwrap_or_else(|_| bad_document("\"tenant\" is not a uuid".into()));
    if tenant.is_nil() {
        bad_document("\"tenant\" is the nil uuid".into());
    }
    // an administrator importing a document someone else provided says whose it must be
    if expected.is_some_and(|e| e != tenant) {
        bad_document("it is not the export of the tenant given".into());
    }
    // a silo bound to another tenant takes no other tenant's rows
    let bound = crate::placement::bound_tenant().unwrap_or_else(spi_error("read the binding"));
    if bound.is_some_and(|b| from_pg(&b) != tenant) {
        errors::already_bound();
    }
    import_keys(&tenant, field(doc, "keys"), doc.get("key_provider").and_then(Value::as_str));
    let here: Vec<Table> = tables();
    let listed = field(doc, "tables").as_array().unwrap_or_else(|| bad_document("\"tables\" is not an array".into()));
    // in this database's order (its foreign keys), whatever the document's
    let mut results = Vec::new();
    for table in &here {
        let Some(at) = listed.iter().position(|e| e.get("table").and_then(Value::as_str) == Some(table.name.as_str()))
        else {
            continue;
        };
        let table_rows = rows.get(at).and_then(Option::as_ref);
        results.push((table.name.clone(), import_table(&tenant, table, &listed[at], table_rows)));
    }
    for entry in listed {
        let name = text(entry, "table");
        if !here.iter().any(|t| t.name == name) {
            errors::import_table_missing(name);
        }
    }
    crate::citus::replication::keys_changed(Some(&[tenant]));
    results
}

fn import_table(tenant: &Uuid, table: &Table, entry: &Value, rows: Option<&(String, i64)>) -> i64 {
    let columns: Vec<String> = field(entry, "columns")
        .as_array()
        .unwrap_or_else(|| bad_document("\"columns\" is not an array".into()))
        .iter()
        .map(|c| c.as_str().unwrap_or_else(|| bad_document("a column name is not a string".into())).to_owned())
        .collect();
    if columns != table.columns || text(entry, "tenant_column") != table.tenant_column {
        errors::import_columns_differ(&table.name);
    }
    let Some((rows, listed)) = rows else { bad_document("\"rows\" is missing or not an array".into()) };
    let count = field(entry, "count").as_i64().unwrap_or_else(|| bad_document("\"count\" is not a number".into()));
    let checksum = text(entry, "checksum");
    // every row must be the tenant's: a document edited to carry another tenant's rows is refused
    let quoted: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let insert = format!(
        "WITH src AS (SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::{name}, $1::pg_catalog.jsonb)) \
         INSERT INTO {name} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM src \
          WHERE {tc} IS NOT DISTINCT FROM $2",
        name = table.name,
        cols = quoted.join(", "),
        tc = quote(&table.tenant_column),
    );
    // as the owner in the tenant's context: the owner's code on the table runs with the owner's rights, and row-level
    // security refuses a row of another tenant
    let written = crate::privileged::as_owner_in_tenant(table.owner, *tenant, || {
        Spi::connect_mut(|client| {
            client
                .update(&insert, None, &[rows.as_str().into(), to_pg(tenant).into()])
                .unwrap_or_else(spi_error("write the imported rows"))
                .len() as i64
        })
    });
    let (here_count, here_sum, _) = read_rows(table, tenant);
    if written != *listed || here_count != count || here_sum != checksum {
        errors::import_mismatch(&table.name, count, here_count);
    }
    written
}

fn import_keys(tenant: &Uuid, keys: &Value, key_provider: Option<&str>) {
    let keys = keys.as_array().unwrap_or_else(|| bad_document("\"keys\" is not an array".into()));
    let existing = read_keys(tenant);
    let existing = existing.as_array().map_or(&[][..], Vec::as_slice);
    if let Some(r) = key_provider {
        crate::keys::check_key_ref(r);
    }
    let here_ref = crate::keys::own_key_ref(tenant);
    if (here_ref.is_some() || !existing.is_empty()) && here_ref.as_deref() != key_provider {
        // the tenant's keys here and the document's would be wrapped by different master keys
        errors::import_keys_exist(tenant);
    }
    if !existing.is_empty() {
        let same = existing.len() == keys.len()
            && existing
                .iter()
                .zip(keys)
                .all(|(a, b)| a.get("wrapped") == b.get("wrapped") && a.get("state") == b.get("state"));
        if !same {
            errors::import_keys_exist(tenant);
        }
        return;
    }
    if let Some(key_ref) = key_provider {
        // wrapped by the tenant's own key: this database asks the same provider for it
        Spi::run_with_args(
            "INSERT INTO tenant.key_provider (tenant, key_ref) VALUES ($1, $2) \
             ON CONFLICT (tenant) DO UPDATE SET key_ref = EXCLUDED.key_ref",
            &[to_pg(tenant).into(), key_ref.into()],
        )
        .unwrap_or_else(|e| errors::bad_export(&format!("the key provider could not be stored ({e})")));
    }
    for key in keys {
        let version =
            field(key, "version").as_i64().unwrap_or_else(|| bad_document("a key version is not a number".into()));
        let state = text(key, "state");
        let wrapped = key.get("wrapped").and_then(Value::as_str);
        // every key must unwrap here, with the document's key provider (checked as set_key_provider checks it) or
        // a master key of this server: a document cannot leave the tenant with keys nothing here can use
        if let Some(w) = wrapped {
            use base64::Engine;
            // (PostgreSQL's base64 breaks lines every 76 characters)
            let compact: String = w.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_else(|_| bad_document("a wrapped key is not base64".into()));
            let version =
                u32::try_from(version).unwrap_or_else(|_| bad_document("a key version is out of range".into()));
            crate::keys::check_importable(tenant, version, &bytes, key_provider);
        }
        Spi::run_with_args(
            "INSERT INTO tenant.data_key (tenant, version, state, wrapped, created_at, retired_at, destroyed_at) \
             VALUES ($1, $2::pg_catalog.int4, $3, pg_catalog.decode($4, 'base64'), \
                     COALESCE(($5::pg_catalog.jsonb OPERATOR(pg_catalog.->>) 'created_at')::pg_catalog.timestamptz, pg_catalog.now()), \
                     ($5::pg_catalog.jsonb OPERATOR(pg_catalog.->>) 'retired_at')::pg_catalog.timestamptz, \
                     ($5::pg_catalog.jsonb OPERATOR(pg_catalog.->>) 'destroyed_at')::pg_catalog.timestamptz)",
            &[to_pg(tenant).into(), version.into(), state.into(), wrapped.into(), JsonB(key.clone()).into()],
        )
        .unwrap_or_else(|e| errors::bad_export(&format!("a data key could not be stored ({e})")));
    }
}

/// Removes the tenant's rows from every protected table (referencing tables first), then shreds its data keys.
/// Returns the rows removed.
pub fn purge(tenant: &Uuid) -> i64 {
    crate::citus::replication::check_admin_here("purge a tenant");
    let mut removed = 0;
    for table in tables().iter().rev() {
        let sql = format!(
            "DELETE FROM {}{} WHERE {} OPERATOR(pg_catalog.=) $1",
            if table.only { "ONLY " } else { "" },
            table.name,
            quote(&table.tenant_column)
        );
        removed += crate::privileged::as_owner_in_tenant(table.owner, *tenant, || {
            Spi::connect_mut(|client| {
                client
                    .update(&sql, None, &[to_pg(tenant).into()])
                    .unwrap_or_else(spi_error("delete the tenant's rows"))
                    .len() as i64
            })
        });
    }
    crate::keys::shred_tenant(tenant);
    removed
}

// ---------------------------------------------------------------------------------------------------------------
// SQL API. Thin wrappers; the logic is above.

/// One tenant's rows, keys (wrapped) and checksums, as the JSON text of the document `tenant.import` loads elsewhere
/// (SQL: `tenant.export(uuid) returns jsonb` in sql/transfer.sql, over this: the rows never pass through Rust's
/// JSON parser, whose depth limit a tenant's jsonb values could exceed).
#[pg_extern(volatile, parallel_unsafe, security_definer, name = "_export")]
#[search_path(pg_catalog, pg_temp)]
fn export_sql(tenant: Option<pgrx::Uuid>) -> String {
    export(&tenant_required(tenant))
}

/// Loads what `tenant.export` produced, given as JSON text (SQL: `tenant.import(jsonb, uuid)` in sql/transfer.sql);
/// verifies counts and checksums. One row per table.
#[pg_extern(volatile, parallel_unsafe, security_definer, name = "_import")]
#[search_path(pg_catalog, pg_temp)]
fn import_sql(
    document: Option<&str>,
    tenant: Option<pgrx::Uuid>,
) -> TableIterator<'static, (name!(table_name, String), name!(rows, i64))> {
    let Some(document) = document else { errors::invalid_parameter("document must not be NULL".into(), None) };
    let results = import(document, tenant.map(|t| from_pg(&t)));
    TableIterator::new(results)
}

/// Removes the tenant's rows from every protected table, then shreds its keys. Returns the rows removed.
#[pg_extern(volatile, parallel_unsafe, security_definer, name = "purge")]
#[search_path(pg_catalog, pg_temp)]
fn purge_sql(tenant: Option<pgrx::Uuid>) -> i64 {
    purge(&tenant_required(tenant))
}

extension_sql_file!(
    "../sql/transfer.sql",
    name = "transfer",
    requires = ["admin_role", "keys_schema", "labels_schema", export_sql, import_sql, purge_sql],
);
