//! The query fragment a provider receives ([`allmende_protocol::query::Fragment`]) and the
//! transfer view ([`allmende_protocol::transfer::TransferView`]).
use allmende_protocol::query::{Fragment, MAX_QUERY_REQUEST_BYTES};
use allmende_protocol::transfer::{MAX_TRANSFER_REQUEST_BYTES, TransferView};

use crate::support::round_trip;

/// Decodes `data` as a fragment and as a transfer view, checks their round trips and runs
/// their size checks, which a provider runs before anything else.
pub fn fragment(data: &[u8]) {
    if let Some(f) = round_trip::<Fragment>(data, MAX_QUERY_REQUEST_BYTES) {
        let checked = f.check();
        let _ = f.is_aggregate();
        // The check is a function of the value: the re-decoded value gets the same verdict.
        if let Some(back) = round_trip::<Fragment>(
            &allmende_protocol::cbor::to_vec(&f).expect("a fragment encodes"),
            usize::MAX,
        ) {
            assert_eq!(back.check().is_ok(), checked.is_ok());
        }
    }
    if let Some(v) = round_trip::<TransferView>(data, MAX_TRANSFER_REQUEST_BYTES) {
        let _ = v.check();
    }
}
