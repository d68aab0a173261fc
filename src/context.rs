//! The tenant context: the only place that holds tenant state.
//!
//! The context is the token itself, carried in the `tenant_guard.token` setting. Setting it, whether by
//! `tenant.authenticate()`, `SET LOCAL`, `set_config()` or a connection option, only stores a string; the tenant is
//! derived by verifying that string when it is used. GUC semantics then give the rest for free: `SET LOCAL` ends at
//! COMMIT/ROLLBACK, ROLLBACK TO SAVEPOINT undoes it, parallel workers receive it, `DISCARD ALL` and `RESET` clear it.
//!
//! Verification is lazy (at first use inside a transaction), because keys live in a table and GUC hooks may not read
//! the catalog. Results are cached per backend, keyed by the SHA-256 of the token, and the time checks (`exp`, `nbf`,
//! `iat`, lifetime) are re-run on every use against the statement's start time, which parallel workers share.
//!
//! A transaction is sealed to the first tenant it uses: resolving a different tenant later in the same transaction
//! raises 28000, whichever way the other token arrived. Re-authenticating as the same tenant is allowed.
//!
//! Where the token came from matters too ([`gucs::token_origin`]): a stored default (role, database, function
//! `SET` clause, configuration file) never yields a tenant, and a session-level or connection-option token yields
//! one only while `tenant_guard.allow_session_scope` is on.

use crate::client_cert;
use crate::errors;
use crate::gucs::{self, TokenOrigin};
use crate::invalidation::{self, Watched};
use crate::issuers;
use crate::token::reason::Reason;
use crate::token::{self, Policy, Rejection, Verified};
use pgrx::prelude::*;
use pgrx::JsonB;
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Most distinct tokens remembered per backend; the cache is emptied when it is full.
const CACHE_CAPACITY: usize = 4096;

type Outcome = Result<Rc<Verified>, Rejection>;

#[derive(Default)]
struct State {
    /// Parsed keys, loaded on first need, with the view they were loaded in (see `shared_verifications`).
    keys: Option<(Rc<token::KeyStore>, View)>,
    /// Invalidation generation the cached keys and results belong to.
    generation: u64,
    /// Tenant claim name and clock leeway the cached results were derived with (a subject's revocation cut allows
    /// for the leeway).
    claim: String,
    clock_skew: i64,
    /// Verification outcomes by SHA-256 of the token. Rejections are cached too.
    cache: HashMap<[u8; 32], Outcome>,
    /// The last token seen and its outcome: the common case is the same token on every statement.
    last: Option<(Zeroizing<Vec<u8>>, Outcome)>,
}

impl State {
    fn clear(&mut self) {
        self.keys = None;
        self.cache.clear();
        self.last = None;
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
    /// The tenant this transaction is sealed to.
    static SEALED: Cell<Option<Uuid>> = const { Cell::new(None) };
    /// (local transaction id, clock) of the transaction's first token check (see `check_time`).
    static CLOCK: Cell<(u32, pg_sys::TimestampTz)> = const { Cell::new((0, 0)) };
    /// (local transaction id, issuer, jti) this backend recorded last (see `use_checks`).
    static CONSUMED: RefCell<Option<(u32, String, String)>> = const { RefCell::new(None) };
    /// The tenant tenant_guard itself acts for while it moves that tenant's rows (see [`with_internal_tenant`]).
    static INTERNAL: Cell<Option<Uuid>> = const { Cell::new(None) };
    /// The executor runs of a sealed transaction: QueryDesc address -> the statement that last ran it (None: started,
    /// not run yet).
    static STARTED: RefCell<HashMap<usize, Option<pg_sys::TimestampTz>>> = RefCell::new(HashMap::new());
}

/// Whether executor runs are tracked: once the transaction holds a context, or a token is set (nothing to check
/// before; a workload without tokens pays nothing).
fn tracking() -> bool {
    (SEALED.get().is_some() || !gucs::token_bytes().is_empty()) && !in_parallel_worker()
}

/// An executor run is about to start (ExecutorStart): remembered, not run yet.
pub fn statement_started(query_desc: usize) {
    if tracking() {
        STARTED.with_borrow_mut(|m| m.insert(query_desc, None));
    }
}

/// An executor run goes on (ExecutorRun, at any depth): a cursor fetched, or a portal executed again, by a later
/// statement than the one that last ran it (a FETCH, a function fetching from a cursor, `cursor_to_xml`, a protocol
/// Execute with a row limit) must still have a valid context, once the transaction holds one: a revocation, a
/// suspension, a removed key or a reset context stops it there, as at every other statement (the rows its InitPlan
/// evaluated the tenant for would otherwise keep coming).
pub fn statement_continued(query_desc: usize) {
    if !tracking() {
        return;
    }
    // SAFETY: a plain read of backend state.
    let now = unsafe { pg_sys::GetCurrentStatementStartTimestamp() };
    let last = STARTED.with_borrow_mut(|m| m.insert(query_desc, Some(now))).flatten();
    if last.is_some_and(|last| last != now) {
        current();
    }
}

/// Registers the transaction callback. Called once from `_PG_init`.
pub fn init() {
    // SAFETY: registering a backend-lifetime callback with a static function and no argument.
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT
            | XACT_EVENT_ABORT
            | XACT_EVENT_PREPARE
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_PARALLEL_ABORT
    ) {
        SEALED.set(None);
        STARTED.with_borrow_mut(HashMap::clear);
    }
}

