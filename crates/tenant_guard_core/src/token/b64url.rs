//! base64url without padding (RFC 7515 section 2), canonical only.
//!
//! The `base64` crate does the decoding. Its URL-safe, no-padding engine already refuses padding, whitespace and
//! the standard alphabet's `+` and `/`, and refuses non-zero trailing bits, so every byte string has exactly one
//! accepted encoding. The tests below pin that behaviour, because a token must not have two spellings.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotCanonical;

/// Decodes canonical unpadded base64url. The result is zeroized on drop, since it may be key material.
pub fn decode(text: &[u8]) -> Result<Zeroizing<Vec<u8>>, NotCanonical> {
    URL_SAFE_NO_PAD.decode(text).map(Zeroizing::new).map_err(|_| NotCanonical)
}

/// Decodes into a caller-provided buffer, for the hot path (no zeroizing: used for token parts only).
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), NotCanonical> {
    out.clear();
    URL_SAFE_NO_PAD.decode_vec(text, out).map_err(|_| NotCanonical)
}

pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for len in 0..70 {
            let data: Vec<u8> = (0..len as u8).collect();
            assert_eq!(*decode(encode(&data).as_bytes()).unwrap(), data);
        }
    }

    #[test]
    fn refuses_non_canonical_spellings() {
        assert_eq!(encode(&[0xff]), "_w");
        assert!(decode(b"_w").is_ok());
        assert_eq!(decode(b"_x"), Err(NotCanonical), "non-zero trailing bits");
        assert_eq!(decode(b"_w=="), Err(NotCanonical), "padding");
        assert_eq!(decode(b"/w"), Err(NotCanonical), "standard alphabet");
        assert_eq!(decode(b"+w"), Err(NotCanonical), "standard alphabet");
        assert_eq!(decode(b"_ w"), Err(NotCanonical), "whitespace");
        assert_eq!(decode(b"_w\n"), Err(NotCanonical), "newline");
        assert_eq!(decode(b"a"), Err(NotCanonical), "impossible length");
    }
}
