//! Why a token or a context was refused, in the few categories per-tenant statistics count (`tenant.stats`):
//! one name per category, stable, documented in docs/reference/sql.md.

use super::Rejection;

/// A category of refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// Not a well-formed token: encoding, JSON, header, claim types, size.
    Malformed,
    UnknownIssuer,
    /// No key of that `kid`, or a key of another algorithm.
    UnknownKey,
    BadSignature,
    Expired,
    /// `nbf` or `iat` in the future.
    NotYetValid,
    /// Longer-lived than `tenant_guard.max_token_lifetime`.
    Lifetime,
    /// Missing or wrong `aud`.
    Audience,
    /// A tenant its issuer may not speak for, or a reserved one.
    TenantNotAllowed,
    Suspended,
    /// The token's `jti` or its subject was revoked.
    Revoked,
    /// Used before by another transaction, or without the `jti` its issuer requires.
    Replay,
    /// Certificate binding: unbound where required, or presented on another connection.
    Certificate,
    /// A token from a place that never counts (a stored default), or a session token while session scope is off.
    Origin,
    /// A second tenant in a transaction sealed to another.
    Sealed,
    /// A tenant this database does not serve (it is bound to another one).
    WrongDatabase,
    /// A tenant that moved to another database.
    Moved,
}

impl Reason {
    /// Every category, in the order of their numbers.
    pub const ALL: [Reason; 17] = [
        Reason::Malformed,
        Reason::UnknownIssuer,
        Reason::UnknownKey,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::Lifetime,
        Reason::Audience,
        Reason::TenantNotAllowed,
        Reason::Suspended,
        Reason::Revoked,
        Reason::Replay,
        Reason::Certificate,
        Reason::Origin,
        Reason::Sealed,
        Reason::WrongDatabase,
        Reason::Moved,
    ];
    pub const COUNT: usize = Reason::ALL.len();

    /// Its name in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::UnknownKey => "unknown_key",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Lifetime => "lifetime",
            Reason::Audience => "audience",
            Reason::TenantNotAllowed => "tenant_not_allowed",
            Reason::Suspended => "suspended",
            Reason::Revoked => "revoked",
            Reason::Replay => "replay",
            Reason::Certificate => "certificate",
            Reason::Origin => "origin",
            Reason::Sealed => "sealed",
            Reason::WrongDatabase => "wrong_database",
            Reason::Moved => "moved",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl Rejection {
    /// The category statistics count this refusal under.
    pub fn reason(&self) -> Reason {
        use Rejection::*;
        match self {
            Empty
            | Oversized
            | NotCompact
            | NotCanonical(_)
            | BadJson(..)
            | NotAnObject(_)
            | AlgMissing
            | AlgNone
            | Crit
            | ForbiddenHeader(_)
            | NestedToken
            | BadKid
            | MissingIssuer
            | MissingExp
            | BadClaimType(_)
            | MissingTenant(_)
            | BadTenant(_)
            | Unrevocable(_)
            | UnsupportedConfirmation
            | BadThumbprint => Reason::Malformed,
            UnknownIssuer => Reason::UnknownIssuer,
            UnknownKey | AlgorithmMismatch(_) => Reason::UnknownKey,
            Es256SignatureLength | BadSignature => Reason::BadSignature,
            Expired => Reason::Expired,
            NotYetValid | IssuedInFuture => Reason::NotYetValid,
            LifetimeTooLong => Reason::Lifetime,
            MissingAudience | WrongAudience => Reason::Audience,
            TenantOutOfScope | TenantReserved => Reason::TenantNotAllowed,
            TenantSuspended => Reason::Suspended,
            Moved(..) => Reason::Moved,
            WrongDatabase => Reason::WrongDatabase,
            Revoked | SubjectRevoked => Reason::Revoked,
            JtiRequired | Replayed | IssuedBeforeReplayTable => Reason::Replay,
            CertBindingRequired | WrongConnection(_) => Reason::Certificate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_list_and_names_are_unique() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Reason::COUNT);
    }

    #[test]
    fn rejections_map_to_their_category() {
        assert_eq!(Rejection::BadSignature.reason(), Reason::BadSignature);
        assert_eq!(Rejection::Es256SignatureLength.reason(), Reason::BadSignature);
        assert_eq!(Rejection::Expired.reason(), Reason::Expired);
        assert_eq!(Rejection::IssuedInFuture.reason(), Reason::NotYetValid);
        assert_eq!(Rejection::TenantSuspended.reason(), Reason::Suspended);
        assert_eq!(Rejection::SubjectRevoked.reason(), Reason::Revoked);
        assert_eq!(Rejection::Replayed.reason(), Reason::Replay);
        assert_eq!(Rejection::CertBindingRequired.reason(), Reason::Certificate);
        assert_eq!(Rejection::AlgNone.reason(), Reason::Malformed);
        assert_eq!(Rejection::UnknownIssuer.reason(), Reason::UnknownIssuer);
        assert_eq!(Rejection::WrongAudience.reason(), Reason::Audience);
        assert_eq!(Rejection::TenantOutOfScope.reason(), Reason::TenantNotAllowed);
    }
}