/// The time tokens are checked against, in seconds since the Unix epoch: the clock when the transaction first
/// checks a token, the same for every later check in that transaction (so a statement sees one answer
/// throughout). A procedure or DO block that COMMITs runs many transactions in one statement, and each checks the
/// clock anew. A parallel worker, which cannot see the leader's memory, checks against the later of the statement's
/// and the transaction's start, which it receives from its leader: never later than the leader's own check, so it
/// refuses nothing the leader accepted unless the token is not yet valid then.
fn check_time() -> i64 {
    const UNIX_TO_PG_EPOCH_SECS: i64 = 946_684_800;
    // SAFETY: plain reads of backend state; MyProc is set in every backend that runs SQL.
    let ts = unsafe {
        if in_parallel_worker() {
            pg_sys::GetCurrentStatementStartTimestamp().max(pg_sys::GetCurrentTransactionStartTimestamp())
        } else {
            let lxid = crate::pg_version::local_transaction_id();
            match CLOCK.get() {
                (cached, ts) if cached == lxid && ts != 0 => ts,
                _ => {
                    let now = pg_sys::GetCurrentTimestamp();
                    CLOCK.set((lxid, now));
                    now
                }
            }
        }
    };
    ts.div_euclid(1_000_000) + UNIX_TO_PG_EPOCH_SECS
}

fn with_policy<R>(f: impl FnOnce(&Policy) -> R) -> R {
    let policy = Policy {
        clock_skew: gucs::clock_skew(),
        max_lifetime: gucs::max_token_lifetime(),
        default_tenant_claim: gucs::tenant_claim(),
    };
    f(&policy)
}

/// Verifies `token` (or finds its cached outcome). Time checks are the caller's.
fn resolve(token: &[u8]) -> Outcome {
    // Checked before anything is copied, hashed or cached, whichever way the token arrived.
    if token.len() > token::MAX_TOKEN_BYTES {
        return Err(Rejection::Oversized);
    }
    // a revocation, suspension or issuer change committed elsewhere counts from this statement on
    invalidation::accept_once_per_statement();
    let generation = invalidation::generation(Watched::Issuers);
    let hit = STATE.with_borrow_mut(|s| {
        if s.generation != generation || s.claim != gucs::tenant_claim() || s.clock_skew != gucs::clock_skew() {
            s.clear();
            s.generation = generation;
            s.claim = gucs::tenant_claim().to_owned();
            s.clock_skew = gucs::clock_skew();
        }
        if let Some((t, outcome)) = &s.last {
            if t.as_slice() == token {
                return Some(outcome.clone());
            }
        }
        None
    });
    if let Some(outcome) = hit {
        return outcome;
    }

    let token = Zeroizing::new(token.to_vec()); // owned: the GUC may change while keys load
    let digest: [u8; 32] = Sha256::digest(&token).into();
    let cached = STATE.with_borrow(|s| s.cache.get(&digest).cloned());
    let outcome = match cached {
        Some(outcome) => outcome,
        None => {
            let keys = keys();
            let outcome = match std::str::from_utf8(&token) {
                Ok(text) => verify_sharing(text, &digest, &keys),
                Err(_) => Err(Rejection::NotCompact),
            };
            STATE.with_borrow_mut(|s| {
                if s.cache.len() >= CACHE_CAPACITY {
                    s.cache.clear();
                }
                s.cache.insert(digest, outcome.clone());
            });
            outcome
        }
    };
    STATE.with_borrow_mut(|s| s.last = Some((token, outcome.clone())));
    outcome
}

