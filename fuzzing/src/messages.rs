//! Every message type that crosses the wire: the request-response messages of sync and
//! negotiation, the stream frames of queries and transfers, and every signed payload carried in
//! them or in gossip (catalog entries, rosters, revocations, policies, agreements, checkpoints,
//! cosignatures, answer and transfer headers, user assertions, receipts).
//!
//! The first byte picks the type; the rest is decoded as that type directly and, for signed
//! types, also as the payload of a valid envelope, so that the decoding behind the signature
//! check is reached too. Nested envelopes are opened as the node opens them.
use allmende_policy::agreement::{Agreement, ContractRequest, Revocation, verify_agreement};
use allmende_policy::audit::{Checkpoint, Cosignature, cosign, verify_cosignature};
use allmende_policy::sign::{SignedPolicy, open_policy};
use allmende_protocol::envelope::MAX_ENVELOPE_BYTES;
use allmende_protocol::negotiate::{MAX_NEGOTIATE_BYTES, NegotiateRequest, NegotiateResponse};
use allmende_protocol::query::{
    AnswerFrame, AnswerHeader, MAX_ANSWER_FRAME_BYTES, MAX_QUERY_REQUEST_BYTES, PlanRequest,
    QueryResponse, Receipt, UserAssertion, verify_receipt,
};
use allmende_protocol::roster::SignedRoster;
use allmende_protocol::sync::{
    Digest, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, SyncRequest, SyncResponse,
};
use allmende_protocol::transfer::{
    MAX_TRANSFER_REPLY_BYTES, MAX_TRANSFER_REQUEST_BYTES, TransferHeader, TransferReply,
    TransferRequest,
};
use allmende_protocol::{CatalogEntry, Signed, cbor};
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::support::{key, round_trip, sign_raw, signer, split};

/// A time inside the validity of generated assertions (Unix seconds).
const NOW: u64 = 1_750_000_000;

/// The message types, by selector.
const TYPES: &[fn(&[u8])] = &[
    sync_request,
    sync_response,
    negotiate_request,
    negotiate_response,
    query_request,
    answer_frame,
    transfer_request,
    transfer_reply,
    |d| signed::<CatalogEntry>(d, MAX_ENVELOPE_BYTES, catalog_entry),
    |d| signed::<Revocation>(d, MAX_ENVELOPE_BYTES, |_| {}),
    |d| signed::<ContractRequest>(d, MAX_ENVELOPE_BYTES, |_| {}),
    |d| signed::<Agreement>(d, MAX_ENVELOPE_BYTES, agreement),
    |d| signed::<Checkpoint>(d, MAX_ENVELOPE_BYTES, checkpoint),
    |d| signed::<Cosignature>(d, MAX_ENVELOPE_BYTES, |_| {}),
    |d| signed::<AnswerHeader>(d, MAX_QUERY_REQUEST_BYTES, |_| {}),
    |d| signed::<TransferHeader>(d, MAX_TRANSFER_REPLY_BYTES, |_| {}),
    |d| signed::<UserAssertion>(d, MAX_QUERY_REQUEST_BYTES, |_| {}),
    |d| signed::<Receipt>(d, MAX_QUERY_REQUEST_BYTES * 16, receipt),
    |d| signed::<allmende_policy::Policy>(d, MAX_ENVELOPE_BYTES, |_| {}),
    |d| {
        round_trip::<QueryResponse>(d, MAX_QUERY_REQUEST_BYTES);
    },
    |d| {
        round_trip::<Digest>(d, MAX_REQUEST_BYTES).map(|d| d.hash());
    },
    |d| {
        let _ = SignedRoster::from_bytes(d);
    },
];

/// How many message types [`messages`] tells apart (the first byte modulo this).
pub fn type_count() -> usize {
    TYPES.len()
}

/// Decodes the rest of `data` as the message type its first byte picks.
pub fn messages(data: &[u8]) {
    let Some((selector, rest)) = split(data) else {
        return;
    };
    TYPES[usize::from(selector) % TYPES.len()](rest);
}

/// Opens `data` as an envelope of `T`, and a valid envelope around `data` as `T`'s payload;
/// `then` checks what opened as the node would.
fn signed<T: Serialize + DeserializeOwned>(data: &[u8], max: usize, then: fn(&Signed<T>)) {
    if let Ok(s) = Signed::<T>::from_bytes(data, max) {
        assert_eq!(s.as_bytes(), data);
        then(&s);
    }
    let env = sign_raw(data);
    let payload = cbor::from_slice::<T>(data, max);
    match Signed::<T>::from_bytes(&env, max) {
        Ok(s) => {
            assert!(
                payload.is_ok(),
                "an envelope opened whose payload does not decode"
            );
            assert_eq!(s.signer(), signer());
            round_trip::<T>(data, max).expect("the payload decodes");
            then(&s);
        }
        Err(e) => assert!(
            payload.is_err() || env.len() > max,
            "a valid envelope of a decodable payload was refused: {e}"
        ),
    }
}

