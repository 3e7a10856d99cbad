//! The COSE_Sign1 envelope ([`allmende_protocol::Signed`]) around any deterministic CBOR.
use allmende_protocol::envelope::{MAX_ENVELOPE_BYTES, verifying_key_of};
use allmende_protocol::{Signed, cbor};
use ciborium::Value;

use crate::support::{key, same_cbor, sign_raw, signer};

/// Opens `data` as an envelope, and opens a valid envelope around `data` as its payload.
///
/// Invariants: an envelope that opens has exactly the input's bytes, opens again the same, and
/// names a signer with an Ed25519 key; one that our key signed is exactly what signing its
/// payload again gives (the encoding is a function of payload and key). An envelope around
/// `data` opens exactly when `data` is deterministic CBOR.
pub fn envelope(data: &[u8]) {
    opened(data);
    let env = sign_raw(data);
    let decodes = cbor::decode_value(data, MAX_ENVELOPE_BYTES).is_ok();
    match Signed::<Value>::from_bytes(&env, MAX_ENVELOPE_BYTES) {
        Ok(s) => {
            assert!(decodes, "a payload that does not decode was accepted");
            assert_eq!(s.signer(), signer());
            let again = cbor::encode_value(s.payload().clone()).expect("a payload encodes");
            assert_eq!(again, data, "the payload is not the signed bytes");
            opened(&env);
        }
        Err(e) => assert!(
            !decodes || env.len() > MAX_ENVELOPE_BYTES,
            "a valid envelope around deterministic cbor was refused: {e}"
        ),
    }
}

/// Checks an envelope that may or may not open.
fn opened(data: &[u8]) {
    let Ok(s) = Signed::<Value>::from_bytes(data, MAX_ENVELOPE_BYTES) else {
        return;
    };
    assert_eq!(s.as_bytes(), data);
    assert!(
        verifying_key_of(&s.signer()).is_some(),
        "signer without a key"
    );
    let again = Signed::<Value>::from_bytes(s.as_bytes(), MAX_ENVELOPE_BYTES)
        .expect("an opened envelope opens again");
    assert_eq!(again.signer(), s.signer());
    assert!(same_cbor(again.payload(), s.payload()));
    if s.signer() == signer() {
        let resigned = Signed::sign(s.payload(), &key()).expect("an opened payload signs");
        assert_eq!(
            resigned.as_bytes(),
            data,
            "two encodings of one signed payload"
        );
    }
}
