//! Fuzzes the key-set parser behind `tenant.trust_issuer` (`crates/tenant_guard_core/src/token/jwk.rs`): any input is accepted or rejected
//! cleanly, never a panic; an accepted set is never empty and never longer than the cap.
#![no_main]

use tenant_guard_core::token;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match token::jwk::parse_jwks(text) {
        Ok(set) => assert!(!set.keys.is_empty() && set.keys.len() <= 100),
        Err(e) => drop(e.to_string()),
    }
});
