//! Answering a local query over HTTP: the query runs on the engine's threads under its deadline
//! and memory limit, encoded there in the answer's format; its first [`HELD_BYTES`] are held
//! back, so that a query that fails early (a syntax error, the memory or time limit) is answered
//! with a problem document and its own status, not a 200 that breaks off. An answer longer than
//! that is streamed; a failure after its first bytes cuts the body short, and the log says why.
//! A client that goes away cancels the query.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ApiError, AppState};
use allmende_data::output::{Encoder, OutputFormat};
use allmende_data::sql::pool::Running;
use allmende_data::sql::{self, SqlError};

/// Bytes of an answer held back before its status is sent.
pub const HELD_BYTES: usize = 4 << 20;

/// Runs `sql_text` over the node's datasets and answers with its rows in `format`.
pub(super) async fn local_query(
    state: &AppState,
    sql_text: String,
    format: OutputFormat,
) -> Result<Response, ApiError> {
    let limits = &state.config.limits;
    let limit = std::time::Duration::from_secs(limits.sql_timeout_secs);
    let deadline = Instant::now() + limit;
    let pool = state.engine.pool();
    let slot = pool.local_slot(deadline, limit).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let (engine, datasets, memory) = (
        state.engine.clone(),
        state.datasets.clone(),
        limits.sql_memory_bytes,
    );
    let running = pool.spawn(deadline, limit, async move {
        let _slot = slot;
        let mut batches = sql::query(&engine, &datasets, &sql_text, memory).await?;
        let (mut encoder, head) = Encoder::begin(format, &batches.schema()).map_err(internal)?;
        if tx.send(head).await.is_err() {
            return Ok(());
        }
        while let Some(batch) = batches.next().await {
            let bytes = encoder.batch(&batch?).map_err(internal)?;
            if tx.send(bytes).await.is_err() {
                return Ok(());
            }
        }
        let _ = tx.send(encoder.end().map_err(internal)?).await;
        Ok(())
    });
    respond(rx, running, format).await
}

fn internal(e: arrow::error::ArrowError) -> SqlError {
    SqlError::Internal(format!("encoding the answer: {e}"))
}

/// Holds back the first [`HELD_BYTES`] of the answer coming through `rx`, then answers.
async fn respond(
    mut rx: mpsc::Receiver<Bytes>,
    mut running: Running<()>,
    format: OutputFormat,
) -> Result<Response, ApiError> {
    let mut held = Vec::new();
    let mut size = 0;
    while size < HELD_BYTES {
        match rx.recv().await {
            Some(chunk) => {
                size += chunk.len();
                held.push(chunk);
            }
            None => {
                // The query ended: its result says whether the held bytes are the answer.
                (&mut running).await?;
                return body(format, Body::from(held.concat()));
            }
        }
    }
    let rest = Rest {
        rx,
        running: Some(running),
    };
    let chunks = futures::stream::iter(held.into_iter().map(Ok)).chain(rest);
    body(format, Body::from_stream(chunks))
}

fn body(format: OutputFormat, body: Body) -> Result<Response, ApiError> {
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .body(body)
        .map_err(ApiError::internal)
}

/// The rest of a streamed answer; dropping it (the client went away) cancels the query.
struct Rest {
    rx: mpsc::Receiver<Bytes>,
    running: Option<Running<()>>,
}

impl Stream for Rest {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => return Poll::Ready(Some(Ok(chunk))),
            // The query still holds its end of the channel: it runs.
            Poll::Pending => return Poll::Pending,
            // Everything it sent is out; what remains is how it ended.
            Poll::Ready(None) => {}
        }
        let Some(running) = self.running.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(running).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.running = None;
                match result {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => {
                        tracing::warn!(error = %e, "a streamed answer broke off");
                        Poll::Ready(Some(Err(std::io::Error::other(e))))
                    }
                }
            }
        }
    }
}
