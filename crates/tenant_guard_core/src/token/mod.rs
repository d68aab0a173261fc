//! Token checking: compact JWS (RFC 7515) carrying JWT claims (RFC 7519), verified by the rules of RFC 8725.
//!
//! Pure Rust, no Postgres: everything here is unit-tested with `cargo test`. The Postgres side (where keys come
//! from, where the verified context is kept) lives in `issuers` and `context`.
//!
//! What is checked, in this order:
//! 1. size (at most [`MAX_TOKEN_BYTES`]) before anything is decoded;
//! 2. shape: exactly three canonical base64url parts;
//! 3. header: strict JSON; `alg` present and never `none`; no `crit`, `jku`, `x5u`, `jwk`, `x5c`; no nested token;
//!    `kid`, if any, a string of at most 256 bytes used only as an exact lookup key;
//! 4. claims: strict JSON object with a string `iss` naming a trusted issuer;
//! 5. key: the issuer's key with exactly that `kid`; the header's `alg` must equal the algorithm the key is bound to;
//! 6. signature (ES256 signatures are exactly 64 bytes R‖S, never DER);
//! 7. claims: `exp` required, `nbf`/`iat` not in the future, lifetime cap, `aud`, the tenant claim (a uuid).
//!
//! No claim is believed before the signature is checked. Rejections are fixed messages that name the failed check and
//! never contain the token or any key.

pub mod b64url;
pub mod json;
pub mod jwk;
pub mod reason;
#[cfg(any(test, feature = "testkeys"))]
pub mod testkeys;
pub mod verdict;

use hmac::Mac;
use json::JsonError;
use jwk::{Alg, Jwk, KeyMaterial, MAX_KID_BYTES};
use serde_json::{Map, Value};
use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Longest token accepted, checked before decoding.
pub const MAX_TOKEN_BYTES: usize = 8192;
/// Longest `jti` or `sub` accepted: what `tenant.revoke_token` and `tenant.revoke_subject` can list.
pub const MAX_REVOCABLE_BYTES: usize = 1024;

/// Header parameters that would make the verifier fetch or trust keys named by the token itself.
const FORBIDDEN_HEADERS: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

/// A trusted issuer, as registered by `tenant.trust_issuer`.
#[derive(Debug, Default)]
pub struct Issuer {
    pub audience: Option<String>,
    pub tenant_claim: Option<String>,
    pub keys: Vec<Jwk>,
    /// The tenants this issuer may speak for (`tenant.issuer_tenant`); `None`: every tenant that no issuer lists.
    pub tenants: Option<HashSet<Uuid>>,
    /// Whether its tokens must be bound to a client certificate (`cnf` with `x5t#S256`, RFC 8705).
    pub require_cert_binding: bool,
    /// Whether its tokens must carry a `jti`, usable in one transaction only (checked by the extension).
    pub require_jti: bool,
}

impl Issuer {
    fn key(&self, kid: Option<&str>) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == kid)
    }
}

/// Every trusted issuer, by exact `iss` value.
///
/// Who may speak for a tenant: an issuer that lists tenants (a scoped issuer) speaks for those only; a tenant that
/// some issuer lists is reserved to the issuers that list it; an issuer that lists none speaks for every tenant that
/// no issuer lists. So a customer's identity provider scoped to its tenant can neither speak for another tenant nor
/// be impersonated by the platform's own provider for that tenant.
#[derive(Debug, Default)]
pub struct KeyStore {
    issuers: HashMap<String, Issuer>,
    /// Every tenant some scoped issuer lists.
    reserved: HashSet<Uuid>,
    /// What an administrator revoked or suspended (`tenant.revoke_token`, `revoke_subject`, `suspend_tenant`).
    pub revocations: Revocations,
    /// Which tenants this database serves (`tenant.bind_database`, `tenant.place_tenant`).
    pub placement: Placement,
}

