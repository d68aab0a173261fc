//! The ciphertext format and the data-key wrapping format (pure Rust, no Postgres).
//!
//! Ciphertext, format 1 (what `tenant.encrypt` returns):
//!
//! ```text
//! offset  size  field
//! 0       1     format byte, 0x01
//! 1       4     key version, unsigned big-endian (the tenant's data-key version used)
//! 5       12    nonce, random per call
//! 17      n     AES-256-GCM ciphertext of the n-byte plaintext
//! 17+n    16    GCM tag
//! ```
//!
//! Associated data (authenticated, not stored): `"tenant_guard/data/v1"`, the 5 header bytes, the tenant uuid (16
//! bytes), then the caller's context: 0x00 for NULL, or 0x01, its length (u32 big-endian) and its bytes. Moving a
//! ciphertext to another tenant, another context (row, column), or changing its version byte makes it fail to
//! authenticate.
//!
//! Wrapped data key, format 1 (what the key table stores):
//!
//! ```text
//! 0   1   format byte, 0x01
//! 1   8   KEK id: the first 8 bytes of HMAC-SHA256(KEK, "tenant_guard kek id"), to tell which master key wrapped it
//! 9   12  nonce
//! 21  48  AES-256-GCM of the 32-byte data key, and tag
//! ```
//!
//! with associated data `"tenant_guard/dek/v1"`, the tenant uuid and the key version (u32 big-endian).

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Tag};

type Nonce = aes_gcm::aead::Nonce<Aes256Gcm>;
use hmac::Mac;
use std::fmt;
use zeroize::Zeroizing;

pub const FORMAT_V1: u8 = 0x01;
pub const HEADER_LEN: usize = 1 + 4;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// The shortest valid ciphertext: an empty plaintext.
pub const MIN_LEN: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
pub const KEY_LEN: usize = 32;
/// The wrapped data key's KEK id: where it starts and how long it is.
pub const KEK_ID_OFFSET: usize = 1;
pub const KEK_ID_LEN: usize = 8;
/// Where the wrapped data key's nonce starts.
const WRAPPED_NONCE_OFFSET: usize = KEK_ID_OFFSET + KEK_ID_LEN;
pub const WRAPPED_LEN: usize = WRAPPED_NONCE_OFFSET + NONCE_LEN + KEY_LEN + TAG_LEN;
/// The SQL that reads the KEK id of a wrapped key in column `wrapped` (the `tenant.keys` view), as the SQL files
/// spell it; a test checks the installed view against it.
pub const KEK_ID_SQL: &str = "substr(wrapped, 2, 8)";

const DATA_AAD_PREFIX: &[u8] = b"tenant_guard/data/v1";
const DEK_AAD_PREFIX: &[u8] = b"tenant_guard/dek/v1";
const KEK_ID_LABEL: &[u8] = b"tenant_guard kek id";

/// A 256-bit key (data key or master key), zeroized on drop.
pub type Key = Zeroizing<[u8; KEY_LEN]>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// Shorter than the fixed fields.
    Truncated,
    /// A format byte this version does not know.
    UnknownFormat(u8),
    /// The tag does not verify: corrupted, another tenant's, another context, or the wrong key.
    NotAuthentic,
    /// A wrapped key whose KEK id is neither the current nor the previous master key.
    UnknownKek,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Truncated => write!(f, "ciphertext is truncated (shorter than {MIN_LEN} bytes)"),
            FormatError::UnknownFormat(b) => write!(f, "ciphertext has unknown format byte 0x{b:02x}"),
            FormatError::NotAuthentic => f.write_str(
                "ciphertext does not authenticate: it was altered, or belongs to another tenant or another context",
            ),
            FormatError::UnknownKek => f.write_str("data key was wrapped by a master key that is not configured"),
        }
    }
}

/// The header of a ciphertext: which key version to decrypt with.
pub fn key_version(ciphertext: &[u8]) -> Result<u32, FormatError> {
    if ciphertext.is_empty() {
        return Err(FormatError::Truncated);
    }
    if ciphertext[0] != FORMAT_V1 {
        return Err(FormatError::UnknownFormat(ciphertext[0]));
    }
    if ciphertext.len() < MIN_LEN {
        return Err(FormatError::Truncated);
    }
    Ok(u32::from_be_bytes(ciphertext[1..5].try_into().expect("4 bytes")))
}

