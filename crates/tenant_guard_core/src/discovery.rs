//! The decisions of key-set discovery (OpenID Connect Discovery 1.0, RFC 8414's rules for the `issuer` value): which
//! URL to read an issuer's configuration from, which `jwks_uri` to accept from it, and how long a fetched key set
//! is kept. No network here: the extension's worker fetches, this decides.

use crate::token::json;
use http::Uri;
use serde_json::Value;
use std::fmt;

/// Largest configuration document or key set read, in bytes.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Where an issuer publishes its configuration, under the issuer URL.
pub const WELL_KNOWN: &str = "/.well-known/openid-configuration";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    /// The issuer (or a URL) is not an absolute https URL without credentials, query or fragment.
    NotHttps(&'static str),
    /// The configuration document is not a JSON object.
    Configuration(String),
    /// The configuration names another issuer than the one asked.
    WrongIssuer,
    /// `jwks_uri` is missing or not a string.
    NoJwksUri,
    /// `jwks_uri` is on a host the administrator did not allow.
    ForeignHost(String),
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::NotHttps(what) => write!(
                f,
                "{what} must be an absolute https:// URL with a host and without user name, password, query or \
                 fragment"
            ),
            DiscoveryError::Configuration(e) => write!(f, "the OpenID configuration is not a JSON object: {e}"),
            DiscoveryError::WrongIssuer => f.write_str(
                "the OpenID configuration names another issuer than the one registered (its \"issuer\" must be \
                 exactly the issuer URL)",
            ),
            DiscoveryError::NoJwksUri => f.write_str("the OpenID configuration has no jwks_uri string"),
            DiscoveryError::ForeignHost(host) => write!(
                f,
                "jwks_uri is on host \"{}\", not the issuer's host; allow it with allowed_hosts if it is right",
                host.escape_default()
            ),
        }
    }
}

/// An https URL's authority as host:port (the port explicit, 443 by default), lowercased.
fn authority(uri: &Uri) -> String {
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    format!("{host}:{}", uri.port_u16().unwrap_or(443))
}

/// Parses `text` as an https URL tenant_guard may fetch from: absolute, a host, no user information, query or
/// fragment, nothing but printable ASCII.
pub fn https_url(text: &str, what: &'static str) -> Result<Uri, DiscoveryError> {
    let bad = || DiscoveryError::NotHttps(what);
    if text.is_empty() || text.len() > 2048 || !text.bytes().all(|b| b.is_ascii_graphic()) || text.contains('#') {
        return Err(bad());
    }
    let uri: Uri = text.parse().map_err(|_| bad())?;
    let authority = uri.authority().ok_or_else(bad)?;
    if uri.scheme_str() != Some("https")
        || authority.as_str().contains('@')
        || uri.host().is_none_or(str::is_empty)
        || uri.query().is_some()
    {
        return Err(bad());
    }
    // after the host, nothing or a numeric port
    let host = uri.host().unwrap_or_default();
    let rest = authority.as_str().strip_prefix(host).ok_or_else(bad)?;
    if !rest.is_empty() && rest.strip_prefix(':').is_none_or(|p| p.parse::<u16>().is_err()) {
        return Err(bad());
    }
    Ok(uri)
}

/// The URL of `issuer`'s OpenID configuration: the issuer URL without a trailing slash, then the well-known path.
pub fn configuration_url(issuer: &str) -> Result<String, DiscoveryError> {
    https_url(issuer, "the issuer")?;
    Ok(format!("{}{WELL_KNOWN}", issuer.trim_end_matches('/')))
}

/// Checks an entry of `allowed_hosts`: a host name or address, with an optional port (`host` or `host:port`).
pub fn allowed_host(entry: &str) -> Result<String, DiscoveryError> {
    let uri = https_url(&format!("https://{entry}/"), "each allowed host (host or host:port)")?;
    if uri.authority().is_none_or(|a| a.as_str() != entry) {
        return Err(DiscoveryError::NotHttps("each allowed host (host or host:port)"));
    }
    Ok(authority(&uri))
}

