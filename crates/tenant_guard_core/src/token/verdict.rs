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
    use uuid::Uuid;

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

    fn keys(kids: &[(Alg, &str)]) -> Vec<super::super::Jwk> {
        let keys: Vec<_> = kids.iter().map(|(a, k)| super::super::testkeys::jwk_for(*a, k)).collect();
        jwk::parse_jwks(&json!({ "keys": keys }).to_string()).unwrap().keys
    }

    fn tenant(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    /// Two issuers, scopes, revocations: the content every mutation below changes one part of.
    fn full(change: impl FnOnce(&mut Vec<(String, Issuer)>, &mut super::super::Revocations)) -> KeyStore {
        let mut issuers = vec![
            (
                ISS.to_owned(),
                Issuer {
                    audience: Some("api".into()),
                    tenant_claim: None,
                    keys: keys(&[(Alg::EdDSA, "k"), (Alg::ES256, "e")]),
                    tenants: Some([tenant(1), tenant(2)].into()),
                    ..Default::default()
                },
            ),
            ("https://other.example".to_owned(), Issuer { keys: keys(&[(Alg::HS256, "h")]), ..Default::default() }),
        ];
        let mut revocations = super::super::Revocations::default();
        revocations.tokens.extend(["j1".to_owned(), "j2".to_owned()]);
        revocations.subjects.insert((ISS.to_owned(), "s1".to_owned()), 100);
        revocations.suspended.insert(tenant(9));
        change(&mut issuers, &mut revocations);
        let mut store = KeyStore::default();
        for (name, issuer) in issuers {
            store.insert(name, issuer);
        }
        store.revocations = revocations;
        store
    }

    #[test]
    fn the_digest_names_the_content_not_the_order() {
        let a = full(|_, _| {});
        let b = full(|issuers, revocations| {
            issuers.reverse();
            let tokens: Vec<String> = revocations.tokens.drain().collect();
            revocations.tokens.extend(tokens.into_iter().rev());
        });
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn every_part_of_the_store_changes_the_digest() {
        type Change = Box<dyn FnOnce(&mut Vec<(String, Issuer)>, &mut super::super::Revocations)>;
        let changes: Vec<(&str, Change)> = vec![
            ("an issuer less", Box::new(|i, _| drop(i.pop()))),
            ("an issuer renamed", Box::new(|i, _| i[1].0.push('/'))),
            ("no audience", Box::new(|i, _| i[0].1.audience = None)),
            ("another audience", Box::new(|i, _| i[0].1.audience = Some("apj".into()))),
            ("a tenant claim", Box::new(|i, _| i[0].1.tenant_claim = Some("org".into()))),
            ("a key less", Box::new(|i, _| drop(i[0].1.keys.pop()))),
            ("another key, same kid", Box::new(|i, _| i[1].1.keys = keys(&[(Alg::EdDSA, "h")]))),
            ("a kid renamed", Box::new(|i, _| i[0].1.keys[0].kid = Some("k2".into()))),
            ("keys reordered", Box::new(|i, _| i[0].1.keys.reverse())),
            ("unscoped", Box::new(|i, _| i[0].1.tenants = None)),
            ("scoped to none", Box::new(|i, _| i[1].1.tenants = Some(Default::default()))),
            (
                "a tenant more",
                Box::new(|i, _| {
                    i[0].1.tenants.as_mut().unwrap().insert(tenant(3));
                }),
            ),
            ("binding required", Box::new(|i, _| i[0].1.require_cert_binding = true)),
            ("jti required", Box::new(|i, _| i[0].1.require_jti = true)),
            (
                "a jti revoked",
                Box::new(|_, r| {
                    r.tokens.insert("j3".into());
                }),
            ),
            (
                "a jti restored",
                Box::new(|_, r| {
                    r.tokens.remove("j1");
                }),
            ),
            (
                "a subject revoked",
                Box::new(|_, r| {
                    r.subjects.insert((ISS.into(), "s2".into()), 100);
                }),
            ),
            (
                "a subject's cut moved",
                Box::new(|_, r| {
                    r.subjects.insert((ISS.into(), "s1".into()), 101);
                }),
            ),
            (
                "a tenant suspended",
                Box::new(|_, r| {
                    r.suspended.insert(tenant(8));
                }),
            ),
            (
                "a tenant resumed",
                Box::new(|_, r| {
                    r.suspended.remove(&tenant(9));
                }),
            ),
            // the same bytes, framed otherwise
            (
                "a jti split in two",
                Box::new(|_, r| {
                    r.tokens.remove("j1");
                    r.tokens.extend(["j".to_owned(), "1".to_owned()]);
                }),
            ),
        ];
        let mut seen = vec![("the original", full(|_, _| {}).digest())];
        for (what, change) in changes {
            let digest = full(change).digest();
            if let Some((other, _)) = seen.iter().find(|(_, d)| *d == digest) {
                panic!("{what}: the same digest as {other}");
            }
            seen.push((what, digest));
        }
    }

    #[test]
    fn every_change_of_placement_changes_the_digest() {
        use super::super::{Location, Placement};
        let at = |database: &str, server: Option<&str>| Location {
            database: database.into(),
            server: server.map(Into::into),
        };
        let with = |bound: Option<Uuid>, elsewhere: &[(Uuid, Location)]| {
            let mut store = full(|_, _| {});
            store.placement = Placement { bound, elsewhere: elsewhere.iter().cloned().collect() };
            store.digest()
        };
        let digests = [
            ("nothing placed", with(None, &[])),
            ("bound", with(Some(tenant(4)), &[])),
            ("bound to another", with(Some(tenant(5)), &[])),
            ("one moved", with(None, &[(tenant(4), at("silo", None))])),
            ("moved elsewhere", with(None, &[(tenant(4), at("silo2", None))])),
            ("moved to another server", with(None, &[(tenant(4), at("silo", Some("db2")))])),
            ("another moved", with(None, &[(tenant(5), at("silo", None))])),
            ("two moved", with(None, &[(tenant(4), at("silo", None)), (tenant(5), at("silo", None))])),
            ("bound and one moved", with(Some(tenant(4)), &[(tenant(5), at("silo", None))])),
            // the same bytes, framed otherwise
            ("a name split", with(None, &[(tenant(4), at("si", Some("lo")))])),
        ];
        for (i, (what, digest)) in digests.iter().enumerate() {
            if let Some((other, _)) = digests[..i].iter().find(|(_, d)| d == digest) {
                panic!("{what}: the same digest as {other}");
            }
        }
        assert_eq!(digests[0].1, full(|_, _| {}).digest());
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
