//! Unit tests of token checking: every algorithm, and every rejection of RFC 8725 that applies.

use super::testkeys::{self, mint, mint_raw};
use super::*;
use serde_json::json;

const ISS: &str = "https://auth.example.com";
const AUD: &str = "orders-api";
const TENANT: &str = "7f1e1c1a-2b3c-4d5e-8f90-a1b2c3d4e5f6";
const NOW: i64 = 1_800_000_000;
const ALGS: [Alg; 4] = [Alg::HS256, Alg::EdDSA, Alg::ES256, Alg::RS256];

fn policy() -> Policy<'static> {
    Policy { clock_skew: 30, max_lifetime: 3600, default_tenant_claim: "tenant_id" }
}

/// One issuer with one key per algorithm, kid = the algorithm name.
fn store_with(audience: Option<&str>, tenant_claim: Option<&str>) -> KeyStore {
    let keys: Vec<Value> = ALGS.iter().map(|a| testkeys::jwk_for(*a, a.as_str())).collect();
    let set = jwk::parse_jwks(&json!({ "keys": keys }).to_string()).unwrap();
    let mut store = KeyStore::default();
    store.insert(
        ISS.into(),
        Issuer {
            audience: audience.map(Into::into),
            tenant_claim: tenant_claim.map(Into::into),
            keys: set.keys,
            ..Default::default()
        },
    );
    store
}

fn store() -> KeyStore {
    store_with(Some(AUD), None)
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "user-1", "tenant_id": TENANT, "iat": NOW - 10, "exp": NOW + 600})
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().unwrap().remove(key);
    c
}

fn check(token: &str) -> Result<Verified, Rejection> {
    verify(token, &store(), &policy(), NOW)
}

fn rejects(token: &str) -> Rejection {
    check(token).expect_err("token was accepted")
}

fn hs(c: &Value) -> String {
    mint(Alg::HS256, "HS256", c)
}

#[test]
fn every_algorithm_verifies() {
    for alg in ALGS {
        let v = check(&mint(alg, alg.as_str(), &claims())).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(v.tenant.to_string(), TENANT);
        assert_eq!(v.subject(), Some("user-1"));
        assert_eq!(v.exp, NOW + 600);
        assert_eq!(v.claims()["aud"], AUD);
    }
}

#[test]
fn size_is_capped_before_decoding() {
    let big = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(rejects(&big), Rejection::Oversized);
    // a signed token just over the cap is refused too
    let padded = with(claims(), "pad", json!("x".repeat(MAX_TOKEN_BYTES)));
    assert_eq!(rejects(&hs(&padded)), Rejection::Oversized);
    assert_eq!(rejects(""), Rejection::Empty);
}

#[test]
fn shape_must_be_three_parts() {
    let t = hs(&claims());
    assert_eq!(rejects(&format!("{t}.x")), Rejection::NotCompact);
    let two: Vec<&str> = t.split('.').take(2).collect();
    assert_eq!(rejects(&two.join(".")), Rejection::NotCompact);
    assert_eq!(rejects("not a token"), Rejection::NotCompact);
}

