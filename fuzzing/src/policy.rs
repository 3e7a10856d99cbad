//! The policy parsers: JSON-LD compact ([`allmende_policy::parse::jsonld`]) and deterministic
//! CBOR ([`allmende_policy::parse::cbor`]), and the signed forms of both.
use allmende_policy::Policy;
use allmende_policy::parse::{cbor, emit, jsonld};
use allmende_policy::sign::{open_policy, verify_jsonld};
use allmende_protocol::envelope::MAX_ENVELOPE_BYTES;

use crate::support::sign_raw;

/// Parses `data` as a JSON-LD policy (and, if it carries one, checks its Data Integrity proof).
///
/// Invariants: parse → emit → parse gives the same policy and the same text; the policy's
/// CBOR form decodes to the same policy.
pub fn policy_jsonld(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
        && value.get("proof").is_some()
    {
        let _ = verify_jsonld(&value);
    }
    let Ok(p) = jsonld::from_str(text) else {
        return;
    };
    let emitted = emit::to_string(&p);
    let back = jsonld::from_str(&emitted)
        .unwrap_or_else(|e| panic!("an emitted policy does not parse: {e}\n{emitted}"));
    assert_eq!(
        back, p,
        "parse → emit → parse changed the policy\n{emitted}"
    );
    assert_eq!(emit::to_string(&back), emitted, "emitting is not stable");
    cbor_round_trip(&p);
}

/// Parses `data` as a CBOR policy, and opens a valid envelope around `data` as a signed policy.
///
/// Invariants: a policy that decodes is exactly the bytes its encoding gives (the form is
/// canonical), survives the JSON-LD round trip, and decodes again to itself.
pub fn policy_cbor(data: &[u8]) {
    if let Ok(p) = cbor::from_slice(data, MAX_ENVELOPE_BYTES) {
        let bytes = cbor_round_trip(&p);
        assert_eq!(bytes, data, "two cbor encodings of one policy");
        let emitted = emit::to_string(&p);
        let back = jsonld::from_str(&emitted)
            .unwrap_or_else(|e| panic!("an emitted policy does not parse: {e}\n{emitted}"));
        assert_eq!(
            back, p,
            "cbor → json-ld → policy changed the policy\n{emitted}"
        );
    }
    let _ = open_policy(data, MAX_ENVELOPE_BYTES);
    if let Ok(signed) = open_policy(&sign_raw(data), MAX_ENVELOPE_BYTES) {
        cbor_round_trip(signed.payload());
    }
}

/// Encodes `p` as CBOR, checks that it decodes to `p`, and returns the bytes.
fn cbor_round_trip(p: &Policy) -> Vec<u8> {
    let bytes = cbor::to_vec(p).expect("a parsed policy encodes");
    let back = cbor::from_slice(&bytes, usize::MAX)
        .unwrap_or_else(|e| panic!("an encoded policy does not decode: {e}"));
    assert_eq!(&back, p, "cbor round trip changed the policy");
    bytes
}