fn data_aad(header: &[u8], tenant: &[u8; 16], context: Option<&[u8]>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DATA_AAD_PREFIX.len() + HEADER_LEN + 16 + 5 + context.map_or(0, <[u8]>::len));
    aad.extend_from_slice(DATA_AAD_PREFIX);
    aad.extend_from_slice(header);
    aad.extend_from_slice(tenant);
    match context {
        None => aad.push(0),
        Some(c) => {
            aad.push(1);
            aad.extend_from_slice(&(c.len() as u32).to_be_bytes());
            aad.extend_from_slice(c);
        }
    }
    aad
}

/// A data key ready for use: the AES key schedule and GHASH key, expanded once and zeroized on drop.
pub struct DataKey(Aes256Gcm);

impl DataKey {
    pub fn new(key: &Key) -> DataKey {
        DataKey(Aes256Gcm::new((&**key).into()))
    }
}

/// Encrypts `plaintext` for `tenant` under data key `key` (version `version`), with a caller-supplied random nonce.
pub fn seal(
    key: &DataKey,
    version: u32,
    tenant: &[u8; 16],
    context: Option<&[u8]>,
    plaintext: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(MIN_LEN + plaintext.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(plaintext);
    let aad = data_aad(&out[..HEADER_LEN], tenant, context);
    // In place: one copy of the plaintext, however large.
    let tag = key
        .0
        .encrypt_inout_detached(&Nonce::from(*nonce), &aad, (&mut out[HEADER_LEN + NONCE_LEN..]).into())
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    out.extend_from_slice(&tag);
    out
}

/// Decrypts a ciphertext made by [`seal`] for the same tenant and context with the data key its header names.
pub fn open(
    key: &DataKey,
    tenant: &[u8; 16],
    context: Option<&[u8]>,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    key_version(ciphertext)?;
    let (header, rest) = ciphertext.split_at(HEADER_LEN);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
    let tag: [u8; TAG_LEN] = tag.try_into().expect("split at TAG_LEN");
    let aad = data_aad(header, tenant, context);
    // Out of place: the plaintext is written once, straight from the ciphertext (no copy first).
    let mut plain = Zeroizing::new(vec![0u8; body.len()]);
    let buffer = InOutBuf::new(body, plain.as_mut_slice()).expect("same lengths");
    key.0
        .decrypt_inout_detached(&Nonce::from(*nonce), &aad, buffer, &Tag::from(tag))
        .map_err(|_| FormatError::NotAuthentic)?;
    Ok(plain)
}

/// Identifies a master key without revealing it.
pub fn kek_id(kek: &Key) -> [u8; KEK_ID_LEN] {
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(kek.as_ref()).expect("any key length");
    mac.update(KEK_ID_LABEL);
    mac.finalize().into_bytes()[..KEK_ID_LEN].try_into().expect("KEK_ID_LEN bytes")
}

fn dek_aad(tenant: &[u8; 16], version: u32) -> Vec<u8> {
    [DEK_AAD_PREFIX, tenant.as_slice(), &version.to_be_bytes()].concat()
}

/// Wraps data key `dek` (of `tenant`, version `version`) under master key `kek`.
pub fn wrap(kek: &Key, tenant: &[u8; 16], version: u32, dek: &Key, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let cipher = Aes256Gcm::new((&**kek).into());
    let aad = dek_aad(tenant, version);
    let sealed = cipher
        .encrypt(&Nonce::from(*nonce), Payload { msg: dek.as_ref(), aad: &aad })
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.push(FORMAT_V1);
    out.extend_from_slice(&kek_id(kek));
    out.extend_from_slice(nonce);
    out.extend_from_slice(&sealed);
    out
}

/// The KEK id a wrapped key names.
pub fn wrapped_kek_id(wrapped: &[u8]) -> Result<[u8; KEK_ID_LEN], FormatError> {
    match wrapped.first() {
        None => Err(FormatError::Truncated),
        Some(&FORMAT_V1) if wrapped.len() == WRAPPED_LEN => {
            Ok(wrapped[KEK_ID_OFFSET..WRAPPED_NONCE_OFFSET].try_into().expect("KEK_ID_LEN bytes"))
        }
        Some(&FORMAT_V1) => Err(FormatError::Truncated),
        Some(&b) => Err(FormatError::UnknownFormat(b)),
    }
}

/// Unwraps a data key with `kek`, which must be the master key the wrapped key names.
pub fn unwrap(kek: &Key, tenant: &[u8; 16], version: u32, wrapped: &[u8]) -> Result<Key, FormatError> {
    if wrapped_kek_id(wrapped)? != kek_id(kek) {
        return Err(FormatError::UnknownKek);
    }
    let (nonce, sealed) = wrapped[WRAPPED_NONCE_OFFSET..].split_at(NONCE_LEN);
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
    let cipher = Aes256Gcm::new((&**kek).into());
    let aad = dek_aad(tenant, version);
    let plain = Zeroizing::new(
        cipher
            .decrypt(&Nonce::from(*nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| FormatError::NotAuthentic)?,
    );
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&plain);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 16] = [0xaa; 16];
    const B: [u8; 16] = [0xbb; 16];

    fn key(b: u8) -> Key {
        Zeroizing::new([b; KEY_LEN])
    }

    fn dk(b: u8) -> DataKey {
        DataKey::new(&key(b))
    }

    fn nonce(b: u8) -> [u8; NONCE_LEN] {
        [b; NONCE_LEN]
    }

    #[test]
    fn layout_is_as_documented() {
        let ct = seal(&dk(1), 0x01020304, &A, Some(b"ctx"), b"hello", &nonce(9));
        assert_eq!(ct.len(), MIN_LEN + 5);
        assert_eq!(ct[0], FORMAT_V1);
        assert_eq!(&ct[1..5], &[1, 2, 3, 4]);
        assert_eq!(&ct[5..17], &[9; 12]);
        assert_eq!(key_version(&ct), Ok(0x01020304));
    }

    #[test]
    fn round_trips_from_empty_to_a_megabyte() {
        for len in [0usize, 1, 15, 16, 17, 100, 1024, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            for ctx in [None, Some(&b""[..]), Some(&b"app.patients.diagnosis:42"[..])] {
                let ct = seal(&dk(1), 3, &A, ctx, &data, &nonce(5));
                assert_eq!(ct.len(), MIN_LEN + len);
                assert_eq!(*open(&dk(1), &A, ctx, &ct).unwrap(), data);
            }
        }
    }

    #[test]
    fn binds_tenant_context_and_header() {
        let ct = seal(&dk(1), 1, &A, Some(b"t.c:1"), b"secret", &nonce(1));
        assert_eq!(open(&dk(1), &B, Some(b"t.c:1"), &ct), Err(FormatError::NotAuthentic), "other tenant");
        assert_eq!(open(&dk(1), &A, Some(b"t.c:2"), &ct), Err(FormatError::NotAuthentic), "other context");
        assert_eq!(open(&dk(1), &A, None, &ct), Err(FormatError::NotAuthentic), "NULL is not a context");
        let none = seal(&dk(1), 1, &A, None, b"secret", &nonce(1));
        assert_eq!(open(&dk(1), &A, Some(b""), &none), Err(FormatError::NotAuthentic), "NULL is not empty");
        assert_eq!(open(&dk(2), &A, Some(b"t.c:1"), &ct), Err(FormatError::NotAuthentic), "other key");
        let mut v = ct.clone();
        v[4] ^= 1; // claims another key version
        assert_eq!(open(&dk(1), &A, Some(b"t.c:1"), &v), Err(FormatError::NotAuthentic));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let ct = seal(&dk(1), 1, &A, None, b"0123456789", &nonce(3));
        for i in 0..ct.len() * 8 {
            let mut bad = ct.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let got = open(&dk(1), &A, None, &bad);
            assert!(got.is_err(), "bit {i} flipped and still opened");
            if i < 8 {
                assert_eq!(got, Err(FormatError::UnknownFormat(bad[0])));
            }
        }
    }

    #[test]
    fn truncated_and_unknown_formats_are_errors() {
        let ct = seal(&dk(1), 1, &A, None, b"x", &nonce(3));
        assert_eq!(open(&dk(1), &A, None, &[]), Err(FormatError::Truncated));
        assert_eq!(open(&dk(1), &A, None, &ct[..MIN_LEN - 1]), Err(FormatError::Truncated));
        assert_eq!(open(&dk(1), &A, None, &ct[..ct.len() - 1]), Err(FormatError::NotAuthentic));
        let mut v2 = ct.clone();
        v2[0] = 2;
        assert_eq!(key_version(&v2), Err(FormatError::UnknownFormat(2)));
    }

    #[test]
    fn wrapping_binds_tenant_version_and_master_key() {
        let (kek, dek) = (key(7), key(42));
        let w = wrap(&kek, &A, 3, &dek, &nonce(4));
        assert_eq!(w.len(), WRAPPED_LEN);
        assert_eq!(*unwrap(&kek, &A, 3, &w).unwrap(), [42; KEY_LEN]);
        assert_eq!(unwrap(&kek, &B, 3, &w), Err(FormatError::NotAuthentic));
        assert_eq!(unwrap(&kek, &A, 4, &w), Err(FormatError::NotAuthentic));
        assert_eq!(unwrap(&key(8), &A, 3, &w), Err(FormatError::UnknownKek));
        assert_eq!(wrapped_kek_id(&w), Ok(kek_id(&kek)));
        // SQL's substr counts from 1
        assert_eq!(KEK_ID_SQL, format!("substr(wrapped, {}, {KEK_ID_LEN})", KEK_ID_OFFSET + 1));
        assert_ne!(kek_id(&kek), kek_id(&key(8)));
        assert_eq!(wrapped_kek_id(&w[..20]), Err(FormatError::Truncated));
    }

    #[test]
    fn messages_never_contain_data() {
        for e in [FormatError::Truncated, FormatError::UnknownFormat(7), FormatError::NotAuthentic] {
            assert!(!e.to_string().contains("secret"));
        }
    }

    /// Property tests: hostile input never panics and never opens.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let _ = key_version(&bytes);
                prop_assert!(open(&dk(1), &A, None, &bytes).is_err());
                prop_assert!(open(&dk(1), &A, Some(b"c"), &bytes).is_err());
            }

            #[test]
            fn arbitrary_bytes_with_a_valid_header_never_open(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let mut bytes = vec![FORMAT_V1, 0, 0, 0, 1];
                bytes.extend_from_slice(&tail);
                prop_assert!(open(&dk(1), &A, None, &bytes).is_err());
            }

            #[test]
            fn any_mutation_of_a_ciphertext_is_detected(
                plain in proptest::collection::vec(any::<u8>(), 0..512),
                at in any::<usize>(),
                flip in 1..=255u8,
                cut in any::<usize>(),
                extra in proptest::collection::vec(any::<u8>(), 1..16),
            ) {
                let ct = seal(&dk(1), 7, &A, Some(b"ctx"), &plain, &nonce(2));
                prop_assert_eq!(&*open(&dk(1), &A, Some(b"ctx"), &ct).unwrap(), &plain);
                let mut flipped = ct.clone();
                flipped[at % ct.len()] ^= flip;
                prop_assert!(open(&dk(1), &A, Some(b"ctx"), &flipped).is_err());
                prop_assert!(open(&dk(1), &A, Some(b"ctx"), &ct[..cut % ct.len()]).is_err());
                let mut longer = ct.clone();
                longer.extend_from_slice(&extra);
                prop_assert!(open(&dk(1), &A, Some(b"ctx"), &longer).is_err());
            }

            #[test]
            fn arbitrary_wrapped_keys_never_unwrap(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
                prop_assert!(unwrap(&key(7), &A, 1, &bytes).is_err());
            }
        }
    }
}
