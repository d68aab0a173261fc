//! Fuzzes token checking (`crates/tenant_guard_core/src/token`): any input must be rejected cleanly, with a message that does not echo a
//! token-shaped input, unless it is byte for byte one of the validly signed seed tokens.
#![no_main]

use tenant_guard_core::token;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use token::{jwk, Issuer, KeyStore, Policy};

/// The clock the seed tokens were minted for (see make_seeds.py).
const NOW: i64 = 1_800_000_000 + 10;
const POLICY: Policy = Policy { clock_skew: 30, max_lifetime: 3600, default_tenant_claim: "tenant_id" };

fn store() -> &'static (KeyStore, Vec<&'static str>) {
    static STORE: OnceLock<(KeyStore, Vec<&'static str>)> = OnceLock::new();
    STORE.get_or_init(|| {
        let keys = jwk::parse_jwks(include_str!("../seeds/jwks.json")).expect("seed key set").keys;
        let mut issuer = include_str!("../seeds/issuer.txt").lines();
        let (iss, aud) = (issuer.next().unwrap(), issuer.next().unwrap());
        let mut store = KeyStore::default();
        store.insert(iss.into(), Issuer { audience: Some(aud.into()), keys, ..Default::default() });
        let valid: Vec<&str> = include_str!("../seeds/tokens.txt").lines().collect();
        for t in &valid {
            token::verify(t, &store, &POLICY, NOW).expect("every seed token verifies");
        }
        (store, valid)
    })
}

fuzz_target!(|data: &[u8]| {
    // SQL hands the verifier text; invalid UTF-8 never reaches it (PostgreSQL rejects it first).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (store, valid) = store();
    match token::verify(text, store, &POLICY, NOW) {
        Ok(_) => assert!(valid.contains(&text), "a token that was not signed by a trusted key verified"),
        Err(rejection) => {
            // Checked for token-shaped input (two dots, no whitespace): no run of a rejection message without
            // whitespace has two dots, so such an input inside a message can only be an echo. (Plain text could be a
            // piece of a message itself: the fuzzer found that, building its input from a message it had seen.)
            let message = rejection.to_string();
            let token_shaped = text.len() >= 16 && text.matches('.').count() == 2 && !text.contains(char::is_whitespace);
            assert!(!token_shaped || !message.contains(text), "a rejection echoed the token");
        }
    }
});