/// Verifies a token this backend has no outcome for, taking the verdict another backend reached on it in the same
/// scope, else skipping the signature check when another backend checked it with the same key (see
/// `shared_verifications`); then telling the others what this one concluded.
fn verify_sharing(text: &str, digest: &[u8; 32], (keys, view): &(Rc<token::KeyStore>, View)) -> Outcome {
    use crate::shared_verifications as shared;
    let entry = shared::entry(digest);
    let scope = view.and_then(shared::Scope::current);
    if let (Some(entry), Some(scope)) = (&entry, &scope) {
        if let Some(verdict) = shared::verdict(entry, scope) {
            return Ok(Rc::new(Verified::from_verdict(&verdict, text)));
        }
    }
    let mut known = |signer: &[u8; 32]| entry.as_ref().is_some_and(|e| shared::known(e, signer));
    let outcome = with_policy(|p| token::verify_signed_sharing(text, keys, p, &mut known));
    if let Err(Rejection::UnknownKey) = &outcome {
        crate::discovery::unknown_key_seen();
    }
    let (verified, signature) = outcome?;
    if let Some(entry) = &entry {
        let (signer, checked) = match signature {
            token::Signature::Checked(signer) => (signer, true),
            token::Signature::Known(signer) => (signer, false),
        };
        let verdict = scope.zip(verified.verdict());
        shared::remember(entry, &signer, checked, verified.exp, verdict);
    }
    Ok(Rc::new(verified))
}

/// The digest of a key store's content (`KeyStore::digest`), when verdicts are shared: what a shared verdict must
/// have been reached on too.
type View = Option<[u8; 32]>;

/// The parsed key store, loading it from the issuer table when needed.
fn keys() -> (Rc<token::KeyStore>, View) {
    if let Some(keys) = STATE.with_borrow(|s| s.keys.clone()) {
        return keys;
    }
    let generation = invalidation::watch(Watched::Issuers);
    let store = Rc::new(issuers::load());
    let view = crate::shared_verifications::enabled().then(|| store.digest());
    let loaded = (store, view);
    // An invalidation that arrived while loading makes this copy stale: use it for this call only.
    if invalidation::generation(Watched::Issuers) == generation {
        STATE.with_borrow_mut(|s| s.keys = Some(loaded.clone()));
    }
    loaded
}

/// The checks of a verified token that depend on its use, at each use: the time (`exp`, `nbf`, `iat`, lifetime),
/// the connection (a certificate-bound token), and the transaction (a token its issuer allows once).
fn use_checks(verified: &Verified) -> Result<(), Rejection> {
    let now = check_time();
    with_policy(|p| verified.check_time(now, p))?;
    client_cert::check(verified)?;
    if let Some((issuer, jti)) = &verified.once {
        // the same verified token again in this transaction: recorded already (a per-row policy calls this per row)
        let lxid = crate::pg_version::local_transaction_id();
        let seen = CONSUMED.with_borrow(|c| {
            c.as_ref()
                .is_some_and(|(l, i, j)| *l == lxid && i.as_str() == issuer.as_str() && j.as_str() == jti.as_str())
        });
        if seen {
            return Ok(());
        }
        // on a Citus worker, a remote transaction holding the coordinator's ticket uses the token for the
        // coordinator's transaction, which consumed it there (it may open several connections to one worker)
        if !(crate::citus::installed() && crate::citus::ticket::holds_ticket()) {
            crate::replay::consume(&crate::replay::Use {
                issuer,
                jti,
                exp: verified.exp,
                issued: verified
                    .iat
                    .or(verified.nbf)
                    .unwrap_or_else(|| verified.exp.saturating_sub(gucs::max_token_lifetime())),
                sharing: keys().0.issuers_requiring_jti(),
            })?;
        }
        CONSUMED.with_borrow_mut(|c| *c = Some((lxid, issuer.clone(), jti.clone())));
    }
    Ok(())
}

