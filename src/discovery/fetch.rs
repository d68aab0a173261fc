//! Fetching an issuer's key set over HTTPS: its OpenID configuration, then its `jwks_uri`. Plain Rust, no
//! PostgreSQL: the worker calls it outside any transaction.
//!
//! Only https, with certificates checked against the configured CA file or the system's store; no redirect is
//! followed, no proxy from the environment is used, bodies stop at [`MAX_BODY_BYTES`], and the whole fetch at the
//! timeout. Error messages say what went wrong and where, never what a body held.

use crate::token::jwk;
use serde_json::Value;
use std::time::{Duration, Instant};
use tenant_guard_core::discovery::{self, MAX_BODY_BYTES};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// A key set fetched and validated.
pub struct Fetched {
    pub jwks_uri: String,
    /// The key set to store (normalized as `tenant.trust_issuer` stores one).
    pub jwks: Value,
    pub keys: usize,
    /// The lifetime the provider gave the key set, in seconds, if any.
    pub max_age: Option<i64>,
}

/// Where to fetch from and how.
pub struct Request<'a> {
    pub issuer: &'a str,
    pub configuration_url: &'a str,
    pub allowed_hosts: &'a [String],
    pub ca_file: Option<&'a str>,
    pub timeout: Duration,
}

fn roots(ca_file: Option<&str>) -> Result<RootCerts, String> {
    let certs: Vec<Certificate<'static>> = match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                format!("cannot read tenant_guard.discovery_ca_file \"{}\": {e}", path.escape_default())
            })?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(format!(
                    "tenant_guard.discovery_ca_file \"{}\" holds no PEM certificate",
                    path.escape_default()
                ));
            }
            certs
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err("the system has no CA certificates; set tenant_guard.discovery_ca_file".into());
            }
            found.certs.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect()
        }
    };
    Ok(RootCerts::new_with_certs(&certs))
}

fn agent(request: &Request) -> Result<ureq::Agent, String> {
    let tls = TlsConfig::builder().provider(TlsProvider::Rustls).root_certs(roots(request.ca_file)?).build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .https_only(true)
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(request.timeout))
        .user_agent(concat!("tenant_guard/", env!("CARGO_PKG_VERSION")))
        .build()
        .into())
}

/// GETs `url` within what is left of the fetch's time; returns its body and Cache-Control header.
fn get(agent: &ureq::Agent, url: &str, what: &str, deadline: Instant) -> Result<(Vec<u8>, Option<String>), String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(format!("fetching the {what} ({url}) timed out"));
    }
    let request = agent.get(url).header("Accept", "application/json").config().timeout_global(Some(left)).build();
    let mut response = request.call().map_err(|e| match e {
        ureq::Error::Timeout(_) => format!("fetching the {what} ({url}) timed out"),
        other => format!("fetching the {what} ({url}) failed: {other}"),
    })?;
    let status = response.status().as_u16();
    if (300..400).contains(&status) {
        return Err(format!(
            "the {what} ({url}) answered with a redirect (HTTP status {status}); tenant_guard follows no redirects"
        ));
    }
    if status != 200 {
        return Err(format!("the {what} ({url}) answered with HTTP status {status}"));
    }
    let cache_control = response.headers().get("cache-control").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.body_mut().with_config().limit(MAX_BODY_BYTES).read_to_vec().map_err(|e| match e {
        ureq::Error::BodyExceedsLimit(_) => {
            format!("the {what} ({url}) is larger than {MAX_BODY_BYTES} bytes")
        }
        ureq::Error::Timeout(_) => format!("fetching the {what} ({url}) timed out"),
        other => format!("reading the {what} ({url}) failed: {other}"),
    })?;
    Ok((body, cache_control))
}

