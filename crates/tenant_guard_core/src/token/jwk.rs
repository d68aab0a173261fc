//! JSON Web Key sets (RFC 7517) for trusted issuers.
//!
//! Every key is bound to exactly one algorithm when the key set is registered. The algorithm comes from the key's
//! `alg` member, or is derived strictly from `kty`/`crv`; a token header can never choose it.
//!
//! Supported keys: `oct` (HS256, at least 32 bytes), `OKP`/Ed25519 (EdDSA), `EC`/P-256 (ES256) and `RSA` of 2048 to
//! 4096 bits (RS256). Private key members are refused: the database only ever needs public keys (and, for HS256, the
//! shared secret).

use super::b64url;
use super::json::{self, JsonError};
use serde_json::{Map, Value};
use std::fmt;
use zeroize::Zeroizing;

/// Longest `kid` accepted, in bytes. A `kid` is only ever an exact lookup key.
pub const MAX_KID_BYTES: usize = 256;
/// Most keys one issuer may have at once.
pub const MAX_KEYS_PER_ISSUER: usize = 64;
/// Shortest HS256 secret accepted, in bytes (RFC 7518 section 3.2).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds verification cost).
pub const MAX_RSA_BITS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    EdDSA,
    ES256,
    RS256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
        }
    }

    /// Exact, case-sensitive match of a JOSE algorithm name (RFC 7518 names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Alg> {
        match name {
            "HS256" => Some(Alg::HS256),
            "EdDSA" => Some(Alg::EdDSA),
            "ES256" => Some(Alg::ES256),
            "RS256" => Some(Alg::RS256),
            _ => None,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verifying half of a key, validated once when the key set is parsed.
///
/// Keys are validated with RustCrypto (`p256`, `rsa`, `ed25519-dalek`); ES256 and RS256 signatures are checked with
/// `ring`, whose verifiers are several times faster (bench/results/latest.md has the figures).
pub enum KeyMaterial {
    Hmac(Zeroizing<Vec<u8>>),
    Ed25519(ed25519_dalek::VerifyingKey),
    /// Uncompressed SEC1 point (0x04 ‖ x ‖ y), checked to be on the curve.
    Es256(Vec<u8>),
    /// Big-endian modulus and exponent, checked to be a 2048-4096 bit RSA public key.
    Rs256 {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

impl fmt::Debug for KeyMaterial {
    // Never print key material, not even public keys: Debug output can end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyMaterial::Hmac(_) => "Hmac(..)",
            KeyMaterial::Ed25519(_) => "Ed25519(..)",
            KeyMaterial::Es256(_) => "Es256(..)",
            KeyMaterial::Rs256 { .. } => "Rs256(..)",
        })
    }
}

#[derive(Debug)]
pub struct Jwk {
    pub kid: Option<String>,
    pub alg: Alg,
    pub material: KeyMaterial,
    /// SHA-256 over a domain tag, the algorithm and the key material: names this exact key (for the verification
    /// cache shared between backends) without revealing it. An HMAC secret is not recoverable from it.
    pub fingerprint: [u8; 32],
}

impl KeyMaterial {
    fn fingerprint(&self, alg: Alg) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"tenant_guard key fingerprint\0");
        h.update(alg.as_str().as_bytes());
        h.update([0u8]);
        match self {
            KeyMaterial::Hmac(secret) => h.update(secret.as_slice()),
            KeyMaterial::Ed25519(key) => h.update(key.as_bytes()),
            KeyMaterial::Es256(point) => h.update(point),
            KeyMaterial::Rs256 { n, e } => {
                h.update((n.len() as u64).to_be_bytes());
                h.update(n);
                h.update(e);
            }
        }
        h.finalize().into()
    }
}

