//! The client certificate of this connection, for certificate-bound tokens (RFC 8705).
//!
//! PostgreSQL keeps the verified client certificate of a TLS connection in its `Port`, a structure whose layout
//! differs between majors and which pgrx does not describe. tenant_guard reaches the certificate through OpenSSL
//! itself instead, with nothing but exported symbols of the server and its OpenSSL:
//! - in the postmaster, PostgreSQL's `openssl_tls_init_hook` hands tenant_guard each new TLS context, on which it
//!   registers a client-hello callback (PostgreSQL uses none);
//! - in a backend, that callback records the connection's `SSL` object during the handshake;
//! - once the client has authenticated (`ClientAuthentication_hook`), tenant_guard takes the certificate the
//!   handshake verified (`SSL_get0_peer_certificate`, with `SSL_get_verify_result` = OK: PostgreSQL asks for client
//!   certificates only when `ssl_ca_file` is set, and verifies them against it), checks that it is the certificate
//!   PostgreSQL holds for the connection (the same serial number, `be_tls_get_peer_serial`; the connection is TLS by
//!   `be_tls_get_version`), and stores the SHA-256 of its DER encoding in `tenant_guard.client_certificate`,
//!   which parallel workers receive from their leader and nobody else can set (see `gucs`).

use crate::gucs;
use crate::token::Presented;
use pgrx::prelude::*;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_long, c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};

type TlsInitHook = unsafe extern "C-unwind" fn(*mut c_void, bool);
type ClientAuthHook = unsafe extern "C-unwind" fn(*mut pg_sys::Port, c_int);
type ClientHelloCb = unsafe extern "C" fn(*mut c_void, *mut c_int, *mut c_void) -> c_int;

static mut PREV_TLS_INIT: Option<TlsInitHook> = None;
static mut PREV_CLIENT_AUTH: Option<ClientAuthHook> = None;
/// This backend's TLS connection, recorded by the client-hello callback during the handshake.
static CONNECTION_SSL: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

thread_local! {
    /// Set while tenant_guard itself sets `tenant_guard.client_certificate`.
    static SETTING: Cell<bool> = const { Cell::new(false) };
    /// The last value of the setting parsed, and what it means.
    static PARSED: std::cell::RefCell<Option<(String, Presented)>> = const { std::cell::RefCell::new(None) };
}