/// Which tenants a database serves: silo, pool and hybrid behind one API. A database bound to a tenant (a silo)
/// serves that tenant only; a tenant placed in another database (moved to a silo, or back to a pool) is refused
/// here, with an error that says where it went, so that a stale route cannot read or write the old copy.
#[derive(Debug, Default)]
pub struct Placement {
    /// The one tenant this database serves; None: any tenant not placed elsewhere.
    pub bound: Option<Uuid>,
    /// Tenants served elsewhere, and where.
    pub elsewhere: HashMap<Uuid, Location>,
}

/// Where a tenant is served: a database, on this server (None) or another one (as `tenant.placement` names it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub database: String,
    pub server: Option<String>,
}

impl Placement {
    fn check(&self, tenant: &Uuid) -> Result<(), Rejection> {
        if let Some(location) = self.elsewhere.get(tenant) {
            return Err(Rejection::Moved(*tenant, location.clone()));
        }
        if self.bound.is_some_and(|bound| bound != *tenant) {
            return Err(Rejection::WrongDatabase);
        }
        Ok(())
    }
}

/// Tokens, subjects and tenants an administrator has withdrawn. A verified token is refused when its `jti` is
/// revoked, when its issuer's `sub` was revoked for tokens issued before a time (a token without `iat` counts as
/// issued before any time), or when its tenant is suspended.
#[derive(Debug, Default)]
pub struct Revocations {
    /// Revoked `jti` values, whoever issued them.
    pub tokens: HashSet<String>,
    /// (issuer, subject) to the time (seconds since the epoch) before which its tokens are refused.
    pub subjects: HashMap<(String, String), i64>,
    /// Suspended tenants: no token yields them.
    pub suspended: HashSet<Uuid>,
}

impl Revocations {
    /// Refuses what an administrator withdrew (`jti`: the token's `jti` claim, already type-checked). A subject's
    /// cut allows for the issuer's clock running ahead by up to `skew` seconds (the leeway tokens get for `iat`).
    fn check(
        &self,
        iss: &str,
        jti: Option<&str>,
        subject: Option<&str>,
        iat: Option<i64>,
        tenant: &Uuid,
        skew: i64,
    ) -> Result<(), Rejection> {
        if self.suspended.contains(tenant) {
            return Err(Rejection::TenantSuspended);
        }
        if jti.is_some_and(|j| self.tokens.contains(j)) {
            return Err(Rejection::Revoked);
        }
        if let Some(sub) = subject {
            if !self.subjects.is_empty() {
                if let Some(before) = self.subjects.get(&(iss.to_owned(), sub.to_owned())) {
                    if iat.is_none_or(|iat| iat < before.saturating_add(skew)) {
                        return Err(Rejection::SubjectRevoked);
                    }
                }
            }
        }
        Ok(())
    }
}

impl KeyStore {
    pub fn insert(&mut self, name: String, issuer: Issuer) {
        if let Some(tenants) = &issuer.tenants {
            self.reserved.extend(tenants.iter().copied());
        }
        self.issuers.insert(name, issuer);
    }

