//! Asking one member over a query stream: the request frame, then the answer's data frames
//! (at most [`MAX_QUERY_RESPONSE_BYTES`] in all) and its signed header. A stream dropped
//! before its first frame is asked again; a refusal is final.

use allmende_p2p::frames::{FrameError, read_frame, read_frame_or_end, write_frame};
use allmende_protocol::PeerId;
use allmende_protocol::query::{
    AnswerFrame, MAX_ANSWER_FRAME_BYTES, MAX_QUERY_RESPONSE_BYTES, PlanRequest, QueryResponse,
};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use crate::federation::{Federation, FederationError};

/// Most characters of a provider's refusal kept in the asker's answer.
const MAX_REASON_CHARS: usize = 200;

/// Why a member gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// It could not be reached (no connection, the dial or the stream failed).
    #[error("unreachable: {0}")]
    Unreachable(FederationError),
    /// Its answer did not arrive whole or was malformed.
    #[error("the provider did not answer: {0}")]
    NoAnswer(String),
    /// It refused the request (over its rate), with its reason.
    #[error("the provider refused the query: {0}")]
    Refused(String),
    /// The request could not be made.
    #[error("the request could not be made: {0}")]
    Request(Box<super::QueryError>),
}

/// Sends a sub-plan to `peer` over a stream and assembles its answer: data
/// frames (at most [`MAX_QUERY_RESPONSE_BYTES`] in all), then the signed header. The caller
/// bounds the wait with its deadline. `request` makes the request for each attempt: an
/// attempt after a dropped stream carries a fresh assertion, since the provider may have
/// read (and so spent) the first one.
///
/// [`MAX_QUERY_RESPONSE_BYTES`]: allmende_protocol::query::MAX_QUERY_RESPONSE_BYTES
#[tracing::instrument(name = "ask_member", skip_all, fields(%peer))]
pub async fn ask(
    fed: &Federation,
    peer: PeerId,
    request: impl Fn() -> Result<PlanRequest, super::QueryError>,
) -> Result<QueryResponse, AskError> {
    let fail = |m: String| AskError::NoAnswer(m);
    // A provider under load may drop an inbound stream before it is accepted (libp2p-stream
    // keeps no queue); a stream that fails before the first frame is asked again, at most
    // five times with growing pauses; the caller's deadline bounds the whole.
    let mut attempts = 0;
    let (mut io, first) = loop {
        attempts += 1;
        let stream = fed
            .open_stream(peer, allmende_protocol::version::QUERY)
            .await
            .map_err(AskError::Unreachable)?;
        let mut io = stream.compat();
        let request = request().map_err(|e| AskError::Request(Box::new(e)))?;
        let first = match write_frame(&mut io, &request).await {
            Ok(()) => read_frame_or_end::<AnswerFrame, _>(&mut io, MAX_ANSWER_FRAME_BYTES).await,
            Err(e) => Err(e),
        };
        let dropped = match first {
            // A refusal is final: asking again would only be refused again.
            Ok(Some(AnswerFrame::Refused(reason))) => {
                return Err(AskError::Refused(
                    reason.chars().take(MAX_REASON_CHARS).collect(),
                ));
            }
            Ok(Some(first)) => break (io, first),
            Ok(None) => "it closed the stream".to_owned(),
            // An answer that is not a valid frame is not asked again.
            Err(e @ FrameError::Invalid(_)) => return Err(fail(e.to_string())),
            Err(e) => e.to_string(),
        };
        if attempts >= 5 {
            return Err(fail(dropped));
        }
        tracing::debug!(attempts, reason = %dropped, "query stream dropped; asking again");
        tokio::time::sleep(std::time::Duration::from_millis(5 << attempts)).await;
    };
    let mut data = Vec::new();
    let mut next = Some(first);
    loop {
        let frame = match next.take() {
            Some(f) => f,
            None => read_frame::<AnswerFrame, _>(&mut io, MAX_ANSWER_FRAME_BYTES)
                .await
                .map_err(|e| fail(e.to_string()))?,
        };
        match frame {
            AnswerFrame::Data(bytes) => {
                if data.len() + bytes.len() > MAX_QUERY_RESPONSE_BYTES {
                    return Err(fail(format!(
                        "its answer exceeds {MAX_QUERY_RESPONSE_BYTES} bytes"
                    )));
                }
                data.extend_from_slice(&bytes);
            }
            AnswerFrame::Header(header) => {
                return Ok(QueryResponse {
                    header,
                    batches: serde_bytes::ByteBuf::from(data),
                });
            }
            AnswerFrame::Refused(_) => {
                return Err(fail("a refusal after data".into()));
            }
        }
    }
}