/// Binds the transaction to `tenant`, or raises 28000 if it is bound to another one.
/// Returns whether it sealed it now.
fn seal(tenant: Uuid) -> bool {
    // Parallel workers cannot change settings, so they see the leader's token; the leader keeps the seal.
    if in_parallel_worker() {
        return false;
    }
    match SEALED.get() {
        Some(sealed) if sealed != tenant => {
            crate::tenant_stats::refused(Some(&tenant), Reason::Sealed);
            errors::sealed()
        }
        Some(_) => false,
        None => {
            SEALED.set(Some(tenant));
            crate::tenant_stats::sealed(&tenant);
            true
        }
    }
}

/// Seals the transaction to the tenant of `verified` (checked from `token`). The first time, the transaction takes
/// its context locks (see [`wait_for_contexts`]), waiting for an administrator who is moving, suspending or binding
/// away that tenant; if a change arrived meanwhile, the token is checked again against it.
fn seal_locked(token: &[u8], verified: Rc<Verified>, refuse: fn(&Rejection) -> !) -> Rc<Verified> {
    if !seal(verified.tenant) {
        return verified;
    }
    let before = invalidation::generation(Watched::Issuers);
    lock_contexts(&verified.tenant);
    // SAFETY: reads the invalidations committed while this transaction waited (as every statement start does).
    unsafe { pg_sys::AcceptInvalidationMessages() };
    if invalidation::generation(Watched::Issuers) == before {
        return verified;
    }
    let again = checked(token, refuse);
    if again.tenant != verified.tenant {
        errors::sealed();
    }
    again
}

/// The advisory-lock subtype of the context locks: no SQL function (pg_advisory_lock takes 1 and 2) can take or
/// hold one.
const CONTEXT_LOCK_SUBTYPE: u16 = 0x7467;
/// How long an administrator waits for transactions in flight when no lock_timeout is set.
const CONTEXT_WAIT_MS: u64 = 60_000;

/// The lock on one tenant's contexts in this database (None: on every tenant's): its tag is 96 bits of a SHA-256
/// of the database and the tenant, so that no tenant id, chosen or not, shares another's lock.
fn context_tag(tenant: Option<&Uuid>) -> pg_sys::LOCKTAG {
    let mut h = Sha256::new();
    h.update(b"tenant_guard context lock\0");
    // SAFETY: plain read of a backend global.
    h.update(unsafe { pg_sys::MyDatabaseId }.to_u32().to_be_bytes());
    match tenant {
        Some(t) => h.update(t.as_bytes()),
        None => h.update(b"every tenant"),
    }
    let d: [u8; 32] = h.finalize().into();
    let word = |i: usize| u32::from_be_bytes(d[i..i + 4].try_into().expect("4 bytes"));
    pg_sys::LOCKTAG {
        locktag_field1: word(0),
        locktag_field2: word(4),
        locktag_field3: word(8),
        locktag_field4: CONTEXT_LOCK_SUBTYPE,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

/// Takes, until the transaction ends, the share locks a transaction sealed to `tenant` holds: on its contexts and on
/// every tenant's.
fn lock_contexts(tenant: &Uuid) {
    for tag in [context_tag(Some(tenant)), context_tag(None)] {
        // SAFETY: a valid lock tag; a transaction-level lock (released at commit or abort), waiting as long as
        // lock_timeout allows (only while an administrator's move or binding of this tenant commits).
        unsafe { pg_sys::LockAcquire(&tag, pg_sys::ShareLock as pg_sys::LOCKMODE, false, false) };
    }
}

/// For an administrator about to move or bind away a tenant (None: every tenant): waits until every transaction that holds that tenant's context in this database has ended, and makes
/// new ones wait until this transaction ends. They then see its change (a placement, a suspension, a binding) and
/// are refused: no transaction that established its context before the change writes after it.
pub fn wait_for_contexts(tenant: Option<&Uuid>) {
    // Never queued: a waiting exclusive request would make every new transaction of the tenant (of every tenant, for
    // a binding) queue behind it while one idle transaction holds its share. So the lock is tried, and tried again
    // every 10 ms, for lock_timeout (else a minute), and taken the moment no transaction holds it.
    let tag = context_tag(tenant);
    // SAFETY: reads a setting PostgreSQL keeps in a global.
    let limit = match unsafe { pg_sys::LockTimeout } {
        ms if ms > 0 => ms as u64,
        _ => CONTEXT_WAIT_MS,
    };
    let started = std::time::Instant::now();
    loop {
        // SAFETY: a valid lock tag; a transaction-level lock, not waited for (dontWait).
        let got = unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, true) };
        if got != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
            return;
        }
        if started.elapsed().as_millis() as u64 >= limit {
            errors::contexts_busy(tenant);
        }
        // SAFETY: sleeping 10 ms, then serving interrupts (a cancel, statement_timeout) as any wait does.
        unsafe {
            pg_sys::pg_usleep(10_000);
            pgrx::check_for_interrupts!();
        }
    }
}