    /// A digest of everything verification reads from the store (every issuer with its audience, tenant claim,
    /// keys, scope and requirements; the revocations and suspensions), in a canonical order: under the same
    /// [`Policy`], stores with the same digest reach the same verdict on every token, whoever loaded them and when.
    /// What a shared [`verdict::Verdict`] is keyed on.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        fn bytes(h: &mut Sha256, b: &[u8]) {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        }
        fn text(h: &mut Sha256, t: Option<&str>) {
            match t {
                None => h.update([0]),
                Some(t) => {
                    h.update([1]);
                    bytes(h, t.as_bytes());
                }
            }
        }
        fn uuids<'a>(h: &mut Sha256, set: impl Iterator<Item = &'a Uuid>) {
            let mut sorted: Vec<&Uuid> = set.collect();
            sorted.sort();
            h.update((sorted.len() as u64).to_be_bytes());
            sorted.iter().for_each(|u| h.update(u.as_bytes()));
        }
        // every field named: a field added later must be considered here (the reserved tenants follow from the
        // issuers' lists)
        let KeyStore { issuers, reserved: _, revocations, placement } = self;
        let mut h = Sha256::new();
        h.update(b"tenant_guard issuers view\0");
        let mut names: Vec<&String> = issuers.keys().collect();
        names.sort();
        h.update((names.len() as u64).to_be_bytes());
        for name in names {
            let Issuer { audience, tenant_claim, keys, tenants, require_cert_binding, require_jti } = &issuers[name];
            bytes(&mut h, name.as_bytes());
            text(&mut h, audience.as_deref());
            text(&mut h, tenant_claim.as_deref());
            h.update((keys.len() as u64).to_be_bytes());
            for Jwk { kid, alg, material: _, fingerprint } in keys {
                // the fingerprint covers the algorithm and the key material
                text(&mut h, kid.as_deref());
                bytes(&mut h, alg.as_str().as_bytes());
                h.update(fingerprint);
            }
            match tenants {
                None => h.update([0]),
                Some(listed) => {
                    h.update([1]);
                    uuids(&mut h, listed.iter());
                }
            }
            h.update([u8::from(*require_cert_binding), u8::from(*require_jti)]);
        }
        let Revocations { tokens, subjects, suspended } = revocations;
        let mut jtis: Vec<&String> = tokens.iter().collect();
        jtis.sort();
        h.update((jtis.len() as u64).to_be_bytes());
        jtis.iter().for_each(|j| bytes(&mut h, j.as_bytes()));
        let mut cuts: Vec<(&(String, String), &i64)> = subjects.iter().collect();
        cuts.sort();
        h.update((cuts.len() as u64).to_be_bytes());
        for ((iss, sub), before) in cuts {
            bytes(&mut h, iss.as_bytes());
            bytes(&mut h, sub.as_bytes());
            h.update(before.to_be_bytes());
        }
        uuids(&mut h, suspended.iter());
        let Placement { bound, elsewhere } = placement;
        match bound {
            None => h.update([0]),
            Some(b) => {
                h.update([1]);
                h.update(b.as_bytes());
            }
        }
        let mut moved: Vec<(&Uuid, &Location)> = elsewhere.iter().collect();
        moved.sort();
        h.update((moved.len() as u64).to_be_bytes());
        for (tenant, Location { database, server }) in moved {
            h.update(tenant.as_bytes());
            bytes(&mut h, database.as_bytes());
            text(&mut h, server.as_deref());
        }
        h.finalize().into()
    }

    /// How many issuers require each token (`jti`) once.
    pub fn issuers_requiring_jti(&self) -> usize {
        self.issuers.values().filter(|i| i.require_jti).count()
    }

    /// Whether `issuer` may speak for `tenant` (see above).
    fn speaks_for(&self, issuer: &Issuer, tenant: &Uuid) -> Result<(), Rejection> {
        match &issuer.tenants {
            Some(listed) if listed.contains(tenant) => Ok(()),
            Some(_) => Err(Rejection::TenantOutOfScope),
            None if self.reserved.contains(tenant) => Err(Rejection::TenantReserved),
            None => Ok(()),
        }
    }
}

/// The settings verification depends on, read from `tenant_guard.*` by the caller.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Leeway in seconds for `exp`, `nbf` and `iat`.
    pub clock_skew: i64,
    /// Longest accepted lifetime in seconds, from `iat` (or `nbf`, or now) to `exp`.
    pub max_lifetime: i64,
    /// Claim that carries the tenant id when the issuer names none.
    pub default_tenant_claim: &'a str,
}

/// A token whose signature and claims have been checked.
#[derive(Debug, Clone)]
pub struct Verified {
    pub tenant: Uuid,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    /// Every claim, decoded when first asked for (see [`Verified::claims`]).
    claims: Claims,
    /// The SHA-256 thumbprint of the client certificate the token is bound to (`cnf.x5t#S256`, RFC 8705).
    pub cert_thumbprint: Option<[u8; 32]>,
    /// The issuer (`iss`) and the `jti`, when the issuer requires each token to be used once.
    pub once: Option<(String, String)>,
}