/// Why a key set was refused. Messages name the key by position and `kid` (chosen by the administrator), never its
/// material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    Json(JsonError),
    NotAKeySet,
    Empty,
    TooManyKeys,
    Key { index: usize, kid: Option<String>, problem: String },
    DuplicateKid(Option<String>),
    MissingKidWithSeveralKeys,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::Json(e) => write!(f, "the key set {e}"),
            JwksError::NotAKeySet => f.write_str(r#"the key set must be a JSON object of the form {"keys": [...]}"#),
            JwksError::Empty => f.write_str("the key set has no keys"),
            JwksError::TooManyKeys => {
                write!(f, "the key set has more than {MAX_KEYS_PER_ISSUER} keys")
            }
            JwksError::Key { index, kid, problem } => match kid {
                Some(kid) => write!(f, "key {} (kid \"{}\"): {problem}", index + 1, kid.escape_default()),
                None => write!(f, "key {}: {problem}", index + 1),
            },
            JwksError::DuplicateKid(Some(kid)) => {
                write!(f, "two keys have the kid \"{}\"", kid.escape_default())
            }
            JwksError::DuplicateKid(None) => f.write_str("two keys have no kid"),
            JwksError::MissingKidWithSeveralKeys => {
                f.write_str("every key needs a kid when the key set has more than one key")
            }
        }
    }
}

/// A validated key set: the parsed keys, plus the JSON to store, with each key's bound `alg` filled in.
pub struct KeySet {
    pub keys: Vec<Jwk>,
    pub normalized: Value,
}

/// Parses and validates a JWKS document.
pub fn parse_jwks(text: &str) -> Result<KeySet, JwksError> {
    let Value::Object(mut doc) = json::parse_strict(text.as_bytes()).map_err(JwksError::Json)? else {
        return Err(JwksError::NotAKeySet);
    };
    let keys = match doc.remove("keys") {
        Some(Value::Array(keys)) => keys,
        _ => return Err(JwksError::NotAKeySet),
    };
    if keys.is_empty() {
        return Err(JwksError::Empty);
    }
    if keys.len() > MAX_KEYS_PER_ISSUER {
        return Err(JwksError::TooManyKeys);
    }
    let mut parsed = Vec::with_capacity(keys.len());
    let mut normalized = Vec::with_capacity(keys.len());
    for (index, key) in keys.into_iter().enumerate() {
        let Value::Object(mut obj) = key else {
            return Err(JwksError::Key { index, kid: None, problem: "is not a JSON object".into() });
        };
        let jwk = parse_jwk(&obj).map_err(|(kid, problem)| JwksError::Key { index, kid, problem })?;
        obj.insert("alg".into(), Value::String(jwk.alg.as_str().into()));
        normalized.push(Value::Object(obj));
        parsed.push(jwk);
    }
    for (i, a) in parsed.iter().enumerate() {
        if parsed[..i].iter().any(|b| b.kid == a.kid) {
            return Err(JwksError::DuplicateKid(a.kid.clone()));
        }
    }
    if parsed.len() > 1 && parsed.iter().any(|k| k.kid.is_none()) {
        return Err(JwksError::MissingKidWithSeveralKeys);
    }
    Ok(KeySet { keys: parsed, normalized: serde_json::json!({ "keys": normalized }) })
}

type KeyProblem = (Option<String>, String);