/// Applies the scope rules to where the current token came from: a stored default never counts, and a session
/// or connection-option token counts only while `tenant_guard.allow_session_scope` is on.
fn check_origin() {
    match gucs::token_origin() {
        TokenOrigin::Transaction => {}
        // a parallel worker sees the leader's SET LOCAL as a session value; the leader has applied the rules
        TokenOrigin::Session if in_parallel_worker() => {}
        TokenOrigin::Session | TokenOrigin::ConnectionOption => {
            if !gucs::session_scope_allowed() {
                crate::tenant_stats::refused(None, Reason::Origin);
                errors::session_scope_disabled();
            }
        }
        TokenOrigin::Stored => {
            crate::tenant_stats::refused(None, Reason::Origin);
            errors::no_context_stored_token()
        }
    }
}

fn in_parallel_worker() -> bool {
    // SAFETY: plain read of a backend global.
    unsafe { pg_sys::ParallelWorkerNumber >= 0 }
}

/// Runs `f` with `tenant` as the tenant of `tenant.current_id()`, without a token: for tenant_guard's own statements
/// that move one tenant's rows (`transfer`), run as the table's owner so that row-level security confines them to
/// that tenant. Nothing in SQL can set it; it ends with `f`, however `f` ends. The transaction is not sealed.
pub fn with_internal_tenant<R>(tenant: Uuid, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Uuid>);
    impl Drop for Restore {
        fn drop(&mut self) {
            INTERNAL.set(self.0);
        }
    }
    let _restore = Restore(INTERNAL.replace(Some(tenant)));
    f()
}

/// The verified context of the current statement, or 42501.
pub fn current() -> Rc<Verified> {
    let token = gucs::token_bytes();
    if token.is_empty() {
        errors::no_context(None);
    }
    check_origin();
    let verified = checked(token, |r| errors::no_context(Some(r)));
    seal_locked(token, verified, |r| errors::no_context(Some(r)))
}

/// Verifies `token` and runs its use checks, counting a refusal (under the tenant when the token was proven to be
/// the tenant's, see `tenant_stats`) before `refuse` raises it.
fn checked(token: &[u8], refuse: fn(&Rejection) -> !) -> Rc<Verified> {
    let verified = resolve(token).unwrap_or_else(|r| {
        crate::tenant_stats::refused(None, r.reason());
        refuse(&r)
    });
    if let Err(r) = use_checks(&verified) {
        crate::tenant_stats::refused(Some(&verified.tenant), r.reason());
        refuse(&r)
    }
    verified
}

/// The tenant the current token would yield, without raising anything or sealing the transaction: None where
/// [`current`] would refuse. For the planner, which may plan ahead of use (the statement itself checks again).
pub fn peek_tenant() -> Option<Uuid> {
    if let Some(tenant) = INTERNAL.get() {
        return Some(tenant);
    }
    let token = gucs::token_bytes();
    if token.is_empty() {
        return None;
    }
    match gucs::token_origin() {
        TokenOrigin::Transaction => {}
        TokenOrigin::Session | TokenOrigin::ConnectionOption if gucs::session_scope_allowed() => {}
        _ => return None,
    }
    let verified = resolve(token).ok()?;
    use_checks(&verified).ok()?;
    Some(verified.tenant)
}

