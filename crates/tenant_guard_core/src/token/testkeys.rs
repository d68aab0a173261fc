//! Test keys and a token minter for the unit tests. Keys are deterministic except RSA, which is generated once per
//! test run from a seeded generator.

use super::b64url;
use super::jwk::Alg;
use serde_json::{json, Value};
use std::sync::OnceLock;

pub const HS_SECRET: [u8; 32] = [0x11; 32];
const ED_SEED: [u8; 32] = [7; 32];
const P256_SCALAR: [u8; 32] = [3; 32];

pub fn ed25519_signing() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&ED_SEED)
}

pub fn p256_signing() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_bytes(&P256_SCALAR.into()).unwrap()
}

pub fn rsa_private() -> &'static rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa_of_bits(2048, 1))
}

fn rsa_of_bits(bits: usize, seed: u64) -> rsa::RsaPrivateKey {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    rsa::RsaPrivateKey::new(&mut rng, bits).unwrap()
}

pub fn hs256_jwk(kid: &str) -> Value {
    json!({"kty": "oct", "kid": kid, "k": b64url::encode(&HS_SECRET)})
}

pub fn ed25519_jwk(kid: &str) -> Value {
    let x = ed25519_signing().verifying_key().to_bytes();
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url::encode(&x)})
}

pub fn es256_jwk(kid: &str) -> Value {
    let point = p256_signing().verifying_key().to_encoded_point(false);
    json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": b64url::encode(point.x().unwrap()), "y": b64url::encode(point.y().unwrap()),
    })
}

fn rsa_public_jwk(kid: &str, key: &rsa::RsaPrivateKey) -> Value {
    use rsa::traits::PublicKeyParts;
    json!({
        "kty": "RSA", "kid": kid,
        "n": b64url::encode(&key.n().to_bytes_be()), "e": b64url::encode(&key.e().to_bytes_be()),
    })
}

pub fn rs256_jwk(kid: &str) -> Value {
    rsa_public_jwk(kid, rsa_private())
}

pub fn rsa_jwk_of_bits(kid: &str, bits: usize) -> Value {
    rsa_public_jwk(kid, &rsa_of_bits(bits, 2))
}

pub fn jwk_for(alg: Alg, kid: &str) -> Value {
    match alg {
        Alg::HS256 => hs256_jwk(kid),
        Alg::EdDSA => ed25519_jwk(kid),
        Alg::ES256 => es256_jwk(kid),
        Alg::RS256 => rs256_jwk(kid),
    }
}

/// Signs `input` with the test key for `alg`.
pub fn sign(alg: Alg, input: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    use p256::ecdsa::signature::Signer;
    match alg {
        Alg::HS256 => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&HS_SECRET).unwrap();
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
        Alg::EdDSA => ed25519_signing().sign(input).to_bytes().to_vec(),
        Alg::ES256 => {
            let sig: p256::ecdsa::Signature = p256_signing().sign(input);
            sig.to_bytes().to_vec()
        }
        Alg::RS256 => {
            let key = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa_private().clone());
            use p256::ecdsa::signature::SignatureEncoding;
            key.sign(input).to_bytes().to_vec()
        }
    }
}

/// Builds a compact JWS from raw header and claim JSON text, signed with `alg`'s test key.
pub fn mint_raw(alg: Alg, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64url::encode(header.as_bytes()), b64url::encode(claims.as_bytes()));
    let sig = sign(alg, input.as_bytes());
    format!("{input}.{}", b64url::encode(&sig))
}

pub fn mint(alg: Alg, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": alg.as_str(), "typ": "JWT", "kid": kid});
    mint_raw(alg, &header.to_string(), &claims.to_string())
}

/// A raw ES256 signature (R||S) re-encoded as DER, the encoding tenant_guard refuses.
pub fn es256_signature_as_der(raw: &[u8]) -> Vec<u8> {
    p256::ecdsa::Signature::from_slice(raw).expect("a 64-byte signature").to_der().as_bytes().to_vec()
}