/// The claims of a verified token: parsed at verification, or, for a token accepted on a shared [`Verdict`], kept as
/// the token's (authentic) claims part and parsed when first asked for.
#[derive(Clone)]
struct Claims {
    parsed: OnceCell<Map<String, Value>>,
    part: Option<Zeroizing<String>>,
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Claims(..)") // never the claims themselves
    }
}

impl Claims {
    fn parsed(map: Map<String, Value>) -> Claims {
        Claims { parsed: OnceCell::from(map), part: None }
    }

    fn get(&self) -> &Map<String, Value> {
        self.parsed.get_or_init(|| {
            let mut buf = Vec::new();
            // the part passed the strict decoding when its token was verified: it decodes the same way again
            self.part.as_deref().and_then(|p| decode_object(p, Part::Claims, &mut buf).ok()).unwrap_or_default()
        })
    }
}

/// What the connection a token is used on presents, for certificate-bound tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// A plain TCP or Unix-socket connection.
    NotTls,
    /// TLS, without a verified client certificate.
    NoCertificate,
    /// TLS with a client certificate the server verified: the SHA-256 of its DER encoding.
    Certificate([u8; 32]),
}

/// Why a certificate-bound token does not fit the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbound {
    NotTls,
    NoCertificate,
    OtherCertificate,
}

/// The part of a token a rejection is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Claims,
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Claims => "claim set",
            Part::Signature => "signature",
        })
    }
}

