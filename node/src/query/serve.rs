//! The provider's end of the query stream protocol: members only, within their rate (a member
//! over it gets a refusal frame); each request is answered ([`super::provider::answer`]) as
//! data frames of about 1 MiB, written as the provider produces them, followed by the signed
//! header.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allmende_protocol::query::{AnswerFrame, MAX_QUERY_REQUEST_BYTES, PlanRequest};
use futures::StreamExt;
use serde_bytes::ByteBuf;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};
use tracing::Instrument;

use super::provider::{ProviderContext, answer};
use crate::federation::{Federation, FederationError};
use allmende_p2p::frames::{FrameError, read_frame, write_frame};
use allmende_p2p::ratelimit::RateLimiter;

/// Longest wait for the request frame.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest an answer may take to produce and deliver before it is dropped.
const WRITE_STALL: Duration = Duration::from_secs(120);
/// Most Arrow IPC bytes in one data frame.
const FRAME_DATA: usize = 1 << 20;
/// Longest a refusal may take to deliver.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a member over its rate is refused.
const OVER_RATE: &str =
    "over the rate of 20 query streams a second (bursts of 100) from one member";

/// Tells the asker on `stream` that its request is refused, and closes the stream. The request
/// is read first: a stream closed before the asker has sent it fails the asker's write, and
/// the refusal would go unread.
async fn refuse(stream: libp2p::Stream, reason: &str) {
    let mut io = stream.compat();
    let refusal = async {
        read_frame::<PlanRequest, _>(&mut io, MAX_QUERY_REQUEST_BYTES).await?;
        close_with(&mut io, &AnswerFrame::Refused(reason.to_owned())).await
    };
    deliver("refusal", REFUSAL_TIMEOUT, refusal).await;
}

/// Writes the `last` frame and closes the stream.
async fn close_with(
    io: &mut Compat<libp2p::Stream>,
    last: &AnswerFrame,
) -> Result<(), Undelivered> {
    write_frame(&mut *io, last).await?;
    Ok(tokio::io::AsyncWriteExt::shutdown(io)
        .await
        .map_err(FrameError::Io)?)
}

/// Why an answer or a refusal did not reach the asker.
#[derive(Debug, thiserror::Error)]
enum Undelivered {
    /// Reading the request or writing a frame failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The task producing the answer died.
    #[error("answering failed: {0}")]
    Answer(#[from] tokio::task::JoinError),
}

/// Waits at most `limit` for `delivery` of `what`; says why it failed.
async fn deliver(
    what: &str,
    limit: Duration,
    delivery: impl Future<Output = Result<(), Undelivered>>,
) {
    match tokio::time::timeout(limit, delivery).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "{what} not delivered"),
        Err(_) => tracing::debug!("{what} not delivered: the asker stalled"),
    }
}

/// Starts answering query streams from members.
pub fn serve(fed: Arc<Federation>, provider: Arc<ProviderContext>) -> Result<(), FederationError> {
    let mut incoming = fed.accept_streams(allmende_protocol::version::QUERY)?;
    let limiter = Arc::new(Mutex::new(RateLimiter::new(20, 100)));
    tokio::spawn(async move {
        while let Some((peer, stream)) = incoming.next().await {
            if !fed.is_member(&peer) {
                // Dropping the stream closes it; a non-member learns nothing.
                tracing::warn!(%peer, "query refused: not a member");
                continue;
            }
            let allowed = limiter
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .allow(peer, Instant::now());
            if !allowed {
                // Said, so that the asker does not ask again at once.
                tracing::warn!(%peer, "query refused: over its rate");
                tokio::spawn(refuse(stream, OVER_RATE));
                continue;
            }
            let provider = provider.clone();
            let organisation = fed.organisation_of(&peer);
            let span = tracing::info_span!("query_stream", %peer);
            tokio::spawn(
                async move {
                    let mut io = stream.compat();
                    let request: PlanRequest = match tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        read_frame(&mut io, MAX_QUERY_REQUEST_BYTES),
                    )
                    .await
                    {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "malformed query request");
                            return;
                        }
                        Err(_) => return,
                    };
                    // The answer is produced in one task and written here as it comes.
                    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
                    // The answer is a child of the asker's span when the asker sent its trace.
                    let answering = tracing::info_span!("query_request", %peer);
                    if let Some(parent) = &request.traceparent {
                        crate::telemetry::follow_remote(&answering, parent);
                    }
                    let producing = tokio::spawn(
                        async move { answer(&provider, peer, organisation, request, &tx).await }
                            .instrument(answering),
                    );
                    let send = async {
                        while let Some(chunk) = rx.recv().await {
                            for part in chunk.chunks(FRAME_DATA) {
                                write_frame(&mut io, &AnswerFrame::Data(ByteBuf::from(part)))
                                    .await?;
                            }
                        }
                        let header = producing.await?;
                        close_with(&mut io, &AnswerFrame::Header(header)).await
                    };
                    deliver("query answer", WRITE_STALL, send).await;
                }
                .instrument(span),
            );
        }
    });
    Ok(())
}
