//! The encryption SQL API: pgcrypto's shape, with the current tenant's key instead of a password.
//!
//! Every call resolves the tenant context first (42501 without one), then uses the tenant's active data key to
//! encrypt, or the version the ciphertext names to decrypt. The format and the associated data are in `ciphertext`;
//! the keys come from `keys`. NULL in gives NULL out; a NULL `context` is a value of its own (not the empty string).

use crate::ciphertext;
use crate::context;
use crate::errors;
use crate::keys;
use zeroize::Zeroizing;

/// Encrypts `plaintext` for the current tenant under its active data key.
pub fn encrypt(plaintext: &[u8], context: Option<&[u8]>) -> Vec<u8> {
    let tenant = context::current().tenant;
    let dek = keys::active_key(&tenant);
    crate::tenant_stats::encrypted(&tenant);
    ciphertext::seal(&dek.key, dek.version, tenant.as_bytes(), context, plaintext, &keys::nonce())
}

/// Decrypts a ciphertext of the current tenant.
pub fn decrypt(ciphertext: &[u8], context: Option<&[u8]>) -> Zeroizing<Vec<u8>> {
    let tenant = context::current().tenant;
    let version = ciphertext::key_version(ciphertext).unwrap_or_else(|e| errors::bad_ciphertext(&e));
    let dek = keys::version_key(&tenant, version);
    let plaintext = ciphertext::open(&dek.key, tenant.as_bytes(), context, ciphertext)
        .unwrap_or_else(|e| errors::bad_ciphertext(&e));
    crate::tenant_stats::decrypted(&tenant);
    plaintext
}

/// The same plaintext, encrypted again under the tenant's active key version (with a fresh nonce).
pub fn reencrypt(old: &[u8], context: Option<&[u8]>) -> Vec<u8> {
    let plaintext = decrypt(old, context);
    encrypt(&plaintext, context)
}

/// Decrypted bytes as text: valid UTF-8 without NUL bytes (which `text` cannot hold).
fn into_text(plaintext: Zeroizing<Vec<u8>>) -> String {
    if plaintext.contains(&0) {
        errors::not_text();
    }
    let mut plaintext = plaintext;
    String::from_utf8(std::mem::take(&mut *plaintext)).unwrap_or_else(|_| errors::not_text())
}

// ---------------------------------------------------------------------------------------------------------------
// SQL API. Thin wrappers. Not STRICT, because a NULL context is meaningful; a NULL value gives NULL.

use pgrx::prelude::*;

/// Encrypts text for the current tenant. `context` is bound as associated data.
#[pg_extern(volatile, parallel_unsafe, name = "encrypt")]
fn encrypt_text(data: Option<&str>, context: default!(Option<&str>, "NULL")) -> Option<Vec<u8>> {
    data.map(|d| encrypt(d.as_bytes(), context.map(str::as_bytes)))
}

/// Decrypts what tenant.encrypt returned, with the same tenant and context.
#[pg_extern(stable, parallel_restricted, name = "decrypt")]
fn decrypt_text(ciphertext: Option<&[u8]>, context: default!(Option<&str>, "NULL")) -> Option<String> {
    ciphertext.map(|c| into_text(decrypt(c, context.map(str::as_bytes))))
}

/// Encrypts bytes for the current tenant. `context` is bound as associated data.
#[pg_extern(volatile, parallel_unsafe)]
fn encrypt_bytea(data: Option<&[u8]>, context: default!(Option<&str>, "NULL")) -> Option<Vec<u8>> {
    data.map(|d| encrypt(d, context.map(str::as_bytes)))
}

/// Decrypts what tenant.encrypt_bytea (or tenant.encrypt) returned, with the same tenant and context.
#[pg_extern(stable, parallel_restricted)]
fn decrypt_bytea(ciphertext: Option<&[u8]>, context: default!(Option<&str>, "NULL")) -> Option<Vec<u8>> {
    ciphertext.map(|c| {
        let mut plaintext = decrypt(c, context.map(str::as_bytes));
        std::mem::take(&mut *plaintext)
    })
}

/// Re-encrypts a ciphertext of the current tenant under its active key version.
#[pg_extern(volatile, parallel_unsafe, name = "reencrypt")]
fn reencrypt_sql(ciphertext: Option<&[u8]>, context: default!(Option<&str>, "NULL")) -> Option<Vec<u8>> {
    ciphertext.map(|c| reencrypt(c, context.map(str::as_bytes)))
}

/// The data key version a ciphertext was encrypted with (read from its header; nothing is decrypted).
#[pg_extern(immutable, parallel_safe, strict)]
fn key_version(ciphertext: &[u8]) -> i64 {
    ciphertext::key_version(ciphertext).unwrap_or_else(|e| errors::bad_ciphertext(&e)) as i64
}

extension_sql_file!("../sql/encryption.sql", name = "encryption_grants", requires = ["admin_role", reencrypt_sql]);
