//! A verification's conclusion in a fixed size, for sharing between the processes of one server: what the checks
//! at each use need (the tenant, the times, the certificate binding), without the token and without its claims.
//!
//! A process that holds the very token a verdict was reached on (the caller matches them by the token's hash) can
//! rebuild the [`Verified`] from the verdict alone; the claims are then taken from the token's own claims part when
//! first asked for. Whether a verdict still holds (the same issuers, revocations and policy) is the caller's to
//! decide: a verdict says what was concluded, not until when.

use super::{Claims, Verified};
use std::cell::OnceCell;
use uuid::Uuid;
use zeroize::Zeroizing;

/// `Verdict::present` bits.
const HAS_NBF: u8 = 1;
const HAS_IAT: u8 = 2;
const HAS_CERT: u8 = 4;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    tenant: [u8; 16],
    exp: i64,
    nbf: i64,
    iat: i64,
    cert_thumbprint: [u8; 32],
    /// Which of `nbf`, `iat` and `cert_thumbprint` the token has.
    present: u8,
}

impl Verified {
    /// The verdict that stands for this verification, or None for a token its issuer allows once (whose `jti` each
    /// use must consume, so each process needs the claims anyway).
    pub fn verdict(&self) -> Option<Verdict> {
        if self.once.is_some() {
            return None;
        }
        let mut present = 0;
        present |= if self.nbf.is_some() { HAS_NBF } else { 0 };
        present |= if self.iat.is_some() { HAS_IAT } else { 0 };
        present |= if self.cert_thumbprint.is_some() { HAS_CERT } else { 0 };
        Some(Verdict {
            tenant: *self.tenant.as_bytes(),
            exp: self.exp,
            nbf: self.nbf.unwrap_or(0),
            iat: self.iat.unwrap_or(0),
            cert_thumbprint: self.cert_thumbprint.unwrap_or([0; 32]),
            present,
        })
    }

    /// The verification `verdict` stands for, for `token`: the token the verdict was reached on (the caller's to
    /// match), whose claims part becomes the claims.
    pub fn from_verdict(verdict: &Verdict, token: &str) -> Verified {
        let has = |bit: u8| verdict.present & bit != 0;
        Verified {
            tenant: Uuid::from_bytes(verdict.tenant),
            exp: verdict.exp,
            nbf: has(HAS_NBF).then_some(verdict.nbf),
            iat: has(HAS_IAT).then_some(verdict.iat),
            claims: Claims {
                parsed: OnceCell::new(),
                part: token.split('.').nth(1).map(|p| Zeroizing::new(p.to_owned())),
            },
            cert_thumbprint: has(HAS_CERT).then_some(verdict.cert_thumbprint),
            once: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkeys::mint;
    use super::super::{jwk, verify, Alg, Issuer, KeyStore, Policy};
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://auth.example.com";
    const TENANT: &str = "7f1e1c1a-2b3c-4d5e-8f90-a1b2c3d4e5f6";
    const NOW: i64 = 1_800_000_000;

    fn store(require_jti: bool) -> KeyStore {
        let set = jwk::parse_jwks(&json!({ "keys": [super::super::testkeys::jwk_for(Alg::EdDSA, "k")] }).to_string());
        let mut store = KeyStore::default();
        store.insert(ISS.into(), Issuer { keys: set.unwrap().keys, require_jti, ..Default::default() });
        store
    }

    fn policy() -> Policy<'static> {
        Policy { clock_skew: 30, max_lifetime: 3600, default_tenant_claim: "tenant_id" }
    }

    #[test]
    fn a_verdict_rebuilds_the_same_verification() {
        let thumb = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [7u8; 32]);
        let cases = [
            json!({"iss": ISS, "sub": "user-1", "tenant_id": TENANT, "exp": NOW + 60, "role": ["a", "b"]}),
            json!({"iss": ISS, "tenant_id": TENANT, "exp": NOW + 60, "nbf": NOW - 5, "iat": NOW - 10}),
            json!({"iss": ISS, "tenant_id": TENANT, "exp": NOW + 60, "iat": NOW, "cnf": {"x5t#S256": thumb}}),
        ];
        for claims in cases {
            let token = mint(Alg::EdDSA, "k", &claims);
            let verified = verify(&token, &store(false), &policy(), NOW).unwrap();
            let verdict = verified.verdict().expect("a verdict");
            let rebuilt = Verified::from_verdict(&verdict, &token);
            assert_eq!(
                (rebuilt.tenant, rebuilt.exp, rebuilt.nbf, rebuilt.iat, rebuilt.cert_thumbprint),
                (verified.tenant, verified.exp, verified.nbf, verified.iat, verified.cert_thumbprint)
            );
            assert_eq!(rebuilt.claims(), verified.claims());
            assert_eq!(rebuilt.subject(), verified.subject());
            assert_eq!(rebuilt.verdict(), Some(verdict));
        }
    }

    #[test]
    fn a_token_allowed_once_has_no_verdict() {
        let token = mint(Alg::EdDSA, "k", &json!({"iss": ISS, "tenant_id": TENANT, "exp": NOW + 60, "jti": "j-1"}));
        let verified = verify(&token, &store(true), &policy(), NOW).unwrap();
        assert!(verified.once.is_some());
        assert_eq!(verified.verdict(), None);
    }

    #[test]
    fn the_debug_form_shows_no_claim() {
        let token =
            mint(Alg::EdDSA, "k", &json!({"iss": ISS, "sub": "secret-subject", "tenant_id": TENANT, "exp": NOW + 60}));
        let verified = verify(&token, &store(false), &policy(), NOW).unwrap();
        let rebuilt = Verified::from_verdict(&verified.verdict().unwrap(), &token);
        for v in [&verified, &rebuilt] {
            let shown = format!("{v:?}");
            assert!(!shown.contains("secret-subject") && !shown.contains(ISS), "{shown}");
        }
    }
}
