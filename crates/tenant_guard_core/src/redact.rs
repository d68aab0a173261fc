//! Finding compact JWS tokens in text, to redact them: what counts as a token is three base64url runs joined by two
//! dots whose first run decodes to a JSON object's opening `{` (a JOSE header always does), starting where a run
//! starts or at `eyJ` (`{"`) inside one. Dotted names like `schema.table.column` never decode to `{`, so they are
//! left alone. Linear in the text, with no memory beyond the result.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// What a token is replaced with.
pub const REDACTED: &str = "[token redacted by tenant_guard]";

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Whether a base64url run is the start of a JSON object (`{` after optional whitespace), as a JOSE header is.
fn looks_like_header(run: &[u8]) -> bool {
    // enough characters for a few bytes of leading whitespace and the brace, decoded without the rest
    let prefix = &run[..run.len().min(16) / 4 * 4];
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(prefix) else { return false };
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// What a text too large to copy is replaced with (tenant_guard fails closed rather than leave a token in place).
pub const UNCOPYABLE: &str = "[statement too large for tenant_guard to redact]";

/// Where the base64url run that starts at `from` ends.
fn run_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..].iter().position(|b| !is_b64url(*b)).map_or(bytes.len(), |n| from + n)
}

/// Where a compact JWS whose header is a suffix of the run `bytes[run..header_end]` ends, and where its header
/// starts: the run is followed by `.`, a non-empty run and `.`, then the signature run (possibly empty); the header
/// starts at the run's start or at an `eyJ` (`{"`) inside it, and decodes to a JSON object's `{`.
fn token_at(bytes: &[u8], run: usize, header_end: usize) -> Option<(usize, usize)> {
    if header_end >= bytes.len() || bytes[header_end] != b'.' {
        return None;
    }
    let claims_end = run_end(bytes, header_end + 1);
    if claims_end == header_end + 1 || claims_end >= bytes.len() || bytes[claims_end] != b'.' {
        return None;
    }
    let header = std::iter::once(run)
        .chain((run + 1..header_end.saturating_sub(2)).filter(|&i| bytes[i..].starts_with(b"eyJ")))
        .find(|&h| looks_like_header(&bytes[h..header_end]))?;
    Some((header, run_end(bytes, claims_end + 1)))
}

/// `text` with every compact JWS replaced by [`REDACTED`], or `None` when it holds none.
///
/// Linear in the text and with no memory beyond the result: each base64url run is scanned a bounded number of
/// times (as a header, as claims, as a signature), and every candidate header is checked by decoding at most 16
/// characters. The result is allocated fallibly: a text too large to copy becomes [`UNCOPYABLE`].
pub fn redact(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.iter().filter(|b| **b == b'.').count() < 2 {
        return None; // the common case: a log line without two dots is returned untouched at once
    }
    let mut out: Option<String> = None;
    let mut copied = 0; // bytes of `text` already in `out`
    let mut i = 0;
    while i < bytes.len() {
        if !is_b64url(bytes[i]) {
            i += 1;
            continue;
        }
        let end = run_end(bytes, i);
        match token_at(bytes, i, end) {
            Some((header, token_end)) => {
                if out.is_none() {
                    let mut o = String::new();
                    if o.try_reserve(text.len()).is_err() {
                        return Some(UNCOPYABLE.into());
                    }
                    out = Some(o);
                }
                let o = out.as_mut().expect("allocated above");
                o.push_str(&text[copied..header]);
                o.push_str(REDACTED);
                copied = token_end;
                i = token_end;
            }
            None => i = end,
        }
    }
    out.map(|mut o| {
        o.push_str(&text[copied..]);
        o
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HS: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsifQ.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2ln";

    #[test]
    fn redacts_every_token_and_keeps_the_rest() {
        let line = format!("statement: SELECT tenant.authenticate('{HS}'); SET LOCAL tenant_guard.token = '{HS}'");
        assert_eq!(
            redact(&line).unwrap(),
            format!("statement: SELECT tenant.authenticate('{REDACTED}'); SET LOCAL tenant_guard.token = '{REDACTED}'")
        );
    }

    #[test]
    fn redacts_parameters_and_stripped_signatures() {
        let unsigned = HS.rsplit_once('.').unwrap().0.to_owned() + ".";
        assert_eq!(redact(&format!("parameters: $1 = '{HS}'")).unwrap(), format!("parameters: $1 = '{REDACTED}'"));
        assert_eq!(redact(&format!("x {unsigned} y")).unwrap(), format!("x {REDACTED} y"));
        assert_eq!(redact(HS).unwrap(), REDACTED);
    }

    #[test]
    fn stays_linear_on_hostile_input() {
        let hostile = format!("{}.{}", "eyJ".repeat(400_000), "A".repeat(1_000_000));
        // 400,000 candidate headers sharing one 2 MB run: a scan that re-read the run per candidate would not finish
        assert_eq!(redact(&hostile), None);
    }

    #[test]
    fn a_header_with_leading_whitespace_is_a_header_too() {
        let header = URL_SAFE_NO_PAD.encode(b"\n {\"alg\":\"EdDSA\"}");
        assert_eq!(redact(&format!("'{header}.e30.AAAA'")).unwrap(), format!("'{REDACTED}'"));
    }

    #[test]
    fn leaves_dotted_names_numbers_and_plain_text_alone() {
        for text in [
            "SELECT app.orders.tenant_id FROM app.orders",
            "analytics_schema.customer_accounts.billing_address_line",
            "version 15.14.2 of 1.2.3",
            "no dots here",
            "...",
            "a..b",
            "eyJ.eyJ", // two parts only
            "",
        ] {
            assert_eq!(redact(text), None, "{text}");
        }
    }

    #[test]
    fn a_token_glued_to_other_text_is_still_found() {
        assert_eq!(redact(&format!("Bearer{HS}")).unwrap(), format!("Bearer{REDACTED}"));
        assert_eq!(redact(&format!("é{HS}é")).unwrap(), format!("é{REDACTED}é"));
    }
}