fn parse_jwk(obj: &Map<String, Value>) -> Result<Jwk, KeyProblem> {
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_KID_BYTES => Some(s.clone()),
        Some(_) => return Err((None, format!("kid must be a non-empty string of at most {MAX_KID_BYTES} bytes"))),
    };
    let fail = |problem: String| (kid.clone(), problem);

    let kty = str_member(obj, "kty").ok_or_else(|| fail("kty is missing".into()))?;
    let derived = match kty {
        "oct" => Alg::HS256,
        "OKP" => match str_member(obj, "crv") {
            Some("Ed25519") => Alg::EdDSA,
            _ => return Err(fail("an OKP key must have crv \"Ed25519\"".into())),
        },
        "EC" => match str_member(obj, "crv") {
            Some("P-256") => Alg::ES256,
            _ => return Err(fail("an EC key must have crv \"P-256\"".into())),
        },
        "RSA" => Alg::RS256,
        _ => return Err(fail("kty must be one of oct, OKP, EC, RSA".into())),
    };
    if let Some(alg) = obj.get("alg") {
        let named = alg.as_str().and_then(Alg::from_name);
        if named != Some(derived) {
            return Err(fail(format!("alg does not fit the key: a {kty} key can only be used with {derived}")));
        }
    }
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err(fail("use must be \"sig\"".into())),
    }
    if let Some(ops) = obj.get("key_ops") {
        let verifies = ops.as_array().is_some_and(|a| a.iter().any(|o| o == "verify"));
        if !verifies {
            return Err(fail("key_ops must include \"verify\"".into()));
        }
    }
    if derived != Alg::HS256 {
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            if obj.contains_key(private) {
                return Err(fail(format!(
                    "the key contains the private member \"{private}\"; register the public key only"
                )));
            }
        }
    }

    let material = match derived {
        Alg::HS256 => {
            let k = bytes_member(obj, "k").map_err(&fail)?;
            if k.len() < MIN_HMAC_SECRET_BYTES {
                return Err(fail(format!("an HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes")));
            }
            KeyMaterial::Hmac(k)
        }
        Alg::EdDSA => {
            let x = bytes_member(obj, "x").map_err(&fail)?;
            let x: [u8; 32] = x.as_slice().try_into().map_err(|_| fail("x must be 32 bytes".into()))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map_err(|_| fail("x is not a valid Ed25519 public key".into()))?;
            if key.is_weak() {
                return Err(fail("x is a weak (small-order) Ed25519 public key".into()));
            }
            KeyMaterial::Ed25519(key)
        }
        Alg::ES256 => {
            let x = bytes_member(obj, "x").map_err(&fail)?;
            let y = bytes_member(obj, "y").map_err(&fail)?;
            let coordinate = |v: &[u8]| -> Result<p256::FieldBytes, KeyProblem> {
                let a: [u8; 32] = v.try_into().map_err(|_| fail("x and y must be 32 bytes each".into()))?;
                Ok(a.into())
            };
            let point = p256::EncodedPoint::from_affine_coordinates(&coordinate(&x)?, &coordinate(&y)?, false);
            p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                .map_err(|_| fail("x and y are not a point on P-256".into()))?;
            KeyMaterial::Es256(point.as_bytes().to_vec())
        }
        Alg::RS256 => {
            let n = bytes_member(obj, "n").map_err(&fail)?;
            let e = bytes_member(obj, "e").map_err(&fail)?;
            if n.first() == Some(&0) || e.first() == Some(&0) {
                return Err(fail("n and e must not have leading zero bytes".into()));
            }
            let (n_bytes, e_bytes) = (n.to_vec(), e.to_vec());
            let n = rsa::BigUint::from_bytes_be(&n);
            let e = rsa::BigUint::from_bytes_be(&e);
            let bits = n.bits();
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(fail(format!(
                    "an RSA key must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits (this one has {bits})"
                )));
            }
            rsa::RsaPublicKey::new(n, e).map_err(|_| fail("n and e are not a valid RSA public key".into()))?;
            KeyMaterial::Rs256 { n: n_bytes, e: e_bytes }
        }
    };
    let fingerprint = material.fingerprint(derived);
    Ok(Jwk { kid, alg: derived, material, fingerprint })
}

fn str_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    obj.get(name).and_then(Value::as_str)
}