fn sync_request(data: &[u8]) {
    match round_trip::<SyncRequest>(data, MAX_REQUEST_BYTES) {
        Some(SyncRequest::Digest(d)) => {
            let _ = d.hash();
        }
        Some(SyncRequest::Cosign {
            checkpoint,
            from,
            proof,
        }) => {
            let Ok(cp) = Signed::<Checkpoint>::from_bytes(&checkpoint, MAX_ENVELOPE_BYTES) else {
                return;
            };
            let hashes: Vec<[u8; 32]> = proof
                .iter()
                .filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
                .collect();
            let _ = allmende_policy::audit::verify_consistency(
                from,
                cp.payload().size,
                &cp.payload().root,
                &cp.payload().root,
                &hashes,
            );
        }
        Some(SyncRequest::Range { .. }) | None => {}
    }
}

fn sync_response(data: &[u8]) {
    match round_trip::<SyncResponse>(data, MAX_RESPONSE_BYTES) {
        Some(SyncResponse::Digest { digest, roster }) => {
            let _ = digest.hash();
            if let Some(r) = roster {
                roster_bytes(&r);
            }
        }
        Some(SyncResponse::Entries(entries)) => {
            for e in entries {
                if let Ok(s) = Signed::<CatalogEntry>::from_bytes(&e, MAX_ENVELOPE_BYTES) {
                    catalog_entry(&s);
                }
            }
        }
        Some(SyncResponse::Cosignature(c)) => {
            let _ = Signed::<Cosignature>::from_bytes(&c, MAX_ENVELOPE_BYTES);
        }
        Some(SyncResponse::Refused(_)) | None => {}
    }
}

fn roster_bytes(bytes: &[u8]) {
    if let Ok(r) = SignedRoster::from_bytes(bytes) {
        let _ = r.verify_founding();
    }
}

fn negotiate_request(data: &[u8]) {
    if let Some(NegotiateRequest::Agree { request, .. }) =
        round_trip::<NegotiateRequest>(data, MAX_NEGOTIATE_BYTES)
    {
        let _ = Signed::<ContractRequest>::from_bytes(&request, MAX_ENVELOPE_BYTES);
    }
}

fn negotiate_response(data: &[u8]) {
    match round_trip::<NegotiateResponse>(data, MAX_NEGOTIATE_BYTES) {
        Some(NegotiateResponse::Offer(o)) => {
            let _ = open_policy(&o, MAX_ENVELOPE_BYTES);
        }
        Some(NegotiateResponse::Agreement(a)) => {
            if let Some(offer) = offer() {
                let _ = verify_agreement(&a, offer);
            }
        }
        Some(NegotiateResponse::Refused(_)) | None => {}
    }
}

fn query_request(data: &[u8]) {
    if let Some(r) = round_trip::<PlanRequest>(data, MAX_QUERY_REQUEST_BYTES) {
        let _ = r.plan.check();
        let _ = UserAssertion::open(&r.assertion, &signer(), &signer(), NOW);
    }
}

fn answer_frame(data: &[u8]) {
    if let Some(AnswerFrame::Header(h)) = round_trip::<AnswerFrame>(data, MAX_ANSWER_FRAME_BYTES) {
        let _ = Signed::<AnswerHeader>::from_bytes(&h, MAX_QUERY_REQUEST_BYTES);
    }
}

fn transfer_request(data: &[u8]) {
    if let Some(r) = round_trip::<TransferRequest>(data, MAX_TRANSFER_REQUEST_BYTES) {
        let _ = r.view.check();
        let _ = UserAssertion::open(&r.assertion, &signer(), &signer(), NOW);
    }
}

fn transfer_reply(data: &[u8]) {
    if let Some(TransferReply::Header(h)) =
        round_trip::<TransferReply>(data, MAX_TRANSFER_REPLY_BYTES)
    {
        let _ = Signed::<TransferHeader>::from_bytes(&h, MAX_TRANSFER_REPLY_BYTES);
    }
}

fn catalog_entry(s: &Signed<CatalogEntry>) {
    let _ = s.verify_publisher();
    let _ = s.check_chain(None);
    let _ = s.check_chain(Some(s));
}

fn agreement(s: &Signed<Agreement>) {
    let _ = Signed::<ContractRequest>::from_bytes(&s.payload().request, MAX_ENVELOPE_BYTES);
    if let Some(offer) = offer() {
        let _ = verify_agreement(s.as_bytes(), offer);
    }
}

fn checkpoint(s: &Signed<Checkpoint>) {
    if let Ok(c) = cosign(s, Some((s, &[])), "2025-06-01T00:00:00Z", &key()) {
        assert!(verify_cosignature(&c, s));
    }
}

fn receipt(s: &Signed<Receipt>) {
    let _ = verify_receipt(s.as_bytes());
}

/// A signed offer of [`key`], for agreements to be checked against.
pub fn offer() -> Option<&'static SignedPolicy> {
    static OFFER: OnceLock<Option<SignedPolicy>> = OnceLock::new();
    OFFER.get_or_init(make_offer).as_ref()
}

fn make_offer() -> Option<SignedPolicy> {
    let text = r#"{"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Offer",
        "uid": "urn:allmende:policy:open", "permission": [{"action": "use"}]}"#;
    let mut p = allmende_policy::parse::jsonld::from_str(text).ok()?;
    p.issuer = Some(allmende_protocol::did_key_of(&key().verifying_key()));
    p.issued = "2025-06-01T00:00:00Z".parse().ok();
    p.expires = "2027-06-01T00:00:00Z".parse().ok();
    p.version = Some(1);
    allmende_policy::sign::sign_policy(&p, &key()).ok()
}
