//! Whole-dataset transfer, carried over the stream protocol [`crate::version::TRANSFER`].
//!
//! A consumer opens a stream and writes one frame: a [`TransferRequest`] naming the dataset, the
//! agreement it holds, the view it wants (columns and row conditions), the file format and the
//! byte offset to start at (non-zero when it resumes). The provider answers with one frame, a
//! [`TransferReply`]: either its signed [`TransferHeader`] — the exact size and SHA-256 of the
//! file it serves, so the consumer can check what it assembled, also across resumptions — or a
//! refusal with the reason. After a header the provider writes the file's bytes from the
//! requested offset to the end and closes the stream.
//!
//! Both travel as [`crate::frame`]s.

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::query::Condition;

/// Largest request frame accepted (the assertion and a view with some conditions).
pub const MAX_TRANSFER_REQUEST_BYTES: usize = 256 * 1024;
/// Largest reply frame accepted (a signed header).
pub const MAX_TRANSFER_REPLY_BYTES: usize = 64 * 1024;

/// The file format of a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferFormat {
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC file format.
    Arrow,
}

impl TransferFormat {
    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            TransferFormat::Parquet => "parquet",
            TransferFormat::Arrow => "arrow",
        }
    }
}

/// What part of a dataset a consumer asks for; the provider narrows it further to what its
/// policy permits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferView {
    /// Columns, in order; empty means every column the policy permits.
    pub columns: Vec<String>,
    /// Row conditions, and-ed.
    pub filter: Vec<Condition>,
}

impl TransferView {
    /// Checks the view's sizes against a fragment's limits ([`crate::query::Fragment::check`]).
    pub fn check(&self) -> Result<(), crate::query::FragmentError> {
        crate::query::Fragment {
            columns: self.columns.clone(),
            filter: self.filter.clone(),
            ..crate::query::Fragment::default()
        }
        .check()
    }
}

/// A consumer's request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// The provider's dataset id.
    pub dataset: String,
    /// The id (SHA-256 of the provider's envelope) of the agreement the consumer holds.
    #[serde(with = "crate::codec::bytes32")]
    pub agreement: [u8; 32],
    /// The part of the dataset wanted.
    pub view: TransferView,
    /// The file format.
    pub format: TransferFormat,
    /// The first byte wanted: 0, or the length already received when resuming.
    pub offset: u64,
    /// When resuming: the SHA-256 of the file the earlier part came from; the provider serves
    /// that file if it still has it.
    #[serde(default, with = "crate::codec::opt_bytes32")]
    pub resume: Option<[u8; 32]>,
    /// Who asks and why: a [`crate::query::UserAssertion`] signed by the consumer node.
    pub assertion: ByteBuf,
    /// The consumer's W3C trace context (a `traceparent` value), so that the provider's spans
    /// join the consumer's trace; absent when the consumer records no trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// What the provider serves, signed by it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferHeader {
    /// The consumer it is for.
    #[serde(with = "crate::codec::peer_id")]
    pub consumer: PeerId,
    /// The dataset id.
    pub dataset: String,
    /// The dataset's version the file was made from.
    pub version: u64,
    /// The agreement it is served under.
    #[serde(with = "crate::codec::bytes32")]
    pub agreement: [u8; 32],
    /// The columns of the file, in order (the permitted view).
    pub columns: Vec<String>,
    /// Rows in the file.
    pub rows: u64,
    /// The file format.
    pub format: TransferFormat,
    /// The file's length in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    #[serde(with = "crate::codec::bytes32")]
    pub sha256: [u8; 32],
    /// The first byte that follows the header on this stream.
    pub offset: u64,
    /// When the provider signed this header, Unix seconds.
    pub issued: u64,
}

/// The provider's answer to a [`TransferRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TransferReply {
    /// The signed [`TransferHeader`] (COSE_Sign1); the bytes follow on the stream.
    Header(ByteBuf),
    /// The policy or the agreement does not permit it, with the reason.
    Denied(String),
    /// The provider could not serve it, with the reason.
    Error(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameError, frame, frame_len};
    use crate::query::{CompareOp, Literal};

    #[test]
    fn requests_round_trip_as_frames() {
        let request = TransferRequest {
            dataset: "d1".into(),
            agreement: [7; 32],
            view: TransferView {
                columns: vec!["a".into()],
                filter: vec![Condition {
                    column: "a".into(),
                    op: CompareOp::Gt,
                    values: vec![Literal::Int(3)],
                }],
            },
            format: TransferFormat::Parquet,
            offset: 42,
            resume: Some([9; 32]),
            assertion: ByteBuf::from(vec![1, 2, 3]),
            traceparent: None,
        };
        let bytes = frame(&request).unwrap();
        let len = frame_len(bytes[..4].try_into().unwrap(), MAX_TRANSFER_REQUEST_BYTES).unwrap();
        assert_eq!(len, bytes.len() - 4);
        let back: TransferRequest =
            crate::cbor::from_slice(&bytes[4..], MAX_TRANSFER_REQUEST_BYTES).unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn oversized_frames_are_refused_before_reading() {
        let prefix = ((MAX_TRANSFER_REPLY_BYTES + 1) as u32).to_be_bytes();
        assert!(matches!(
            frame_len(prefix, MAX_TRANSFER_REPLY_BYTES),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
