//! In-database tests (`#[pg_test]`). Each runs in its own transaction, which the framework rolls back, so
//! everything here is about behaviour inside one transaction. COMMIT, session scope, several connections, connection
//! options and prepared statements across transactions are in the end-to-end suite (tests/e2e).
//!
//! The framework connects as a superuser, and superusers bypass RLS and may change every setting, so each test
//! switches to `tg_app`, a NOSUPERUSER NOBYPASSRLS role, before it checks anything.

//! One file per area; each holds a `#[pg_schema] mod tests`, the schema the pgrx test runner calls into.

mod audit;
mod context;
mod docs;
mod encryption;
mod guard;
mod labels;
mod replay;
mod sql_files;
mod support;