/// The `jwks_uri` of a configuration document fetched for `issuer`: the document must name exactly that issuer,
/// and the key set must be on the issuer's host and port, or on one of `allowed` (entries checked by
/// [`allowed_host`]).
pub fn jwks_uri(document: &[u8], issuer: &str, allowed: &[String]) -> Result<String, DiscoveryError> {
    let value = json::parse_strict(document).map_err(|e| DiscoveryError::Configuration(e.to_string()))?;
    let Value::Object(config) = value else {
        return Err(DiscoveryError::Configuration("not an object".into()));
    };
    if config.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(DiscoveryError::WrongIssuer);
    }
    let Some(Value::String(uri_text)) = config.get("jwks_uri") else { return Err(DiscoveryError::NoJwksUri) };
    check_host(uri_text, issuer, allowed)?;
    Ok(uri_text.clone())
}

/// Checks that `jwks_uri` is an https URL on `issuer`'s host and port, or on one of `allowed` (entries checked by
/// [`allowed_host`]).
pub fn check_host(jwks_uri: &str, issuer: &str, allowed: &[String]) -> Result<(), DiscoveryError> {
    let uri = https_url(jwks_uri, "jwks_uri")?;
    let issuer_uri = https_url(issuer, "the issuer")?;
    let host = authority(&uri);
    let mut allowed_hosts = allowed.iter().map(|a| {
        // an entry without a port allows the default one
        if a.contains(':') && !a.ends_with(']') {
            a.to_ascii_lowercase()
        } else {
            format!("{}:443", a.to_ascii_lowercase())
        }
    });
    if host != authority(&issuer_uri) && !allowed_hosts.any(|a| a == host) {
        return Err(DiscoveryError::ForeignHost(host));
    }
    Ok(())
}

/// The lifetime a response's Cache-Control grants, in seconds: `max-age`, or 0 for `no-store` / `no-cache`; None
/// when it states none.
pub fn max_age(cache_control: Option<&str>) -> Option<i64> {
    let mut age = None;
    for directive in cache_control?.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-store" || directive == "no-cache" {
            return Some(0);
        }
        if let Some(value) = directive.strip_prefix("max-age=") {
            age = value.trim_matches('"').parse::<u64>().ok().map(|v| v.min(i64::MAX as u64) as i64);
        }
    }
    age
}

