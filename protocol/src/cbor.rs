//! Deterministic CBOR (RFC 8949 §4.2.1) on top of `ciborium`.
//!
//! Encoding rules, applied by [`to_vec`] and [`encode_value`]:
//!
//! - every map's entries are sorted by the bytewise lexicographic order of their encoded keys,
//!   recursively (inside arrays, tags and map values too);
//! - a map may not contain two keys with the same encoding ([`EncodeError::DuplicateKey`]);
//! - all lengths are definite and all integers, lengths and tags use the shortest form
//!   (`ciborium` always writes them that way);
//! - floating-point values are **allowed** and written in the shortest of half, single and double
//!   precision that represents the value exactly (`ciborium` does this too). NaN is written as
//!   `ciborium` writes it; the rule is a function of the value's bits, so it is deterministic.
//!
//! Decoding ([`from_slice`], [`decode_value`]) checks the size before parsing, parses exactly one
//! data item, and then re-encodes it by the rules above: input whose bytes differ from that
//! re-encoding (unsorted maps, long-form integers or floats, indefinite lengths, …) is rejected
//! with [`DecodeError::NotDeterministic`]. Tags are kept as they are (no bignum folding).

use ciborium::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a value could not be encoded as deterministic CBOR.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The value's `Serialize` implementation failed or produced something CBOR cannot carry.
    #[error("value cannot be represented as cbor: {0}")]
    Serialize(String),
    /// A map contains two keys with the same encoding.
    #[error("map has a duplicate key")]
    DuplicateKey,
}

/// Why bytes could not be decoded as deterministic CBOR.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is longer than the caller's limit; nothing was parsed.
    #[error("input is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The length of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input is not well-formed CBOR (or nests too deeply).
    #[error("invalid cbor: {0}")]
    Syntax(String),
    /// Bytes follow the first complete data item.
    #[error("{count} trailing bytes after the cbor data item")]
    TrailingBytes {
        /// How many bytes follow the data item.
        count: usize,
    },
    /// A map contains two keys with the same encoding.
    #[error("map has a duplicate key")]
    DuplicateKey,
    /// The input is valid CBOR but not in deterministic encoding.
    #[error("cbor is not in deterministic encoding")]
    NotDeterministic,
    /// The data item does not have the structure of the expected type.
    #[error("cbor does not match the expected structure: {0}")]
    Structure(String),
}

/// Serialises `value` as deterministic CBOR.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    encode_value(to_value(value)?)
}

/// Serialises `value` into a [`Value`] whose maps are in deterministic order.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, EncodeError> {
    let value = Value::serialized(value).map_err(|e| EncodeError::Serialize(e.to_string()))?;
    canonicalize(value)
}

/// Encodes a [`Value`] as deterministic CBOR, sorting its maps first.
pub fn encode_value(value: Value) -> Result<Vec<u8>, EncodeError> {
    raw_encode(&canonicalize(value)?)
}

/// Sorts every map in `value` (recursively) by the bytewise order of the encoded keys.
///
/// Fails with [`EncodeError::DuplicateKey`] if a map has two keys with the same encoding.
pub fn canonicalize(value: Value) -> Result<Value, EncodeError> {
    Ok(match value {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(canonicalize)
                .collect::<Result<_, _>>()?,
        ),
        Value::Tag(tag, inner) => Value::Tag(tag, Box::new(canonicalize(*inner)?)),
        Value::Map(entries) => {
            let mut keyed = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let k = canonicalize(k)?;
                let v = canonicalize(v)?;
                keyed.push((raw_encode(&k)?, k, v));
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(EncodeError::DuplicateKey);
            }
            Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        other => other,
    })
}

/// Decodes deterministic CBOR into a `T`.
///
/// Checks `bytes.len() <= max_len` before parsing. Map entries that `T` does not know are
/// ignored unless `T` denies unknown fields.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8], max_len: usize) -> Result<T, DecodeError> {
    decode_value(bytes, max_len)?
        .deserialized()
        .map_err(|e| DecodeError::Structure(e.to_string()))
}

