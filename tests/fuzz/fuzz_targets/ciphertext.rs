//! Fuzzes the ciphertext and wrapped-key formats (`crates/tenant_guard_core/src/ciphertext.rs`).
//!
//! Two properties, chosen by the first input byte:
//! - raw: the input as a ciphertext or a wrapped key is rejected cleanly (no key ever authenticates it);
//! - tamper: the input is a mask XORed into, and a length cut of, a real ciphertext or wrapped key; it must be
//!   rejected unless the mask is all zero and the length unchanged, and then it must give back the plaintext.
#![no_main]

use tenant_guard_core::ciphertext;

use ciphertext::{DataKey, Key};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

const TENANT: [u8; 16] = *b"fuzz-tenant-0001";
const CONTEXT: &[u8] = b"orders.note:42";
const PLAINTEXT: &[u8] = b"the quick brown fox jumps over the lazy dog";

fn tamper(original: &[u8], input: &[u8]) -> Vec<u8> {
    let (cut, mask) = input.split_first().map_or((0, &[][..]), |(c, m)| (*c as usize, m));
    let mut out = original.to_vec();
    for (b, m) in out.iter_mut().zip(mask) {
        *b ^= m;
    }
    // cut 0 keeps the length, 1..=128 shortens, 129.. appends mask bytes past the end
    match cut {
        0 => {}
        c if c <= 128 => out.truncate(original.len().saturating_sub(c)),
        _ => out.extend(mask.iter().skip(original.len())),
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else { return };
    let key: Key = Zeroizing::new([7u8; 32]);
    let kek: Key = Zeroizing::new([9u8; 32]);
    let dek = DataKey::new(&key);
    let context = if mode & 2 == 0 { None } else { Some(CONTEXT) };
    match mode % 4 {
        0 | 2 => {
            let _ = ciphertext::key_version(input);
            assert!(ciphertext::open(&dek, &TENANT, context, input).is_err(), "random bytes authenticated");
            let _ = ciphertext::wrapped_kek_id(input);
            assert!(ciphertext::unwrap(&kek, &TENANT, 1, input).is_err(), "random bytes unwrapped");
        }
        1 => {
            let sealed = ciphertext::seal(&dek, 3, &TENANT, context, PLAINTEXT, &[5u8; 12]);
            let changed = tamper(&sealed, input);
            match ciphertext::open(&dek, &TENANT, context, &changed) {
                Ok(plain) => assert!(changed == sealed && &plain[..] == PLAINTEXT, "a changed ciphertext opened"),
                Err(_) => assert!(changed != sealed, "an unchanged ciphertext failed to open"),
            }
        }
        _ => {
            let wrapped = ciphertext::wrap(&kek, &TENANT, 2, &key, &[6u8; 12]);
            let changed = tamper(&wrapped, input);
            match ciphertext::unwrap(&kek, &TENANT, 2, &changed) {
                Ok(k) => assert!(changed == wrapped && *k == *key, "a changed wrapped key unwrapped"),
                Err(_) => assert!(changed != wrapped, "an unchanged wrapped key failed to unwrap"),
            }
        }
    }
});