/// The token to hand to other nodes of a Citus cluster, checked here first exactly as for a local query (where it
/// came from, its validity, the transaction's seal: errors are raised here); None when no token is set.
pub fn token_for_other_nodes() -> Option<Zeroizing<String>> {
    if gucs::token_bytes().is_empty() {
        return None;
    }
    current();
    Some(Zeroizing::new(String::from_utf8_lossy(gucs::token_bytes()).into_owned()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Transaction,
    Session,
}

impl Scope {
    fn parse(text: &str) -> Scope {
        match text {
            "transaction" => Scope::Transaction,
            "session" => Scope::Session,
            _ => errors::invalid_parameter(
                "scope must be 'transaction' or 'session'".into(),
                Some("Use 'transaction' (the default) behind transaction-mode poolers."),
            ),
        }
    }
}

/// Verifies `token` now (raising 28000 with the failed check), seals the transaction, and stores the token.
pub fn authenticate_token(token: &str, scope: Scope) -> Uuid {
    if scope == Scope::Session && !gucs::session_scope_allowed() {
        crate::tenant_stats::refused(None, Reason::Origin);
        errors::session_scope_disabled();
    }
    let verified = checked(token.as_bytes(), |r| errors::token_rejected(r));
    let verified = seal_locked(token.as_bytes(), verified, |r| errors::token_rejected(r));
    set_token(token, scope);
    // the workers already in this transaction get it now, later ones when Citus opens their transaction
    if crate::citus::installed() {
        crate::citus::context::forward();
    }
    verified.tenant
}

/// Clears the context for the rest of the session (the transaction stays sealed).
pub fn clear() {
    set_token("", Scope::Session);
}

fn set_token(value: &str, scope: Scope) {
    let value = std::ffi::CString::new(value).unwrap_or_else(|_| errors::token_rejected(&Rejection::NotCompact));
    let action = match scope {
        Scope::Transaction => pg_sys::GucAction::GUC_ACTION_LOCAL,
        Scope::Session => pg_sys::GucAction::GUC_ACTION_SET,
    };
    // SAFETY: both strings are NUL-terminated and outlive the call; this is what set_config() does.
    unsafe {
        pg_sys::set_config_option(
            gucs::TOKEN_NAME.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            pg_sys::PGERROR as i32,
            false,
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// SQL API. Thin wrappers; the logic is above.

/// Verifies a token and sets the tenant context for the current transaction. Returns the tenant id.
/// Not STRICT: a NULL token is an error (28000), never a silent NULL.
#[pg_extern(volatile, parallel_unsafe)]
fn authenticate(token: Option<&str>) -> pgrx::Uuid {
    crate::uuids::to_pg(&authenticate_token(token.unwrap_or(""), Scope::Transaction))
}

/// Verifies a token and sets the tenant context for the transaction (`'transaction'`) or the session (`'session'`).
/// (SQL name: `tenant.authenticate`, the two-argument overload.)
#[pg_extern(volatile, parallel_unsafe, name = "authenticate")]
fn authenticate_scoped(token: Option<&str>, scope: Option<&str>) -> pgrx::Uuid {
    let scope = Scope::parse(scope.unwrap_or(""));
    crate::uuids::to_pg(&authenticate_token(token.unwrap_or(""), scope))
}

/// The verified tenant id, or SQLSTATE 42501 "no tenant context".
///
/// Without any token, the nil uuid (which no token yields, so it matches no tenant's rows) in two cases where an
/// error would be wrong: while a query is planned (the planner evaluates STABLE calls only to estimate a condition's
/// selectivity, such as the per-row policy of a Citus table; the execution evaluates the call again and fails there
/// without a context), and while a Citus function converts a protected table (it checks as its caller whether the
/// table is empty, then copies the rows itself).
#[pg_extern(stable, parallel_safe)]
fn current_id() -> pgrx::Uuid {
    if let Some(tenant) = INTERNAL.get() {
        return crate::uuids::to_pg(&tenant);
    }
    if gucs::token_bytes().is_empty() && (crate::citus::pruning::planning() || crate::citus::converting()) {
        return crate::uuids::to_pg(&Uuid::nil());
    }
    crate::uuids::to_pg(&current().tenant)
}

/// All verified claims of the current context.
#[pg_extern(stable, parallel_safe)]
fn claims() -> JsonB {
    JsonB(serde_json::Value::Object(current().claims().clone()))
}

/// One verified claim as text (strings as-is, other JSON values as JSON text); NULL when absent.
#[pg_extern(stable, parallel_safe, strict)]
fn claim(name: &str) -> Option<String> {
    match current().claims().get(name)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The verified `sub` claim; NULL when the token has none.
#[pg_extern(stable, parallel_safe)]
fn subject() -> Option<String> {
    current().subject().map(str::to_owned)
}

/// Clears the tenant context for the session.
#[pg_extern(volatile, parallel_unsafe)]
fn reset() {
    clear()
}