/// Decodes exactly one deterministic CBOR data item into a [`Value`].
///
/// Checks `bytes.len() <= max_len` before parsing, rejects trailing bytes, duplicate map keys and
/// any encoding that differs from the deterministic one.
pub fn decode_value(bytes: &[u8], max_len: usize) -> Result<Value, DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    let mut rest = bytes;
    let value: Value =
        ciborium::from_reader(&mut rest).map_err(|e| DecodeError::Syntax(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    let value = canonicalize(value).map_err(|e| match e {
        EncodeError::DuplicateKey => DecodeError::DuplicateKey,
        EncodeError::Serialize(_) => DecodeError::NotDeterministic,
    })?;
    let again = raw_encode(&value).map_err(|_| DecodeError::NotDeterministic)?;
    if again != bytes {
        return Err(DecodeError::NotDeterministic);
    }
    Ok(value)
}

/// Encodes a value as it is, without sorting.
fn raw_encode(value: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| EncodeError::Serialize(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn sorts_keys_by_encoding() {
        // Length-first: "b" (0x61 0x62) sorts before "aa" (0x62 0x61 0x61); ints before texts.
        let mut m = HashMap::new();
        m.insert("aa", 1);
        m.insert("b", 2);
        let bytes = to_vec(&m).unwrap();
        assert_eq!(hex::encode(&bytes), "a261620262616101");
        let back: HashMap<String, i32> = from_slice(&bytes, 100).unwrap();
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn mixed_key_types() {
        let v = Value::Map(vec![
            (Value::Text("a".into()), Value::Null),
            (Value::Integer((-1).into()), Value::Null),
            (Value::Integer(10.into()), Value::Null),
        ]);
        let bytes = encode_value(v).unwrap();
        // 10 (0x0a) < -1 (0x20) < "a" (0x61 0x61)
        assert_eq!(hex::encode(&bytes), "a30af620f66161f6");
    }

    #[test]
    fn duplicate_keys_rejected_on_encode() {
        let v = Value::Map(vec![
            (Value::Integer(1.into()), Value::Null),
            (Value::Integer(1.into()), Value::Bool(true)),
        ]);
        assert!(matches!(encode_value(v), Err(EncodeError::DuplicateKey)));
    }

    #[test]
    fn duplicate_keys_rejected_on_decode() {
        // {1: null, 1: true}
        let bytes = hex::decode("a201f601f5").unwrap();
        assert_eq!(decode_value(&bytes, 100), Err(DecodeError::DuplicateKey));
    }

    #[test]
    fn floats_are_shortest() {
        assert_eq!(hex::encode(to_vec(&1.5f64).unwrap()), "f93e00");
        assert_eq!(hex::encode(to_vec(&100000.0f64).unwrap()), "fa47c35000");
        assert_eq!(hex::encode(to_vec(&1.1f64).unwrap()), "fb3ff199999999999a");
        // 1.5 as a single-precision float is not deterministic.
        assert_eq!(
            decode_value(&hex::decode("fa3fc00000").unwrap(), 100),
            Err(DecodeError::NotDeterministic)
        );
    }

    #[test]
    fn integers_are_shortest() {
        assert_eq!(hex::encode(to_vec(&23u64).unwrap()), "17");
        assert_eq!(hex::encode(to_vec(&24u64).unwrap()), "1818");
        assert_eq!(hex::encode(to_vec(&256u64).unwrap()), "190100");
        assert_eq!(hex::encode(to_vec(&-1i64).unwrap()), "20");
        assert_eq!(
            hex::encode(to_vec(&u64::MAX).unwrap()),
            "1bffffffffffffffff"
        );
    }

    #[test]
    fn size_is_checked_first() {
        // Garbage that would fail to parse still reports the size.
        assert_eq!(
            decode_value(&[0xff; 10], 9),
            Err(DecodeError::TooLarge { len: 10, max: 9 })
        );
    }

    #[test]
    fn empty_and_truncated_input() {
        assert!(matches!(decode_value(&[], 10), Err(DecodeError::Syntax(_))));
        assert!(matches!(
            decode_value(&[0x62, 0x61], 10),
            Err(DecodeError::Syntax(_))
        ));
    }

    #[test]
    fn structure_mismatch() {
        let bytes = to_vec(&"text").unwrap();
        assert!(matches!(
            from_slice::<u64>(&bytes, 100),
            Err(DecodeError::Structure(_))
        ));
    }
}