/// Fetches and validates the issuer's key set.
pub fn fetch(request: &Request) -> Result<Fetched, String> {
    // one deadline for the whole fetch, both requests together
    let deadline = Instant::now() + request.timeout;
    let agent = agent(request)?;
    let (config, _) = get(&agent, request.configuration_url, "OpenID configuration", deadline)?;
    let jwks_uri = discovery::jwks_uri(&config, request.issuer, request.allowed_hosts).map_err(|e| e.to_string())?;
    let (body, cache_control) = get(&agent, &jwks_uri, "key set", deadline)?;
    let text = std::str::from_utf8(&body).map_err(|_| format!("the key set ({jwks_uri}) is not UTF-8"))?;
    let set = jwk::parse_jwks(&usable_keys(text)?).map_err(|e| format!("the key set ({jwks_uri}): {e}"))?;
    if set.keys.iter().any(|k| k.alg == jwk::Alg::HS256) {
        return Err(format!(
            "the key set ({jwks_uri}) publishes a secret (oct) key; register shared secrets with tenant.trust_issuer"
        ));
    }
    if holds_nul(&set.normalized) {
        return Err(format!(
            "the key set ({jwks_uri}) contains a NUL character (\\u0000), which PostgreSQL cannot store"
        ));
    }
    Ok(Fetched {
        jwks_uri,
        keys: set.keys.len(),
        jwks: set.normalized,
        max_age: discovery::max_age(cache_control.as_deref()),
    })
}

/// Whether any member name or string of `value` holds a NUL character (jsonb cannot store one).
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(members) => members.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// The key set without the keys that are not for signatures (`"use": "enc"`, as identity providers publish beside
/// their signing keys); anything else is left for the key-set rules to judge.
fn usable_keys(text: &str) -> Result<String, String> {
    let mut doc = crate::token::json::parse_strict(text.as_bytes()).map_err(|e| format!("the key set {e}"))?;
    if let Some(Value::Array(keys)) = doc.get_mut("keys") {
        keys.retain(|k| k.get("use").and_then(Value::as_str) != Some("enc"));
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_keys_are_left_out_and_the_rest_is_judged_by_the_key_set_rules() {
        let doc = r#"{"keys": [{"kty": "RSA", "use": "enc", "kid": "e"}, {"kty": "OKP", "use": "sig", "kid": "s"},
                                {"kty": "EC", "kid": "n"}]}"#;
        let kept: Value = serde_json::from_str(&usable_keys(doc).unwrap()).unwrap();
        let kids: Vec<&str> = kept["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, ["s", "n"]);
        // not a key set at all: passed on as it is, for parse_jwks to refuse
        assert_eq!(usable_keys(r#"{"a": 1}"#).unwrap(), r#"{"a":1}"#);
        assert!(usable_keys("<html>").unwrap_err().contains("is not valid JSON"));
        assert!(usable_keys(r#"{"keys": [], "keys": []}"#).unwrap_err().contains("duplicate"));
    }

    #[test]
    fn a_nul_anywhere_in_a_key_set_is_found() {
        assert!(!holds_nul(&serde_json::json!({"keys": [{"kid": "a", "x5c": ["b"]}]})));
        assert!(holds_nul(&serde_json::json!({"keys": [{"kid": "a", "x5u": "a\u{0}b"}]})));
        assert!(holds_nul(&serde_json::json!({"keys": [{"kid": "a", "x\u{0}": 1}]})));
        assert!(holds_nul(&serde_json::json!({"keys": [{"kid": "a", "x5c": ["ok", "\u{0}"]}]})));
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_is_an_error_that_names_it() {
        let missing = roots(Some("/nonexistent/tg-ca.pem")).unwrap_err();
        assert!(missing.contains("cannot read tenant_guard.discovery_ca_file \"/nonexistent/tg-ca.pem\""), "{missing}");
        let path = std::env::temp_dir().join(format!("tg-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let empty = roots(Some(path.to_str().unwrap())).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(empty.contains("holds no PEM certificate"), "{empty}");
    }
}