fn bytes_member(obj: &Map<String, Value>, name: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let text = str_member(obj, name).ok_or_else(|| format!("{name} is missing or not a string"))?;
    b64url::decode(text.as_bytes()).map_err(|_| format!("{name} is not canonical base64url without padding"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::testkeys;

    fn one(jwk: Value) -> Result<KeySet, JwksError> {
        parse_jwks(&serde_json::json!({ "keys": [jwk] }).to_string())
    }

    fn problem(r: Result<KeySet, JwksError>) -> String {
        match r {
            Ok(_) => panic!("key set was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepts_each_supported_key_type_and_binds_its_algorithm() {
        for (jwk, alg) in [
            (testkeys::hs256_jwk("h"), Alg::HS256),
            (testkeys::ed25519_jwk("e"), Alg::EdDSA),
            (testkeys::es256_jwk("p"), Alg::ES256),
            (testkeys::rs256_jwk("r"), Alg::RS256),
        ] {
            let set = one(jwk).unwrap();
            assert_eq!(set.keys[0].alg, alg);
            assert_eq!(set.normalized["keys"][0]["alg"], alg.as_str());
        }
    }

    #[test]
    fn refuses_short_hmac_secrets() {
        let jwk = serde_json::json!({"kty":"oct","kid":"s","k": b64url::encode(&[7u8; 31])});
        assert!(problem(one(jwk)).contains("at least 32 bytes"));
    }

    #[test]
    fn refuses_an_alg_that_does_not_fit_the_key() {
        // The classic confusion: an RSA public key offered for HMAC use.
        let mut jwk = testkeys::rs256_jwk("r");
        jwk["alg"] = "HS256".into();
        assert!(problem(one(jwk)).contains("can only be used with RS256"));
        let mut jwk = testkeys::hs256_jwk("h");
        jwk["alg"] = "none".into();
        assert!(problem(one(jwk)).contains("can only be used with HS256"));
        let mut jwk = testkeys::es256_jwk("p");
        jwk["alg"] = "es256".into();
        assert!(problem(one(jwk)).contains("can only be used with ES256"));
    }

    #[test]
    fn refuses_private_members_and_foreign_curves() {
        let mut jwk = testkeys::es256_jwk("p");
        jwk["d"] = b64url::encode(&[1u8; 32]).into();
        assert!(problem(one(jwk)).contains("private member \"d\""));
        let mut jwk = testkeys::es256_jwk("p");
        jwk["crv"] = "P-384".into();
        assert!(problem(one(jwk)).contains("crv \"P-256\""));
        let mut jwk = testkeys::ed25519_jwk("e");
        jwk["crv"] = "X25519".into();
        assert!(problem(one(jwk)).contains("crv \"Ed25519\""));
    }

    #[test]
    fn refuses_small_rsa_keys() {
        let jwk = testkeys::rsa_jwk_of_bits("small", 1024);
        assert!(problem(one(jwk)).contains("2048 to 4096 bits (this one has 1024)"));
    }

    #[test]
    fn refuses_invalid_points() {
        let mut jwk = testkeys::es256_jwk("p");
        jwk["y"] = b64url::encode(&[1u8; 32]).into();
        assert!(problem(one(jwk)).contains("not a point on P-256"));
        let weak = serde_json::json!({"kty":"OKP","crv":"Ed25519","kid":"w","x": b64url::encode(&[0u8; 32])});
        assert!(problem(one(weak)).contains("Ed25519"));
    }

    #[test]
    fn refuses_encryption_keys() {
        let mut jwk = testkeys::rs256_jwk("r");
        jwk["use"] = "enc".into();
        assert!(problem(one(jwk)).contains("use must be \"sig\""));
        let mut jwk = testkeys::rs256_jwk("r");
        jwk["key_ops"] = serde_json::json!(["encrypt"]);
        assert!(problem(one(jwk)).contains("key_ops"));
    }

    #[test]
    fn kid_rules() {
        let set = format!(r#"{{"keys":[{},{}]}}"#, testkeys::hs256_jwk("same"), testkeys::ed25519_jwk("same"));
        assert_eq!(parse_jwks(&set).err(), Some(JwksError::DuplicateKid(Some("same".into()))));
        let mut nokid = testkeys::ed25519_jwk("x");
        nokid.as_object_mut().unwrap().remove("kid");
        let set = format!(r#"{{"keys":[{},{}]}}"#, testkeys::hs256_jwk("a"), nokid);
        assert_eq!(parse_jwks(&set).err(), Some(JwksError::MissingKidWithSeveralKeys));
        assert!(one(nokid).is_ok(), "a lone key may omit its kid");
        let long = testkeys::hs256_jwk(&"k".repeat(MAX_KID_BYTES + 1));
        assert!(problem(one(long)).contains("kid must be"));
    }

    #[test]
    fn refuses_malformed_sets() {
        assert_eq!(parse_jwks("[]").err(), Some(JwksError::NotAKeySet));
        assert_eq!(parse_jwks("{").err(), Some(JwksError::Json(JsonError::Invalid)));
        assert_eq!(parse_jwks(r#"{"keys":{}}"#).err(), Some(JwksError::NotAKeySet));
        assert_eq!(parse_jwks(r#"{"keys":[]}"#).err(), Some(JwksError::Empty));
        assert_eq!(parse_jwks(r#"{"keys":[],"keys":[]}"#).err(), Some(JwksError::Json(JsonError::DuplicateKey)));
    }

    #[test]
    fn error_messages_never_contain_key_material() {
        let secret = b64url::encode(&[42u8; 16]);
        let jwk = serde_json::json!({"kty":"oct","kid":"s","k": secret});
        let msg = problem(one(jwk));
        assert!(!msg.contains(&secret), "{msg}");
        let jwk = serde_json::json!({"kty":"EC","crv":"P-256","kid":"p","x":"not base64!","y":"AA"});
        let msg = problem(one(jwk));
        assert!(!msg.contains("not base64!"), "{msg}");
    }
}
