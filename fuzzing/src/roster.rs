//! The federation roster ([`allmende_protocol::roster::SignedRoster`]).
use allmende_protocol::cbor;
use allmende_protocol::roster::{MAX_ROSTER_BYTES, Roster, SignedRoster};

use crate::support::{key, round_trip, signer};

/// Decodes `data` as a signed roster (its wire form) and as a roster payload that our key then
/// signs.
///
/// Invariants: a roster that decodes encodes to a wire form that decodes to the same roster;
/// a payload that passes the roster's checks and is signed decodes again, signed by our key.
pub fn roster(data: &[u8]) {
    if let Ok(r) = SignedRoster::from_bytes(data) {
        let bytes = r.to_bytes().expect("a decoded roster encodes");
        let back = SignedRoster::from_bytes(&bytes).expect("an encoded roster decodes");
        assert_eq!(back, r);
        let _ = r.verify_founding();
        let _ = r.verify_successor(&r);
        let _ = r.roster().required();
        let _ = r.roster().valid_at(u64::MAX);
    }
    let Some(roster) = round_trip::<Roster>(data, MAX_ROSTER_BYTES) else {
        return;
    };
    let _ = roster.required();
    let Ok(mut signed) = SignedRoster::new(roster) else {
        return;
    };
    signed.sign(&key());
    let bytes = signed.to_bytes().expect("a signed roster encodes");
    let back = SignedRoster::from_bytes(&bytes).expect("a checked, signed roster decodes");
    assert_eq!(back, signed);
    assert_eq!(
        back.signers().expect("its signature verifies"),
        vec![signer()]
    );
    let payload = back.roster().payload().expect("a roster encodes");
    let again: Roster = cbor::from_slice(&payload, usize::MAX).expect("its payload decodes");
    assert_eq!(&again, back.roster());
    let _ = back.verify_founding();
}
