//! The one conversion between PostgreSQL's uuid (`pgrx::Uuid`) and the Rust `uuid::Uuid` the cores use.

/// A Rust uuid as PostgreSQL's.
pub fn to_pg(u: &uuid::Uuid) -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(*u.as_bytes())
}

/// PostgreSQL's uuid as a Rust one.
pub fn from_pg(u: &pgrx::Uuid) -> uuid::Uuid {
    uuid::Uuid::from_bytes(*u.as_bytes())
}