/// Why a token was rejected. Every variant is one check; the message says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Empty,
    Oversized,
    NotCompact,
    NotCanonical(Part),
    BadJson(Part, JsonError),
    NotAnObject(Part),
    AlgMissing,
    AlgNone,
    Crit,
    ForbiddenHeader(&'static str),
    NestedToken,
    BadKid,
    MissingIssuer,
    UnknownIssuer,
    UnknownKey,
    AlgorithmMismatch(Alg),
    Es256SignatureLength,
    BadSignature,
    MissingExp,
    BadClaimType(&'static str),
    Expired,
    NotYetValid,
    IssuedInFuture,
    LifetimeTooLong,
    MissingAudience,
    WrongAudience,
    MissingTenant(String),
    BadTenant(String),
    TenantOutOfScope,
    TenantReserved,
    TenantSuspended,
    /// The tenant is served by another database (`tenant.placement`).
    Moved(Uuid, Location),
    /// This database is bound to another tenant.
    WrongDatabase,
    Revoked,
    SubjectRevoked,
    /// `cnf` is not an object of members tenant_guard can check (only `x5t#S256`).
    /// A `jti` or `sub` that no revocation could name (too long, or with a NUL).
    Unrevocable(&'static str),
    JtiRequired,
    /// Another transaction used this token already (its issuer requires each token once).
    Replayed,
    /// Issued before the server's table of used tokens was made (a restart emptied it): it cannot be checked.
    IssuedBeforeReplayTable,
    UnsupportedConfirmation,
    BadThumbprint,
    CertBindingRequired,
    WrongConnection(Unbound),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Rejection::*;
        match self {
            Empty => f.write_str("token is empty"),
            Oversized => write!(f, "token is longer than {MAX_TOKEN_BYTES} bytes"),
            NotCompact => f.write_str("token is not a compact JWS (three base64url parts separated by dots)"),
            NotCanonical(p) => write!(f, "token {p} is not canonical base64url without padding"),
            BadJson(p, e) => write!(f, "token {p} {e}"),
            NotAnObject(p) => write!(f, "token {p} is not a JSON object"),
            AlgMissing => f.write_str("token header has no alg"),
            AlgNone => f.write_str("token algorithm \"none\" is never accepted"),
            Crit => f.write_str("token header has a crit parameter; tenant_guard understands no critical extensions"),
            ForbiddenHeader(h) => {
                write!(f, "token header parameter \"{h}\" is not accepted: keys come only from tenant.trust_issuer")
            }
            NestedToken => f.write_str("nested tokens (cty \"JWT\") are not accepted"),
            BadKid => write!(f, "token kid is not a string of at most {MAX_KID_BYTES} bytes"),
            MissingIssuer => f.write_str("token has no iss claim"),
            UnknownIssuer => f.write_str("token issuer is not trusted (see tenant.issuers)"),
            UnknownKey => f.write_str("token kid does not name a key of its issuer (see tenant.issuers)"),
            AlgorithmMismatch(alg) => {
                write!(f, "token algorithm does not match its key, which is bound to {alg}")
            }
            Es256SignatureLength => {
                f.write_str("ES256 signature must be exactly 64 bytes (R||S); DER-encoded signatures are not accepted")
            }
            BadSignature => f.write_str("token signature does not verify"),
            MissingExp => f.write_str("token has no exp claim"),
            BadClaimType(c) => write!(f, "token claim {c} has the wrong type"),
            Expired => f.write_str("token has expired"),
            NotYetValid => f.write_str("token is not valid yet (nbf is in the future)"),
            IssuedInFuture => f.write_str("token was issued in the future (iat)"),
            LifetimeTooLong => f.write_str("token lifetime exceeds tenant_guard.max_token_lifetime"),
            MissingAudience => f.write_str("token has no aud claim, but its issuer requires an audience"),
            WrongAudience => f.write_str("token audience does not match its issuer's audience"),
            MissingTenant(c) => write!(f, "token has no \"{}\" claim naming the tenant", c.escape_default()),
            TenantOutOfScope => f.write_str(
                "token issuer may not speak for this tenant: it is scoped to other tenants (see tenant.issuer_tenant)",
            ),
            TenantReserved => f.write_str(
                "token issuer may not speak for this tenant: the tenant is reserved to the issuers listed for it \
                 (see tenant.issuer_tenant)",
            ),
            TenantSuspended => f.write_str("tenant is suspended (see tenant.revocations)"),
            Moved(tenant, Location { database, server }) => {
                write!(f, "tenant {tenant} moved to database \"{}\"", database.escape_default())?;
                if let Some(server) = server {
                    write!(f, " on server \"{}\"", server.escape_default())?;
                }
                f.write_str(" (see tenant.placement): connect there")
            }
            WrongDatabase => f.write_str("this database is bound to another tenant (see tenant.placement)"),
            Unrevocable(c) => write!(
                f,
                "token claim {c} is longer than {MAX_REVOCABLE_BYTES} bytes or contains a NUL character \
                 (no revocation could name it)"
            ),
            JtiRequired => f.write_str("token has no jti claim, and its issuer requires one, used once"),
            IssuedBeforeReplayTable => f.write_str(
                "token was issued before the server last started (or within tenant_guard.clock_skew after), and its \
                 issuer requires each token (jti) once: whether it was used before cannot be known",
            ),
            Replayed => f.write_str(
                "token has been used already, in another transaction; its issuer requires each token (jti) once",
            ),
            UnsupportedConfirmation => f.write_str(
                "token cnf claim binds it to a key tenant_guard cannot check: only x5t#S256 (a client certificate) \
                 is supported",
            ),
            BadThumbprint => {
                f.write_str("token cnf x5t#S256 is not the base64url SHA-256 thumbprint of a certificate (32 bytes)")
            }
            CertBindingRequired => f.write_str(
                "token is not bound to a client certificate (cnf x5t#S256), and its issuer requires certificate binding",
            ),
            WrongConnection(Unbound::NotTls) => f.write_str(
                "token is bound to a client certificate (cnf x5t#S256), but this connection is not TLS \
                 (a plain TCP or Unix-socket connection)",
            ),
            WrongConnection(Unbound::NoCertificate) => f.write_str(
                "token is bound to a client certificate (cnf x5t#S256), but this TLS connection presented none",
            ),
            WrongConnection(Unbound::OtherCertificate) => f.write_str(
                "token is bound to another client certificate than the one this connection presented",
            ),
            Revoked => f.write_str("token has been revoked: its jti is listed in tenant.revocations"),
            SubjectRevoked => f.write_str(
                "token has been revoked: its subject's tokens issued before a time are listed in tenant.revocations",
            ),
            BadTenant(c) => {
                write!(
                    f,
                    "token claim \"{}\" is not a uuid in canonical form (lowercase, hyphenated)",
                    c.escape_default()
                )
            }
        }
    }
}

/// Verifies `token` against `store` at time `now` (seconds since the epoch).
pub fn verify(token: &str, store: &KeyStore, policy: &Policy, now: i64) -> Result<Verified, Rejection> {
    let verified = verify_signed(token, store, policy)?;
    verified.check_time(now, policy)?;
    Ok(verified)
}

/// Everything but the time checks, which depend on the moment of use and are re-run on every use of a cached result.
pub fn verify_signed(token: &str, store: &KeyStore, policy: &Policy) -> Result<Verified, Rejection> {
    verify_signed_sharing(token, store, policy, &mut |_| false).map(|(verified, _)| verified)
}

/// How the signature of a token was established by [`verify_signed_sharing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// Known good already: this token's signature was checked (elsewhere) with the key of this fingerprint.
    Known([u8; 32]),
    /// Checked now, with the key of this fingerprint.
    Checked([u8; 32]),
}

