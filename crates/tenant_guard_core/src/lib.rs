//! tenant_guard's pure-Rust core: everything that decides without PostgreSQL. The extension wraps it; the fuzz
//! targets and the unit tests use it directly.
//!
//! - [`token`]: checking a compact JWS against trusted issuers' key sets (RFC 7515/7519/8725 strictness);
//! - [`ciphertext`]: the ciphertext and wrapped-key formats (AES-256-GCM);
//! - [`kek`]: master-key providers (a file, a command);
//! - [`label`]: the grammar of tenant_guard's security labels;
//! - [`node_ticket`]: the proof a Citus coordinator gives its workers for one distributed transaction;
//! - [`redact`]: finding tokens in text, to keep them out of logs and statement text;
//! - [`discovery`]: the rules of key-set discovery (which URLs, which lifetimes).
#![deny(unsafe_code)]

pub mod ciphertext;
pub mod discovery;
pub mod kek;
pub mod label;
pub mod node_ticket;
pub mod redact;
pub mod token;
