//! Strict JSON for token headers, claims and key sets.
//!
//! `serde_json` is the parser; this module only adds two rules on top of it, because RFC 8725 asks for them and
//! plain `serde_json::Value` does not enforce them:
//! - an object with the same member name twice is rejected (parsers disagree about which one wins);
//! - nesting deeper than [`MAX_DEPTH`] is rejected.
//!
//! Error messages never contain the input: callers turn them into fixed strings.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Deepest nesting accepted. A JWT header or claim set is flat in practice; JWKS is three levels deep.
pub const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON at all, or trailing bytes after the value.
    Invalid,
    /// The same member name appears twice in one object.
    DuplicateKey,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonError::Invalid => "is not valid JSON",
            JsonError::DuplicateKey => "has a duplicate JSON member name",
            JsonError::TooDeep => "is nested too deeply",
        })
    }
}

const DUPLICATE: &str = "tenant_guard: duplicate member";
const TOO_DEEP: &str = "tenant_guard: nesting too deep";

/// Parses `bytes` as one JSON value under the strict rules.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue { depth: 0 }.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(|_| JsonError::Invalid)?;
    Ok(value)
}

fn classify(e: serde_json::Error) -> JsonError {
    let text = e.to_string();
    if text.starts_with(DUPLICATE) {
        JsonError::DuplicateKey
    } else if text.starts_with(TOO_DEEP) {
        JsonError::TooDeep
    } else {
        JsonError::Invalid
    }
}

struct StrictValue {
    depth: usize,
}

impl StrictValue {
    fn nested<E: de::Error>(&self) -> Result<StrictValue, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(StrictValue { depth: self.depth + 1 })
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.nested()?)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let value = map.next_value_seed(self.nested()?)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_objects() {
        let v = parse_strict(br#"{"a":1,"b":[true,null,"x"],"c":{"d":1.5}}"#).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 3);
        assert_eq!(v["c"]["d"], serde_json::json!(1.5));
    }

    #[test]
    fn rejects_duplicate_keys_at_any_depth() {
        assert_eq!(parse_strict(br#"{"a":1,"a":2}"#), Err(JsonError::DuplicateKey));
        assert_eq!(parse_strict(br#"{"x":{"a":1,"a":1}}"#), Err(JsonError::DuplicateKey));
        assert_eq!(parse_strict(br#"{"x":[{"k":1,"k":1}]}"#), Err(JsonError::DuplicateKey));
        // an escaped spelling of the same name is the same name
        assert_eq!(parse_strict(br#"{"alg":"HS256","\u0061lg":"none"}"#), Err(JsonError::DuplicateKey));
    }

    #[test]
    fn rejects_deep_nesting() {
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_strict(ok.as_bytes()).is_ok());
        let deep = format!("{}1{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse_strict(deep.as_bytes()), Err(JsonError::TooDeep));
    }

    #[test]
    fn rejects_garbage_and_trailing_bytes() {
        assert_eq!(parse_strict(b"{"), Err(JsonError::Invalid));
        assert_eq!(parse_strict(br#"{"a":1} x"#), Err(JsonError::Invalid));
        assert_eq!(parse_strict(b"\xff"), Err(JsonError::Invalid));
    }
}