/// [`verify_signed`], asking `known` first whether this token's signature was already checked with the key its
/// header selects (by that key's fingerprint): then the signature check, the one costly step, is skipped, and every
/// other check (the issuer, the key's presence and algorithm, the claims, the scopes, the revocations) runs as
/// always against `store`. So a removed or replaced key, a revocation or a suspension applies at once whatever
/// `known` remembers. `known` is consulted only for a token whose header and claims decode and whose key exists.
pub fn verify_signed_sharing(
    token: &str,
    store: &KeyStore,
    policy: &Policy,
    known: &mut dyn FnMut(&[u8; 32]) -> bool,
) -> Result<(Verified, Signature), Rejection> {
    if token.is_empty() {
        return Err(Rejection::Empty);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::Oversized);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(c64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Rejection::NotCompact);
    };

    let mut buf = Vec::with_capacity(token.len());
    let header = decode_object(h64, Part::Header, &mut buf)?;
    let alg = match header.get("alg") {
        None => return Err(Rejection::AlgMissing),
        Some(Value::String(a)) if a.eq_ignore_ascii_case("none") => return Err(Rejection::AlgNone),
        Some(Value::String(a)) => a.as_str(),
        Some(_) => return Err(Rejection::BadClaimType("alg")),
    };
    if header.contains_key("crit") {
        return Err(Rejection::Crit);
    }
    if let Some(h) = FORBIDDEN_HEADERS.iter().find(|h| header.contains_key(**h)) {
        return Err(Rejection::ForbiddenHeader(h));
    }
    if header.get("cty").and_then(Value::as_str).is_some_and(|c| c.eq_ignore_ascii_case("JWT")) {
        return Err(Rejection::NestedToken);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if k.len() <= MAX_KID_BYTES => Some(k.as_str()),
        Some(_) => return Err(Rejection::BadKid),
    };

    let claims = decode_object(c64, Part::Claims, &mut buf)?;
    let iss = match claims.get("iss") {
        None => return Err(Rejection::MissingIssuer),
        Some(Value::String(iss)) => iss,
        Some(_) => return Err(Rejection::BadClaimType("iss")),
    };
    let issuer = store.issuers.get(iss).ok_or(Rejection::UnknownIssuer)?;
    let key = issuer.key(kid).ok_or(Rejection::UnknownKey)?;
    if Alg::from_name(alg) != Some(key.alg) {
        return Err(Rejection::AlgorithmMismatch(key.alg));
    }
    let signature = if known(&key.fingerprint) {
        Signature::Known(key.fingerprint)
    } else {
        b64url::decode_into(s64.as_bytes(), &mut buf).map_err(|_| Rejection::NotCanonical(Part::Signature))?;
        let signing_input = &token.as_bytes()[..h64.len() + 1 + c64.len()];
        check_signature(&key.material, signing_input, &buf)?;
        Signature::Checked(key.fingerprint)
    };

    // From here on the claims are authentic.
    let exp = numeric_date(&claims, "exp")?.ok_or(Rejection::MissingExp)?;
    let nbf = numeric_date(&claims, "nbf")?;
    let iat = numeric_date(&claims, "iat")?;
    if let Some(expected) = &issuer.audience {
        let matches = match claims.get("aud") {
            None => return Err(Rejection::MissingAudience),
            Some(Value::String(aud)) => aud == expected,
            Some(Value::Array(list)) if list.iter().all(Value::is_string) => list.iter().any(|a| a == expected),
            Some(_) => return Err(Rejection::BadClaimType("aud")),
        };
        if !matches {
            return Err(Rejection::WrongAudience);
        }
    }
    let subject = match claims.get("sub") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Rejection::BadClaimType("sub")),
    };
    let claim_name = issuer.tenant_claim.as_deref().unwrap_or(policy.default_tenant_claim);
    let tenant = match claims.get(claim_name) {
        None => return Err(Rejection::MissingTenant(claim_name.to_owned())),
        // the nil uuid is nobody's: tenant_guard uses it where no tenant may match (see current_id in the extension)
        Some(Value::String(s)) => {
            parse_uuid(s).filter(|t| !t.is_nil()).ok_or_else(|| Rejection::BadTenant(claim_name.to_owned()))?
        }
        Some(_) => return Err(Rejection::BadTenant(claim_name.to_owned())),
    };
    store.speaks_for(issuer, &tenant)?;
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(j)) => Some(j.as_str()),
        Some(_) => return Err(Rejection::BadClaimType("jti")),
    };
    // what could not be listed for revocation is not accepted either
    for (name, value) in [("jti", jti), ("sub", subject)] {
        if value.is_some_and(|v| v.len() > MAX_REVOCABLE_BYTES || v.contains('\0')) {
            return Err(Rejection::Unrevocable(name));
        }
    }
    store.revocations.check(iss, jti, subject, iat, &tenant, policy.clock_skew)?;
    store.placement.check(&tenant)?;
    let cert_thumbprint = confirmation(&claims, &mut buf)?;
    if issuer.require_cert_binding && cert_thumbprint.is_none() {
        return Err(Rejection::CertBindingRequired);
    }
    let once = match (issuer.require_jti, jti) {
        (false, _) => None,
        (true, None) => return Err(Rejection::JtiRequired),
        (true, Some(jti)) => Some((iss.clone(), jti.to_owned())),
    };
    Ok((Verified { tenant, exp, nbf, iat, claims: Claims::parsed(claims), cert_thumbprint, once }, signature))
}