/// Seconds until the next fetch after a successful one: the provider's lifetime within the administrator's
/// bounds, the maximum when it states none.
pub fn refresh_after(max_age: Option<i64>, (min, max): (i64, i64)) -> i64 {
    max_age.unwrap_or(max).clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://idp.example.com";

    #[test]
    fn the_configuration_is_read_under_the_issuer_url() {
        assert_eq!(configuration_url(ISS).unwrap(), "https://idp.example.com/.well-known/openid-configuration");
        assert_eq!(
            configuration_url("https://idp.example.com/realms/acme/").unwrap(),
            "https://idp.example.com/realms/acme/.well-known/openid-configuration"
        );
        assert_eq!(
            configuration_url("https://127.0.0.1:8443").unwrap(),
            "https://127.0.0.1:8443/.well-known/openid-configuration"
        );
    }

    #[test]
    fn only_plain_https_urls_are_issuers() {
        for bad in [
            "http://idp.example.com",
            "ftp://idp.example.com",
            "idp.example.com",
            "https://",
            "https:///path",
            "https://user:pw@idp.example.com",
            "https://user@idp.example.com",
            "https://idp.example.com/?tenant=1",
            "https://idp.example.com/#frag",
            "https://idp.example.com/a b",
            "https://idp.example.com/\u{e9}",
            "",
            "file:///etc/passwd",
        ] {
            assert!(matches!(configuration_url(bad), Err(DiscoveryError::NotHttps(_))), "{bad}");
        }
        assert!(DiscoveryError::NotHttps("the issuer").to_string().contains("https://"));
    }

    fn config(issuer: &str, jwks: &str) -> Vec<u8> {
        serde_json::json!({"issuer": issuer, "jwks_uri": jwks, "id_token_signing_alg_values_supported": ["EdDSA"]})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn the_jwks_uri_must_be_https_on_the_issuers_host_unless_allowed() {
        let ok = "https://idp.example.com/keys";
        assert_eq!(jwks_uri(&config(ISS, ok), ISS, &[]).unwrap(), ok);
        // the same host with the default port spelled out is the same place
        assert!(jwks_uri(&config(ISS, "https://IDP.example.com:443/keys"), ISS, &[]).is_ok());
        assert_eq!(
            jwks_uri(&config(ISS, "http://idp.example.com/keys"), ISS, &[]).unwrap_err(),
            DiscoveryError::NotHttps("jwks_uri")
        );
        let foreign = config(ISS, "https://keys.example.net/jwks");
        assert_eq!(
            jwks_uri(&foreign, ISS, &[]).unwrap_err(),
            DiscoveryError::ForeignHost("keys.example.net:443".into())
        );
        assert!(jwks_uri(&foreign, ISS, &["keys.example.net".into()]).is_ok());
        // another port of the same host is another place
        let other_port = config(ISS, "https://idp.example.com:8443/jwks");
        assert!(matches!(jwks_uri(&other_port, ISS, &[]), Err(DiscoveryError::ForeignHost(_))));
        assert!(jwks_uri(&other_port, ISS, &["idp.example.com:8443".into()]).is_ok());
        assert!(jwks_uri(&other_port, ISS, &["idp.example.com".into()]).is_err());
    }

    #[test]
    fn the_configuration_must_name_exactly_the_issuer() {
        for other in ["https://idp.example.com/", "https://evil.example.com", "https://IDP.example.com"] {
            assert_eq!(
                jwks_uri(&config(other, "https://idp.example.com/keys"), ISS, &[]).unwrap_err(),
                DiscoveryError::WrongIssuer
            );
        }
        assert_eq!(
            jwks_uri(br#"{"issuer": "https://idp.example.com"}"#, ISS, &[]).unwrap_err(),
            DiscoveryError::NoJwksUri
        );
        for garbage in [&b"<html>"[..], b"[]", b"", b"{\"issuer\": 1} trailing", b"{\"a\":1,\"a\":2}"] {
            assert!(matches!(jwks_uri(garbage, ISS, &[]), Err(DiscoveryError::Configuration(_))));
        }
    }

    #[test]
    fn allowed_hosts_are_host_or_host_and_port() {
        assert_eq!(allowed_host("keys.example.net").unwrap(), "keys.example.net:443");
        assert_eq!(allowed_host("127.0.0.1:8443").unwrap(), "127.0.0.1:8443");
        for bad in ["", "https://x", "x/y", "x?y", "u@x", "x y", "x:y"] {
            assert!(allowed_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_lifetimes_are_kept_within_bounds() {
        assert_eq!(max_age(Some("public, max-age=600")), Some(600));
        assert_eq!(max_age(Some("max-age=\"60\"")), Some(60));
        assert_eq!(max_age(Some("no-store")), Some(0));
        assert_eq!(max_age(Some("public")), None);
        assert_eq!(max_age(None), None);
        assert_eq!(max_age(Some("max-age=99999999999999999999999")), None);
        let bounds = (300, 86400);
        assert_eq!(refresh_after(Some(600), bounds), 600);
        assert_eq!(refresh_after(Some(0), bounds), 300);
        assert_eq!(refresh_after(Some(10_000_000), bounds), 86400);
        assert_eq!(refresh_after(None, bounds), 86400);
        assert_eq!(refresh_after(None, (50, 10)), 50);
    }
}