#[test]
fn alg_none_is_refused_in_any_spelling() {
    for none in ["none", "None", "NONE", "nOnE"] {
        let t = mint_raw(Alg::HS256, &json!({"alg": none, "kid": "HS256"}).to_string(), &claims().to_string());
        assert_eq!(rejects(&t), Rejection::AlgNone, "{none}");
    }
    // the classic stripped form: alg none with an empty signature
    let t = mint_raw(Alg::HS256, r#"{"alg":"none"}"#, &claims().to_string());
    let stripped = format!("{}.", t.rsplit_once('.').unwrap().0);
    assert_eq!(rejects(&stripped), Rejection::AlgNone);
    let t = mint_raw(Alg::HS256, r#"{"kid":"HS256"}"#, &claims().to_string());
    assert_eq!(rejects(&t), Rejection::AlgMissing);
}

#[test]
fn stripped_signature_is_refused() {
    for alg in ALGS {
        let t = mint(alg, alg.as_str(), &claims());
        let stripped = format!("{}.", t.rsplit_once('.').unwrap().0);
        let r = rejects(&stripped);
        assert!(matches!(r, Rejection::BadSignature | Rejection::Es256SignatureLength), "{alg}: {r}");
    }
}

#[test]
fn algorithm_confusion_is_refused() {
    // An HS256 token "signed" with the RSA public key's bytes as the HMAC secret, naming the RSA key.
    use hmac::Mac;
    use rsa::traits::PublicKeyParts;
    let header = json!({"alg": "HS256", "kid": "RS256"}).to_string();
    let input = format!("{}.{}", b64url::encode(header.as_bytes()), b64url::encode(claims().to_string().as_bytes()));
    let public = testkeys::rsa_private().n().to_bytes_be();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&public).unwrap();
    mac.update(input.as_bytes());
    let t = format!("{input}.{}", b64url::encode(&mac.finalize().into_bytes()));
    assert_eq!(rejects(&t), Rejection::AlgorithmMismatch(Alg::RS256));
    // Any header alg other than the key's own is refused, even a valid signature's.
    for (key, alg) in [("HS256", Alg::ES256), ("EdDSA", Alg::HS256), ("ES256", Alg::RS256), ("RS256", Alg::EdDSA)] {
        let t = mint(alg, key, &claims());
        let bound = Alg::from_name(key).unwrap();
        assert_eq!(rejects(&t), Rejection::AlgorithmMismatch(bound), "{alg} with key {key}");
    }
    let t = mint_raw(Alg::HS256, r#"{"alg":"HS512","kid":"HS256"}"#, &claims().to_string());
    assert_eq!(rejects(&t), Rejection::AlgorithmMismatch(Alg::HS256));
}

#[test]
fn hostile_headers_are_refused() {
    for (h, v) in [
        ("jku", json!("https://evil.example/jwks.json")),
        ("x5u", json!("https://evil.example/cert.pem")),
        ("jwk", json!({"kty": "oct", "k": "AAAA"})),
        ("x5c", json!(["MIIB..."])),
    ] {
        let header = json!({"alg": "HS256", "kid": "HS256", h: v}).to_string();
        let t = mint_raw(Alg::HS256, &header, &claims().to_string());
        assert_eq!(rejects(&t), Rejection::ForbiddenHeader(FORBIDDEN_HEADERS.iter().find(|x| **x == h).unwrap()));
    }
    let header = json!({"alg": "HS256", "kid": "HS256", "crit": ["exp"], "exp": 1}).to_string();
    assert_eq!(rejects(&mint_raw(Alg::HS256, &header, &claims().to_string())), Rejection::Crit);
    let header = json!({"alg": "HS256", "kid": "HS256", "crit": []}).to_string();
    assert_eq!(rejects(&mint_raw(Alg::HS256, &header, &claims().to_string())), Rejection::Crit);
    let header = json!({"alg": "HS256", "kid": "HS256", "cty": "JWT"}).to_string();
    assert_eq!(rejects(&mint_raw(Alg::HS256, &header, &claims().to_string())), Rejection::NestedToken);
}

#[test]
fn kid_is_an_exact_capped_lookup_key() {
    let t = mint(Alg::HS256, "hs256", &claims());
    assert_eq!(rejects(&t), Rejection::UnknownKey, "kid is case-sensitive");
    let t = mint(Alg::HS256, "HS256 ", &claims());
    assert_eq!(rejects(&t), Rejection::UnknownKey);
    let t = mint(Alg::HS256, "../../etc/passwd' OR '1'='1", &claims());
    assert_eq!(rejects(&t), Rejection::UnknownKey);
    let t = mint(Alg::HS256, &"k".repeat(MAX_KID_BYTES + 1), &claims());
    assert_eq!(rejects(&t), Rejection::BadKid);
    let t = mint_raw(Alg::HS256, r#"{"alg":"HS256","kid":7}"#, &claims().to_string());
    assert_eq!(rejects(&t), Rejection::BadKid);
    let t = mint_raw(Alg::HS256, r#"{"alg":"HS256"}"#, &claims().to_string());
    assert_eq!(rejects(&t), Rejection::UnknownKey, "a token without kid cannot pick among several keys");
}

#[test]
fn a_lone_key_without_kid_matches_tokens_without_kid() {
    let mut jwk = testkeys::hs256_jwk("x");
    jwk.as_object_mut().unwrap().remove("kid");
    let set = jwk::parse_jwks(&json!({ "keys": [jwk] }).to_string()).unwrap();
    let mut store = KeyStore::default();
    store.insert(ISS.into(), Issuer { keys: set.keys, ..Default::default() });
    let t = mint_raw(Alg::HS256, r#"{"alg":"HS256"}"#, &claims().to_string());
    assert!(verify(&t, &store, &policy(), NOW).is_ok());
    let t = mint(Alg::HS256, "x", &claims());
    assert_eq!(verify(&t, &store, &policy(), NOW).unwrap_err(), Rejection::UnknownKey);
}

#[test]
fn bad_signatures_are_refused_for_every_algorithm() {
    for alg in ALGS {
        let t = mint(alg, alg.as_str(), &claims());
        // flip one bit of the claims: signature no longer matches
        let (head, rest) = t.split_once('.').unwrap();
        let (body, sig) = rest.split_once('.').unwrap();
        let other = b64url::encode(
            with(claims(), "tenant_id", json!("00000000-0000-4000-8000-000000000001")).to_string().as_bytes(),
        );
        assert_eq!(rejects(&format!("{head}.{other}.{sig}")), Rejection::BadSignature, "{alg}");
        // a signature by the same algorithm over different content
        let foreign = mint(alg, alg.as_str(), &with(claims(), "sub", json!("other")));
        let foreign_sig = foreign.rsplit_once('.').unwrap().1;
        assert_eq!(rejects(&format!("{head}.{body}.{foreign_sig}")), Rejection::BadSignature, "{alg}");
    }
}

#[test]
fn es256_psychic_and_der_signatures_are_refused() {
    let t = mint(Alg::ES256, "ES256", &claims());
    let input = t.rsplit_once('.').unwrap().0;
    // CVE-2022-21449: r = s = 0
    let zero = format!("{input}.{}", b64url::encode(&[0u8; 64]));
    assert_eq!(rejects(&zero), Rejection::BadSignature);
    // r = s = n (the group order) is also "zero" mod n
    let n = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let order = format!("{input}.{}", b64url::encode(&[n, n].concat()));
    assert_eq!(rejects(&order), Rejection::BadSignature);
    // DER encoding of the genuine signature
    let raw = b64url::decode(t.rsplit_once('.').unwrap().1.as_bytes()).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
    let der = format!("{input}.{}", b64url::encode(sig.to_der().as_bytes()));
    assert_eq!(rejects(&der), Rejection::Es256SignatureLength);
    let short = format!("{input}.{}", b64url::encode(&raw[..63]));
    assert_eq!(rejects(&short), Rejection::Es256SignatureLength);
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[test]
fn malformed_encodings_are_refused() {
    let t = hs(&claims());
    let (h, rest) = t.split_once('.').unwrap();
    assert_eq!(rejects(&format!("{h}=.{rest}")), Rejection::NotCanonical(Part::Header));
    assert_eq!(rejects(&format!("{h} .{rest}")), Rejection::NotCanonical(Part::Header));
    let (c, s) = rest.split_once('.').unwrap();
    assert_eq!(rejects(&format!("{h}.{c}+.{s}")), Rejection::NotCanonical(Part::Claims));
    assert_eq!(rejects(&format!("{h}.{c}.{s}==")), Rejection::NotCanonical(Part::Signature));
    // non-zero trailing bits: change the last character of the signature so only unused bits differ
    // (HS256: 32 bytes = 43 chars, the last one carries 2 unused bits)
    let last = s.chars().last().unwrap();
    let idx = b64_index(last);
    assert_eq!(idx & 0b11, 0);
    let tweaked: String = s[..s.len() - 1].chars().chain(std::iter::once(b64_char(idx | 1))).collect();
    assert_eq!(rejects(&format!("{h}.{c}.{tweaked}")), Rejection::NotCanonical(Part::Signature));
}

fn b64_index(c: char) -> u8 {
    const A: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    A.find(c).unwrap() as u8
}

fn b64_char(i: u8) -> char {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    A[i as usize] as char
}

#[test]
fn duplicate_json_keys_are_refused() {
    let header = r#"{"alg":"HS256","kid":"HS256","alg":"HS256"}"#;
    let t = mint_raw(Alg::HS256, header, &claims().to_string());
    assert_eq!(rejects(&t), Rejection::BadJson(Part::Header, JsonError::DuplicateKey));
    let body = format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","tenant_id":"{TENANT}","exp":{},"tenant_id":"00000000-0000-4000-8000-000000000001"}}"#,
        NOW + 60
    );
    let t = mint_raw(Alg::HS256, r#"{"alg":"HS256","kid":"HS256"}"#, &body);
    assert_eq!(rejects(&t), Rejection::BadJson(Part::Claims, JsonError::DuplicateKey));
    let t = mint_raw(Alg::HS256, r#"{"alg":"HS256","kid":"HS256"}"#, "[1,2]");
    assert_eq!(rejects(&t), Rejection::NotAnObject(Part::Claims));
    let t = mint_raw(Alg::HS256, r#"{"alg":"HS256","kid":"HS256"}"#, "{not json");
    assert_eq!(rejects(&t), Rejection::BadJson(Part::Claims, JsonError::Invalid));
    let deep = format!(r#"{{"iss":"{ISS}","x":{}1{}}}"#, "[".repeat(40), "]".repeat(40));
    let t = mint_raw(Alg::HS256, r#"{"alg":"HS256","kid":"HS256"}"#, &deep);
    assert_eq!(rejects(&t), Rejection::BadJson(Part::Claims, JsonError::TooDeep));
}

#[test]
fn issuer_must_be_trusted_and_exact() {
    assert_eq!(rejects(&hs(&without(claims(), "iss"))), Rejection::MissingIssuer);
    assert_eq!(rejects(&hs(&with(claims(), "iss", json!("https://auth.example.com/")))), Rejection::UnknownIssuer);
    assert_eq!(rejects(&hs(&with(claims(), "iss", json!("HTTPS://AUTH.EXAMPLE.COM")))), Rejection::UnknownIssuer);
    assert_eq!(rejects(&hs(&with(claims(), "iss", json!(["x"])))), Rejection::BadClaimType("iss"));
}

#[test]
fn exp_is_required_and_checked() {
    assert_eq!(rejects(&hs(&without(claims(), "exp"))), Rejection::MissingExp);
    assert_eq!(rejects(&hs(&with(claims(), "exp", json!("2099-01-01")))), Rejection::BadClaimType("exp"));
    assert_eq!(rejects(&hs(&with(claims(), "exp", json!(NOW - 31)))), Rejection::Expired);
    assert_eq!(rejects(&hs(&with(claims(), "exp", json!(NOW - 30)))), Rejection::Expired);
    assert!(check(&hs(&with(claims(), "exp", json!(NOW - 29)))).is_ok(), "inside the 30 s leeway");
    assert!(check(&hs(&with(claims(), "exp", json!(NOW as f64 + 60.5)))).is_ok(), "fractional NumericDate");
}

#[test]
fn nbf_and_iat_must_not_be_in_the_future() {
    assert_eq!(rejects(&hs(&with(claims(), "nbf", json!(NOW + 31)))), Rejection::NotYetValid);
    assert!(check(&hs(&with(claims(), "nbf", json!(NOW + 30)))).is_ok());
    assert_eq!(rejects(&hs(&with(claims(), "iat", json!(NOW + 31)))), Rejection::IssuedInFuture);
    assert_eq!(rejects(&hs(&with(claims(), "nbf", json!(true)))), Rejection::BadClaimType("nbf"));
    assert_eq!(rejects(&hs(&with(claims(), "iat", json!(null)))), Rejection::BadClaimType("iat"));
}

#[test]
fn lifetime_is_capped() {
    let c = with(with(claims(), "iat", json!(NOW)), "exp", json!(NOW + 3601));
    assert_eq!(rejects(&hs(&c)), Rejection::LifetimeTooLong);
    let c = with(with(claims(), "iat", json!(NOW)), "exp", json!(NOW + 3600));
    assert!(check(&hs(&c)).is_ok());
    // backdated iat: a day-old token with an hour left has lived 25 hours
    let c = with(with(claims(), "iat", json!(NOW - 86400)), "exp", json!(NOW + 3600));
    assert_eq!(rejects(&hs(&c)), Rejection::LifetimeTooLong);
    // without iat or nbf the remaining lifetime counts
    let c = with(without(claims(), "iat"), "exp", json!(NOW + 7200));
    assert_eq!(rejects(&hs(&c)), Rejection::LifetimeTooLong);
    let strict = Policy { max_lifetime: 60, ..policy() };
    let c = with(with(claims(), "iat", json!(NOW)), "exp", json!(NOW + 61));
    assert_eq!(verify(&hs(&c), &store(), &strict, NOW).unwrap_err(), Rejection::LifetimeTooLong);
}

#[test]
fn clock_skew_setting_is_honoured() {
    let none = Policy { clock_skew: 0, ..policy() };
    let c = with(claims(), "exp", json!(NOW));
    assert_eq!(verify(&hs(&c), &store(), &none, NOW).unwrap_err(), Rejection::Expired);
    let c = with(claims(), "nbf", json!(NOW + 1));
    assert_eq!(verify(&hs(&c), &store(), &none, NOW).unwrap_err(), Rejection::NotYetValid);
}

#[test]
fn audience_is_matched_exactly() {
    assert_eq!(rejects(&hs(&without(claims(), "aud"))), Rejection::MissingAudience);
    assert_eq!(rejects(&hs(&with(claims(), "aud", json!("orders-api2")))), Rejection::WrongAudience);
    assert_eq!(rejects(&hs(&with(claims(), "aud", json!("Orders-API")))), Rejection::WrongAudience);
    assert_eq!(rejects(&hs(&with(claims(), "aud", json!([])))), Rejection::WrongAudience);
    assert_eq!(rejects(&hs(&with(claims(), "aud", json!(["a", 1])))), Rejection::BadClaimType("aud"));
    assert!(check(&hs(&with(claims(), "aud", json!(["other", AUD])))).is_ok());
    // an issuer without an audience does not look at aud
    let open = store_with(None, None);
    assert!(verify(&hs(&without(claims(), "aud")), &open, &policy(), NOW).is_ok());
}

#[test]
fn tenant_claim_must_be_a_canonical_uuid() {
    let r = rejects(&hs(&without(claims(), "tenant_id")));
    assert_eq!(r, Rejection::MissingTenant("tenant_id".into()));
    assert_eq!(r.to_string(), "token has no \"tenant_id\" claim naming the tenant");
    for bad in [
        json!("acme"),
        json!(42),
        json!("{7f1e1c1a-2b3c-4d5e-8f90-a1b2c3d4e5f6}"),
        json!("7f1e1c1a2b3c4d5e8f90a1b2c3d4e5f6"),
        json!(TENANT.to_uppercase()),
        json!(TENANT.replacen('f', "F", 1)),
        json!(format!("urn:uuid:{TENANT}")),
        json!("00000000-0000-0000-0000-000000000000"),
    ] {
        assert_eq!(rejects(&hs(&with(claims(), "tenant_id", bad))), Rejection::BadTenant("tenant_id".into()));
    }
    assert_eq!(rejects(&hs(&with(claims(), "sub", json!(1)))), Rejection::BadClaimType("sub"));
}

#[test]
fn tenant_claim_name_can_be_set_per_issuer_or_globally() {
    let c = with(without(claims(), "tenant_id"), "org", json!(TENANT));
    let per_issuer = store_with(Some(AUD), Some("org"));
    assert_eq!(verify(&hs(&c), &per_issuer, &policy(), NOW).unwrap().tenant.to_string(), TENANT);
    let global = Policy { default_tenant_claim: "org", ..policy() };
    assert_eq!(verify(&hs(&c), &store(), &global, NOW).unwrap().tenant.to_string(), TENANT);
    assert_eq!(rejects(&hs(&c)), Rejection::MissingTenant("tenant_id".into()));
}

#[test]
fn signature_is_checked_before_claims_are_believed() {
    // An expired token with a bad signature reports the signature, not the expiry.
    let t = hs(&with(claims(), "exp", json!(NOW - 1000)));
    let (input, _) = t.rsplit_once('.').unwrap();
    let forged = format!("{input}.{}", b64url::encode(&[9u8; 32]));
    assert_eq!(rejects(&forged), Rejection::BadSignature);
}

#[test]
fn rejection_messages_never_echo_the_token() {
    let t = hs(&with(claims(), "exp", json!(NOW - 1000)));
    let parts: Vec<&str> = t.split('.').collect();
    let cases = [
        t.clone(),
        format!("{}.{}.{}x", parts[0], parts[1], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        hs(&with(claims(), "iss", json!("https://evil.example"))),
        mint(Alg::HS256, "secret-kid-value", &claims()),
    ];
    for token in cases {
        let msg = rejects(&token).to_string();
        for p in token.split('.') {
            assert!(p.len() < 4 || !msg.contains(p), "{msg}");
        }
        assert!(!msg.contains("evil") && !msg.contains("secret-kid-value"), "{msg}");
    }
}

#[test]
fn cached_result_rechecks_time_on_every_use() {
    let v = check(&hs(&claims())).unwrap();
    assert!(v.check_time(NOW + 600 + 29, &policy()).is_ok());
    assert_eq!(v.check_time(NOW + 600 + 30, &policy()), Err(Rejection::Expired));
}

/// Property tests: hostile input never panics and never verifies.
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::sync::LazyLock as Lazy;

    static STORE: Lazy<KeyStore> = Lazy::new(store);
    static VALID: Lazy<Vec<String>> = Lazy::new(|| ALGS.iter().map(|a| mint(*a, a.as_str(), &claims())).collect());

    fn check(token: &str) -> Result<Verified, Rejection> {
        verify(token, &STORE, &policy(), NOW)
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(usize, u8),
        Insert(usize, u8),
        Delete(usize),
        Truncate(usize),
        Splice(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Delete),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Splice(a, b)),
        ]
    }

    fn apply(token: &str, m: &Mutation) -> Vec<u8> {
        let mut t = token.as_bytes().to_vec();
        let n = t.len();
        match *m {
            Mutation::Flip(i, b) => t[i % n] ^= b,
            Mutation::Insert(i, b) => t.insert(i % (n + 1), b),
            Mutation::Delete(i) => {
                t.remove(i % n);
            }
            Mutation::Truncate(i) => t.truncate(i % n),
            // a part of another valid token (another algorithm) pasted in
            Mutation::Splice(i, j) => {
                let other = VALID[j % VALID.len()].as_bytes();
                let (a, b) = (i % n, (i % n + j % 40).min(n));
                t.splice(a..b, other[a.min(other.len())..b.min(other.len())].iter().copied());
            }
        }
        t
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_is_rejected(token in any::<String>()) {
            prop_assert!(check(&token).is_err());
        }

        #[test]
        fn arbitrary_token_shaped_text_is_rejected(token in "[A-Za-z0-9_-]{0,400}\\.[A-Za-z0-9_-]{0,400}\\.[A-Za-z0-9_-]{0,400}") {
            prop_assert!(check(&token).is_err());
        }

        #[test]
        fn arbitrary_bytes_are_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..10_000)) {
            prop_assert!(check(&String::from_utf8_lossy(&bytes)).is_err());
        }

        #[test]
        fn any_mutation_of_a_valid_token_is_rejected(which in 0..4usize, m in mutation()) {
            let valid = &VALID[which];
            prop_assert!(check(valid).is_ok());
            let mutated = apply(valid, &m);
            if mutated != valid.as_bytes() {
                let text = String::from_utf8_lossy(&mutated);
                prop_assert!(check(&text).is_err(), "mutation {:?} was accepted", m);
            }
        }
    }
}

/// Two issuers: the platform's (unscoped) and a customer's, scoped to `TENANT`; `hs` tokens are signed for `ISS`.
fn two_issuers(platform_scope: Option<&[&str]>, customer_scope: Option<&[&str]>) -> KeyStore {
    let scope = |s: Option<&[&str]>| s.map(|t| t.iter().map(|u| Uuid::parse_str(u).unwrap()).collect());
    let keys: Vec<Value> = ALGS.iter().map(|a| testkeys::jwk_for(*a, a.as_str())).collect();
    let set = || jwk::parse_jwks(&json!({ "keys": keys }).to_string()).unwrap().keys;
    let mut store = KeyStore::default();
    store.insert(
        ISS.into(),
        Issuer { audience: Some(AUD.into()), keys: set(), tenants: scope(platform_scope), ..Default::default() },
    );
    store.insert(
        "https://sso.customer".into(),
        Issuer { keys: set(), tenants: scope(customer_scope), ..Default::default() },
    );
    store
}

const OTHER: &str = "0b0b0b0b-0000-4000-8000-00000000000b";

#[test]
fn a_scoped_issuer_speaks_only_for_its_tenants() {
    let store = two_issuers(Some(&[OTHER]), None);
    assert_eq!(verify(&hs(&claims()), &store, &policy(), NOW).unwrap_err(), Rejection::TenantOutOfScope);
    assert!(verify(&hs(&with(claims(), "tenant_id", json!(OTHER))), &store, &policy(), NOW).is_ok());
}

#[test]
fn a_tenant_listed_for_an_issuer_is_reserved_to_the_issuers_that_list_it() {
    // the customer's provider is scoped to TENANT: the unscoped platform provider may no longer speak for TENANT
    let store = two_issuers(None, Some(&[TENANT]));
    assert_eq!(verify(&hs(&claims()), &store, &policy(), NOW).unwrap_err(), Rejection::TenantReserved);
    assert!(verify(&hs(&with(claims(), "tenant_id", json!(OTHER))), &store, &policy(), NOW).is_ok());
    // listing TENANT for both lets both speak for it
    let both = two_issuers(Some(&[TENANT]), Some(&[TENANT]));
    assert!(verify(&hs(&claims()), &both, &policy(), NOW).is_ok());
    assert!(Rejection::TenantReserved.to_string().contains("reserved"));
}

fn verify_with(revocations: Revocations, c: &Value) -> Result<Verified, Rejection> {
    let mut store = store();
    store.revocations = revocations;
    verify(&hs(c), &store, &policy(), NOW)
}

#[test]
fn a_revoked_jti_is_refused_and_others_pass() {
    let revoked = || Revocations { tokens: ["t-1".to_string()].into(), ..Default::default() };
    assert_eq!(verify_with(revoked(), &with(claims(), "jti", json!("t-1"))).unwrap_err(), Rejection::Revoked);
    assert!(verify_with(revoked(), &with(claims(), "jti", json!("t-2"))).is_ok());
    assert!(verify_with(revoked(), &claims()).is_ok());
    // a jti that is not a string is refused before any lookup
    assert_eq!(verify_with(revoked(), &with(claims(), "jti", json!(1))).unwrap_err(), Rejection::BadClaimType("jti"));
}

#[test]
fn a_revoked_subject_refuses_tokens_issued_before_the_cut_only() {
    let cut = NOW - 5;
    let revoked =
        || Revocations { subjects: [((ISS.to_string(), "user-1".to_string()), cut)].into(), ..Default::default() };
    // issued at NOW - 10: before the cut
    assert_eq!(verify_with(revoked(), &claims()).unwrap_err(), Rejection::SubjectRevoked);
    // no iat: counts as issued before any time
    assert_eq!(verify_with(revoked(), &without(claims(), "iat")).unwrap_err(), Rejection::SubjectRevoked);
    // issued within the leeway after the cut (the issuer's clock may run ahead by that much): refused too
    assert_eq!(verify_with(revoked(), &with(claims(), "iat", json!(cut + 29))).unwrap_err(), Rejection::SubjectRevoked);
    // issued at or after the cut plus the leeway: a fresh login works
    assert!(verify_with(revoked(), &with(claims(), "iat", json!(cut + 30))).is_ok());
    // another subject, or the same subject name from another issuer, is untouched
    assert!(verify_with(revoked(), &with(claims(), "sub", json!("user-2"))).is_ok());
    let other_issuer = Revocations {
        subjects: [(("https://other.example.com".to_string(), "user-1".to_string()), NOW)].into(),
        ..Default::default()
    };
    assert!(verify_with(other_issuer, &claims()).is_ok());
}

#[test]
fn a_suspended_tenant_gets_no_context_whatever_the_token() {
    let suspended = || Revocations { suspended: [Uuid::parse_str(TENANT).unwrap()].into(), ..Default::default() };
    assert_eq!(verify_with(suspended(), &claims()).unwrap_err(), Rejection::TenantSuspended);
    assert_eq!(
        verify_with(suspended(), &with(claims(), "jti", json!("fresh"))).unwrap_err(),
        Rejection::TenantSuspended
    );
    let other = "0b1e1c1a-2b3c-4d5e-8f90-a1b2c3d4e5f6";
    assert!(verify_with(suspended(), &with(claims(), "tenant_id", json!(other))).is_ok());
    // each refusal says which
    assert!(Rejection::TenantSuspended.to_string().contains("suspended"));
    assert!(Rejection::Revoked.to_string().contains("jti"));
    assert!(Rejection::SubjectRevoked.to_string().contains("subject"));
}

#[test]
fn a_bound_database_serves_its_tenant_and_a_moved_tenant_is_told_where_it_went() {
    let tenant = Uuid::parse_str(TENANT).unwrap();
    let other = "0b1e1c1a-2b3c-4d5e-8f90-a1b2c3d4e5f6";
    let with_placement = |placement: Placement, c: &Value| {
        let mut store = store();
        store.placement = placement;
        verify(&hs(c), &store, &policy(), NOW)
    };
    let silo = || Placement { bound: Some(tenant), ..Default::default() };
    assert!(with_placement(silo(), &claims()).is_ok());
    assert_eq!(
        with_placement(silo(), &with(claims(), "tenant_id", json!(other))).unwrap_err(),
        Rejection::WrongDatabase
    );
    let here = Location { database: "silo_acme".into(), server: None };
    let moved = || Placement { elsewhere: [(tenant, here.clone())].into(), ..Default::default() };
    assert_eq!(with_placement(moved(), &claims()).unwrap_err(), Rejection::Moved(tenant, here.clone()));
    assert!(with_placement(moved(), &with(claims(), "tenant_id", json!(other))).is_ok());
    assert_eq!(
        Rejection::Moved(tenant, here.clone()).to_string(),
        format!("tenant {TENANT} moved to database \"silo_acme\" (see tenant.placement): connect there")
    );
    let far = Location { database: "t\"1".into(), server: Some("db2.internal".into()) };
    assert_eq!(
        Rejection::Moved(tenant, far).to_string(),
        format!(
            "tenant {TENANT} moved to database \"t\\\"1\" on server \"db2.internal\" (see tenant.placement): \
             connect there"
        )
    );
    assert_eq!(Rejection::WrongDatabase.to_string(), "this database is bound to another tenant (see tenant.placement)");
}

const CERT: [u8; 32] = [7u8; 32];

fn bound(c: &Value) -> Value {
    with(c.clone(), "cnf", json!({ "x5t#S256": b64url::encode(&CERT) }))
}

#[test]
fn a_certificate_bound_token_fits_only_a_connection_with_that_certificate() {
    let v = check(&hs(&bound(&claims()))).unwrap();
    assert_eq!(v.cert_thumbprint, Some(CERT));
    assert_eq!(v.check_binding(Presented::Certificate(CERT)), Ok(()));
    assert_eq!(
        v.check_binding(Presented::Certificate([8u8; 32])),
        Err(Rejection::WrongConnection(Unbound::OtherCertificate))
    );
    assert_eq!(v.check_binding(Presented::NoCertificate), Err(Rejection::WrongConnection(Unbound::NoCertificate)));
    assert_eq!(v.check_binding(Presented::NotTls), Err(Rejection::WrongConnection(Unbound::NotTls)));
    // an unbound token fits any connection
    let unbound = check(&hs(&claims())).unwrap();
    assert_eq!(unbound.cert_thumbprint, None);
    for p in [Presented::NotTls, Presented::NoCertificate, Presented::Certificate(CERT)] {
        assert_eq!(unbound.check_binding(p), Ok(()));
    }
    // each refusal says which
    assert!(Rejection::WrongConnection(Unbound::NotTls).to_string().contains("not TLS"));
    assert!(Rejection::WrongConnection(Unbound::NoCertificate).to_string().contains("presented none"));
    assert!(Rejection::WrongConnection(Unbound::OtherCertificate).to_string().contains("another client certificate"));
}

#[test]
fn confirmation_claims_tenant_guard_cannot_check_are_refused() {
    for cnf in [
        json!("x"),
        json!({}),
        json!({"jkt": "abc"}),
        json!({"jwk": {"kty": "OKP"}}),
        json!({"x5t#S256": b64url::encode(&CERT), "jkt": "abc"}),
        json!({"x5t#S256": 5}),
    ] {
        assert_eq!(rejects(&hs(&with(claims(), "cnf", cnf.clone()))), Rejection::UnsupportedConfirmation, "{cnf}");
    }
    for x5t in [
        b64url::encode(&[1u8; 31]),
        b64url::encode(&[1u8; 33]),
        "not base64!".into(),
        format!("{}=", b64url::encode(&CERT)),
    ] {
        assert_eq!(rejects(&hs(&with(claims(), "cnf", json!({ "x5t#S256": x5t })))), Rejection::BadThumbprint);
    }
}

#[test]
fn an_issuer_that_requires_binding_refuses_unbound_tokens() {
    let keys: Vec<Value> = vec![testkeys::jwk_for(Alg::HS256, "HS256")];
    let set = jwk::parse_jwks(&json!({ "keys": keys }).to_string()).unwrap();
    let mut store = KeyStore::default();
    store.insert(
        ISS.into(),
        Issuer { audience: Some(AUD.into()), keys: set.keys, require_cert_binding: true, ..Default::default() },
    );
    assert_eq!(verify(&hs(&claims()), &store, &policy(), NOW).unwrap_err(), Rejection::CertBindingRequired);
    assert_eq!(verify(&hs(&bound(&claims())), &store, &policy(), NOW).unwrap().cert_thumbprint, Some(CERT));
}

#[test]
fn a_jti_or_sub_no_revocation_could_name_is_refused() {
    let long = "j".repeat(MAX_REVOCABLE_BYTES + 1);
    let fits = "j".repeat(MAX_REVOCABLE_BYTES);
    assert_eq!(rejects(&hs(&with(claims(), "jti", json!(long)))), Rejection::Unrevocable("jti"));
    assert_eq!(rejects(&hs(&with(claims(), "sub", json!(long)))), Rejection::Unrevocable("sub"));
    assert_eq!(rejects(&hs(&with(claims(), "jti", json!("abc\u{0}")))), Rejection::Unrevocable("jti"));
    assert!(check(&hs(&with(claims(), "jti", json!(fits)))).is_ok());
}

// ---------------------------------------------------------------------------------------------------------------
// Sharing verifications: a signature known good for the selected key is not checked again; nothing else is skipped.

fn sharing(token: &str, store: &KeyStore, known: Option<[u8; 32]>) -> Result<(Verified, Signature), Rejection> {
    verify_signed_sharing(token, store, &policy(), &mut |fp| Some(*fp) == known)
}

#[test]
fn a_first_verification_reports_the_fingerprint_of_the_key_that_checked_it() {
    let mut seen = Vec::new();
    for alg in ALGS {
        let token = mint(alg, alg.as_str(), &claims());
        let Signature::Checked(fp) = sharing(&token, &store(), None).unwrap().1 else { panic!("{alg:?}: not checked") };
        // an independently parsed copy of the same key set has the same fingerprint
        assert_eq!(sharing(&token, &store(), Some(fp)).unwrap().1, Signature::Known(fp));
        seen.push(fp);
    }
    // each key its own fingerprint: knowing one key's verdict says nothing of another's
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), ALGS.len());
}

#[test]
fn a_known_signature_skips_only_the_signature_check() {
    let token = hs(&claims());
    let Signature::Checked(fp) = sharing(&token, &store(), None).unwrap().1 else { panic!() };
    // a forged signature is caught only by the check that is skipped: proof that it was skipped
    let forged = format!("{}.{}", token.rsplit_once('.').unwrap().0, "AAAA");
    assert_eq!(sharing(&forged, &store(), None).unwrap_err(), Rejection::BadSignature);
    assert!(sharing(&forged, &store(), Some(fp)).is_ok());
    // everything else still runs: the audience, the scope, the revocations, the required binding
    let wrong_aud = hs(&with(claims(), "aud", json!("other")));
    assert_eq!(sharing(&wrong_aud, &store(), Some(fp)).unwrap_err(), Rejection::WrongAudience);
    let mut suspended = store();
    suspended.revocations.suspended.insert(TENANT.parse().unwrap());
    assert_eq!(sharing(&token, &suspended, Some(fp)).unwrap_err(), Rejection::TenantSuspended);
    let mut revoked = store();
    revoked.revocations.tokens.insert("j-1".into());
    let with_jti = hs(&with(claims(), "jti", json!("j-1")));
    assert_eq!(sharing(&with_jti, &revoked, Some(fp)).unwrap_err(), Rejection::Revoked);
}

#[test]
fn a_removed_or_replaced_key_is_not_covered_by_a_known_signature() {
    let token = hs(&claims());
    let Signature::Checked(fp) = sharing(&token, &store(), None).unwrap().1 else { panic!() };
    // the issuer now has no key of that kid
    let mut removed = KeyStore::default();
    let keys: Vec<Value> = [Alg::EdDSA].iter().map(|a| testkeys::jwk_for(*a, a.as_str())).collect();
    removed.insert(
        ISS.into(),
        Issuer {
            audience: Some(AUD.into()),
            keys: jwk::parse_jwks(&json!({ "keys": keys }).to_string()).unwrap().keys,
            ..Default::default()
        },
    );
    assert_eq!(sharing(&token, &removed, Some(fp)).unwrap_err(), Rejection::UnknownKey);
    // the kid is reused for another secret: another fingerprint, so the signature is checked (and fails)
    let mut replaced = KeyStore::default();
    let other = json!({"kty": "oct", "kid": "HS256", "alg": "HS256", "k": b64url::encode(&[7u8; 32])});
    replaced.insert(
        ISS.into(),
        Issuer {
            audience: Some(AUD.into()),
            keys: jwk::parse_jwks(&json!({ "keys": [other] }).to_string()).unwrap().keys,
            ..Default::default()
        },
    );
    assert_eq!(sharing(&token, &replaced, Some(fp)).unwrap_err(), Rejection::BadSignature);
}

#[test]
fn an_issuer_without_keys_still_reserves_its_tenants() {
    // a discovered issuer before its first good fetch (or one whose stored keys are unusable) verifies nothing, and
    // the platform's unscoped issuer must still not speak for the tenant it lists
    let mut store = store();
    store.insert(
        "https://sso.customer".into(),
        Issuer { keys: Vec::new(), tenants: Some([TENANT.parse().unwrap()].into()), ..Default::default() },
    );
    assert_eq!(check_with(&store, &hs(&claims())), Rejection::TenantReserved);
    assert!(verify(&hs(&with(claims(), "tenant_id", json!(OTHER))), &store, &policy(), NOW).is_ok());
}

fn check_with(store: &KeyStore, token: &str) -> Rejection {
    verify(token, store, &policy(), NOW).expect_err("token was accepted")
}