/// The certificate a token is bound to (RFC 8705 section 3.1): `cnf` must be an object whose only member is
/// `x5t#S256`, the canonical base64url of a SHA-256 digest. Any other confirmation method (a `jwk`, a `jkt`) binds
/// the token to a key whose possession tenant_guard cannot check, so such a token is refused rather than accepted
/// unbound.
fn confirmation(claims: &Map<String, Value>, buf: &mut Vec<u8>) -> Result<Option<[u8; 32]>, Rejection> {
    let Some(cnf) = claims.get("cnf") else { return Ok(None) };
    let Value::Object(cnf) = cnf else { return Err(Rejection::UnsupportedConfirmation) };
    if cnf.len() != 1 {
        return Err(Rejection::UnsupportedConfirmation);
    }
    let Some(Value::String(x5t)) = cnf.get("x5t#S256") else { return Err(Rejection::UnsupportedConfirmation) };
    b64url::decode_into(x5t.as_bytes(), buf).map_err(|_| Rejection::BadThumbprint)?;
    let thumbprint: [u8; 32] = buf.as_slice().try_into().map_err(|_| Rejection::BadThumbprint)?;
    Ok(Some(thumbprint))
}

impl Verified {
    /// All verified claims of the token.
    pub fn claims(&self) -> &Map<String, Value> {
        self.claims.get()
    }

    /// The `sub` claim, a string when present (checked at verification).
    pub fn subject(&self) -> Option<&str> {
        self.claims().get("sub").and_then(Value::as_str)
    }