/// A symbol of the server or of the OpenSSL it is linked with.
fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym on the process's global symbol table; NULL means absent.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// Installs the hooks. Called once from `_PG_init`, in the postmaster (shared_preload_libraries).
pub fn init() {
    let (Some(tls_hook), Some(auth_hook)) = (symbol(c"openssl_tls_init_hook"), symbol(c"ClientAuthentication_hook"))
    else {
        return; // a server built without OpenSSL: no connection is TLS
    };
    // SAFETY: both symbols are PostgreSQL's hook variables (function pointers, possibly NULL), read and replaced
    // once in the postmaster before any connection; the previous hooks are chained.
    unsafe {
        let tls_hook = tls_hook as *mut Option<TlsInitHook>;
        PREV_TLS_INIT = *tls_hook;
        *tls_hook = Some(tls_init);
        let auth_hook = auth_hook as *mut Option<ClientAuthHook>;
        PREV_CLIENT_AUTH = *auth_hook;
        *auth_hook = Some(client_authenticated);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn tls_init(context: *mut c_void, is_server_start: bool) {
    // SAFETY: chaining to the hook installed before ours (PostgreSQL's default sets the passphrase callback).
    unsafe {
        if let Some(prev) = PREV_TLS_INIT {
            prev(context, is_server_start);
        }
    }
    type SetClientHelloCb = unsafe extern "C" fn(*mut c_void, Option<ClientHelloCb>, *mut c_void);
    if let Some(set) = symbol(c"SSL_CTX_set_client_hello_cb") {
        // SAFETY: OpenSSL's SSL_CTX_set_client_hello_cb (1.1.1 and later) on the context PostgreSQL is building.
        unsafe {
            std::mem::transmute::<*mut c_void, SetClientHelloCb>(set)(context, Some(client_hello), std::ptr::null_mut())
        };
    }
}

/// OpenSSL's client-hello callback: records the connection (a backend has one). Touches nothing else.
unsafe extern "C" fn client_hello(ssl: *mut c_void, _alert: *mut c_int, _arg: *mut c_void) -> c_int {
    CONNECTION_SSL.store(ssl, Ordering::Relaxed);
    1 // SSL_CLIENT_HELLO_SUCCESS
}

#[pg_guard]
unsafe extern "C-unwind" fn client_authenticated(port: *mut pg_sys::Port, status: c_int) {
    // SAFETY: chaining to the hook installed before ours.
    unsafe {
        if let Some(prev) = PREV_CLIENT_AUTH {
            prev(port, status);
        }
    }
    if status != pg_sys::STATUS_OK as c_int {
        return;
    }
    // SAFETY: the connection's Port, handed to the hook by PostgreSQL.
    let value = match unsafe { peer_thumbprint(port) } {
        None => return, // not TLS: the setting stays empty
        Some(None) => "tls".to_string(),
        Some(Some(thumbprint)) => format!("tls:{}", crate::token::b64url::encode(&thumbprint)),
    };
    let value = std::ffi::CString::new(value).expect("no NUL");
    SETTING.set(true);
    // SAFETY: both strings are NUL-terminated; an override, so that no later source (a role default, a client
    // option) and no RESET replaces it.
    unsafe {
        pg_sys::set_config_option(
            gucs::CLIENT_CERTIFICATE_NAME.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
            pg_sys::GucAction::GUC_ACTION_SET,
            true,
            pg_sys::PGERROR as i32,
            false,
        );
    }
    SETTING.set(false);
}

/// None: not a TLS connection; Some(None): TLS without a verified client certificate; Some(Some): its thumbprint.
///
/// # Safety
/// `port` is the connection's Port.
unsafe fn peer_thumbprint(port: *mut pg_sys::Port) -> Option<Option<[u8; 32]>> {
    type PortText = unsafe extern "C-unwind" fn(*mut pg_sys::Port) -> *const c_char;
    type PortName = unsafe extern "C-unwind" fn(*mut pg_sys::Port, *mut c_char, usize);
    type GetPeer = unsafe extern "C" fn(*const c_void) -> *mut c_void;
    type VerifyResult = unsafe extern "C" fn(*const c_void) -> c_long;
    type I2d = unsafe extern "C" fn(*mut c_void, *mut *mut u8) -> c_int;
    type Free = unsafe extern "C" fn(*mut c_void);
    if port.is_null() {
        return None;
    }
    // PostgreSQL's own answer: the connection is TLS when its SSL object has a protocol version
    // SAFETY: be_tls_get_version(Port *) reads the port's SSL object (NULL without one).
    let tls = unsafe { std::mem::transmute::<*mut c_void, PortText>(symbol(c"be_tls_get_version")?)(port) };
    if tls.is_null() {
        return None;
    }
    let ssl = CONNECTION_SSL.load(Ordering::Relaxed);
    let (Some(verify_result), Some(i2d)) = (symbol(c"SSL_get_verify_result"), symbol(c"i2d_X509")) else {
        return Some(None);
    };
    if ssl.is_null() {
        return Some(None);
    }
    // SAFETY: OpenSSL's functions with the signatures above, on the SSL object OpenSSL handed the callback in this
    // backend (which has one connection).
    unsafe {
        // OpenSSL 3 has a non-counting getter; 1.1 only the counting one, freed below
        let (peer, owned) = match symbol(c"SSL_get0_peer_certificate") {
            Some(get0) => (std::mem::transmute::<*mut c_void, GetPeer>(get0)(ssl), false),
            None => match symbol(c"SSL_get_peer_certificate") {
                Some(get1) => (std::mem::transmute::<*mut c_void, GetPeer>(get1)(ssl), true),
                None => return Some(None),
            },
        };
        let release = || {
            if owned {
                if let Some(free) = symbol(c"X509_free") {
                    std::mem::transmute::<*mut c_void, Free>(free)(peer);
                }
            }
        };
        // the certificate PostgreSQL itself holds for the connection must be this one: the same serial number
        let mut pg_serial = [0u8; 128];
        match symbol(c"be_tls_get_peer_serial") {
            Some(f) => std::mem::transmute::<*mut c_void, PortName>(f)(
                port,
                pg_serial.as_mut_ptr() as *mut c_char,
                pg_serial.len(),
            ),
            None => {
                release();
                return Some(None);
            }
        }
        let pg_serial = CStr::from_ptr(pg_serial.as_ptr() as *const c_char).to_bytes().to_vec();
        if peer.is_null() || pg_serial.is_empty() || serial(peer).as_deref() != Some(pg_serial.as_slice()) {
            release();
            return Some(None);
        }
        let verified = std::mem::transmute::<*mut c_void, VerifyResult>(verify_result)(ssl) == 0; // X509_V_OK
        let i2d = std::mem::transmute::<*mut c_void, I2d>(i2d);
        let len = i2d(peer, std::ptr::null_mut());
        let mut der = vec![0u8; len.max(0) as usize];
        let mut out = der.as_mut_ptr();
        let written = if len > 0 { i2d(peer, &mut out) } else { -1 };
        release();
        if !verified || written != len || len <= 0 {
            return Some(None);
        }
        Some(Some(Sha256::digest(&der).into()))
    }
}

/// A certificate's serial number in decimal, as PostgreSQL's `be_tls_get_peer_serial` prints it.
///
/// # Safety
/// `cert` is a valid X509 object.
unsafe fn serial(cert: *mut c_void) -> Option<Vec<u8>> {
    type GetSerial = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
    type ToBn = unsafe extern "C" fn(*const c_void, *mut c_void) -> *mut c_void;
    type ToDec = unsafe extern "C" fn(*const c_void) -> *mut c_char;
    type BnFree = unsafe extern "C" fn(*mut c_void);
    type CryptoFree = unsafe extern "C" fn(*mut c_void, *const c_char, c_int);
    let get = symbol(c"X509_get_serialNumber")?;
    let to_bn = symbol(c"ASN1_INTEGER_to_BN")?;
    let to_dec = symbol(c"BN_bn2dec")?;
    let bn_free = symbol(c"BN_free")?;
    let crypto_free = symbol(c"CRYPTO_free")?;
    // SAFETY: OpenSSL's functions with the signatures above; the BIGNUM and the string they allocate are freed here.
    unsafe {
        let asn1 = std::mem::transmute::<*mut c_void, GetSerial>(get)(cert);
        if asn1.is_null() {
            return None;
        }
        let bn = std::mem::transmute::<*mut c_void, ToBn>(to_bn)(asn1, std::ptr::null_mut());
        if bn.is_null() {
            return None;
        }
        let dec = std::mem::transmute::<*mut c_void, ToDec>(to_dec)(bn);
        let out = (!dec.is_null()).then(|| CStr::from_ptr(dec).to_bytes().to_vec());
        if !dec.is_null() {
            std::mem::transmute::<*mut c_void, CryptoFree>(crypto_free)(dec as *mut c_void, c"".as_ptr(), 0);
        }
        std::mem::transmute::<*mut c_void, BnFree>(bn_free)(bn);
        out
    }
}

/// Whether tenant_guard is setting `tenant_guard.client_certificate` (for its check hook).
pub fn setting_it() -> bool {
    SETTING.get()
}

/// What this connection presents (a parallel worker: its leader's connection).
pub fn presented() -> Presented {
    let value = gucs::client_certificate();
    if let Some(p) = PARSED.with_borrow(|c| c.as_ref().filter(|(v, _)| v == value).map(|(_, p)| *p)) {
        return p;
    }
    let presented = match value.strip_prefix("tls") {
        None => Presented::NotTls,
        Some("") => Presented::NoCertificate,
        Some(rest) => match rest
            .strip_prefix(':')
            .and_then(|t| crate::token::b64url::decode(t.as_bytes()).ok())
            .and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok())
        {
            Some(t) => Presented::Certificate(t),
            None => Presented::NoCertificate,
        },
    };
    PARSED.with_borrow_mut(|c| *c = Some((value.to_owned(), presented)));
    presented
}

/// The subject or issuer name of this connection's client certificate, as PostgreSQL's sslinfo shows it.
fn peer_name(function: &CStr) -> Option<String> {
    type GetName = unsafe extern "C-unwind" fn(*mut pg_sys::Port, *mut c_char, usize);
    let f = symbol(function)?;
    // SAFETY: a plain read of a backend global (NULL in background and parallel workers).
    let port = unsafe { pg_sys::MyProcPort };
    if port.is_null() || !matches!(presented(), Presented::Certificate(_)) {
        return None;
    }
    let mut buf = vec![0u8; 1024];
    // SAFETY: PostgreSQL's be_tls_get_peer_*_name(Port *, char *, size_t) writes a NUL-terminated name into buf.
    unsafe {
        std::mem::transmute::<*mut c_void, GetName>(f)(port, buf.as_mut_ptr() as *mut c_char, buf.len());
        Some(CStr::from_ptr(buf.as_ptr() as *const c_char).to_string_lossy().into_owned()).filter(|s| !s.is_empty())
    }
}

/// The client certificate of this connection: its SHA-256 thumbprint (base64url, what a token's `cnf.x5t#S256`
/// names), subject and issuer; NULLs when the connection presents none.
#[pg_extern(stable, parallel_restricted)]
fn client_certificate() -> TableIterator<
    'static,
    (name!(thumbprint, Option<String>), name!(subject, Option<String>), name!(issuer, Option<String>)),
> {
    let thumbprint = match presented() {
        Presented::Certificate(t) => Some(crate::token::b64url::encode(&t)),
        _ => None,
    };
    let row = (thumbprint, peer_name(c"be_tls_get_peer_subject_name"), peer_name(c"be_tls_get_peer_issuer_name"));
    TableIterator::once(row)
}

/// Refuses a certificate-bound token on a connection that does not present its certificate.
///
/// On a Citus worker, the connection is the coordinator's, never the client's: there the coordinator checked the
/// binding on the client's connection before forwarding the token, and a remote transaction that holds the
/// coordinator's ticket for its distributed transaction (made from the master key, see `citus::ticket`) counts as
/// that connection. A client connecting to a worker directly gets no such ticket.
pub fn check(verified: &crate::token::Verified) -> Result<(), crate::token::Rejection> {
    if verified.cert_thumbprint.is_none() {
        return Ok(());
    }
    match verified.check_binding(presented()) {
        Err(_) if crate::citus::installed() && crate::citus::ticket::holds_ticket() => Ok(()),
        outcome => outcome,
    }
}