    /// A certificate-bound token is used only on a connection that presents that certificate.
    pub fn check_binding(&self, presented: Presented) -> Result<(), Rejection> {
        let Some(bound) = &self.cert_thumbprint else { return Ok(()) };
        match presented {
            Presented::Certificate(c) if c == *bound => Ok(()),
            Presented::Certificate(_) => Err(Rejection::WrongConnection(Unbound::OtherCertificate)),
            Presented::NoCertificate => Err(Rejection::WrongConnection(Unbound::NoCertificate)),
            Presented::NotTls => Err(Rejection::WrongConnection(Unbound::NotTls)),
        }
    }

    /// The checks that depend on the moment of use: expiry, not-before, issued-at and the lifetime cap.
    pub fn check_time(&self, now: i64, policy: &Policy) -> Result<(), Rejection> {
        let skew = policy.clock_skew;
        if now >= self.exp.saturating_add(skew) {
            return Err(Rejection::Expired);
        }
        if self.nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
            return Err(Rejection::NotYetValid);
        }
        if self.iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
            return Err(Rejection::IssuedInFuture);
        }
        let start = self.iat.or(self.nbf).unwrap_or(now);
        if self.exp.saturating_sub(start) > policy.max_lifetime {
            return Err(Rejection::LifetimeTooLong);
        }
        Ok(())
    }
}

/// A uuid in its canonical form only: 36 characters, hyphenated, lowercase. Braces, URNs, bare hex and uppercase are
/// refused so that one tenant has exactly one spelling (the claim is also returned as sent by `tenant.claim()`).
fn parse_uuid(s: &str) -> Option<Uuid> {
    let uuid = Uuid::try_parse(s).ok()?;
    let mut canonical = Uuid::encode_buffer();
    (uuid.hyphenated().encode_lower(&mut canonical) == s).then_some(uuid)
}

fn decode_object(part: &str, which: Part, buf: &mut Vec<u8>) -> Result<Map<String, Value>, Rejection> {
    b64url::decode_into(part.as_bytes(), buf).map_err(|_| Rejection::NotCanonical(which))?;
    match json::parse_strict(buf) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Rejection::NotAnObject(which)),
        Err(e) => Err(Rejection::BadJson(which, e)),
    }
}

/// A NumericDate claim (RFC 7519 section 2): a JSON number of seconds. Fractions are truncated toward the past.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Rejection> {
    const LIMIT: f64 = 1e15;
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && f.abs() < LIMIT => Ok(Some(f.floor() as i64)),
                _ => Err(Rejection::BadClaimType(name)),
            }
        }
        Some(_) => Err(Rejection::BadClaimType(name)),
    }
}

fn check_signature(key: &KeyMaterial, input: &[u8], sig: &[u8]) -> Result<(), Rejection> {
    use ring::signature as ring_sig;
    let ok = match key {
        KeyMaterial::Hmac(secret) => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).map_err(|_| Rejection::BadSignature)?;
            mac.update(input);
            // constant-time comparison
            mac.verify_slice(sig).is_ok()
        }
        KeyMaterial::Ed25519(vk) => {
            let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| Rejection::BadSignature)?;
            // strict: refuses non-canonical S and small-order components
            vk.verify_strict(input, &sig).is_ok()
        }
        KeyMaterial::Es256(point) => {
            if sig.len() != 64 {
                return Err(Rejection::Es256SignatureLength);
            }
            // FIXED = exactly R||S; ring refuses r or s outside [1, n-1], so the all-zero "psychic signature"
            // (CVE-2022-21449) and r = s = n both fail.
            ring_sig::UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_FIXED, point).verify(input, sig).is_ok()
        }
        KeyMaterial::Rs256 { n, e } => {
            ring_sig::RsaPublicKeyComponents { n, e }.verify(&ring_sig::RSA_PKCS1_2048_8192_SHA256, input, sig).is_ok()
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Rejection::BadSignature)
    }
}

#[cfg(test)]
mod tests;
