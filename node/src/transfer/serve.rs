//! The provider's side of a transfer: read the request, check the agreement, decide, audit,
//! and stream the file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use allmende_protocol::transfer::{
    MAX_TRANSFER_REQUEST_BYTES, TransferHeader, TransferReply, TransferRequest, TransferView,
};
use allmende_protocol::{PeerId, Signed};
use futures::StreamExt;
use serde_bytes::ByteBuf;
use tokio::io::AsyncWriteExt;
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tracing::Instrument;

use super::Transfers;
use super::view::{self, ServedFile, permitted_columns};
use crate::enforce::{self, Ask, Shape, Terms};
use crate::policies::AgreementRefused;
use allmende_p2p::frames::{read_frame, write_frame};
use allmende_store::StoredDataset;

/// Longest wait for the request frame.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a single write of file bytes may stall before the transfer is dropped.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Bytes read from the file and written to the stream at once.
const CHUNK: usize = 1 << 20;

/// Accepts inbound transfer streams: members only, within their rate, a few at a time.
pub(super) async fn accept(t: Arc<Transfers>, mut incoming: libp2p_stream::IncomingStreams) {
    while let Some((peer, stream)) = incoming.next().await {
        if !t.federation.is_member(&peer) {
            tracing::warn!(%peer, "transfer stream from a non-member dropped");
            continue;
        }
        let allowed = t
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(peer, Instant::now());
        let permit = t.slots.clone().try_acquire_owned().ok();
        let span = tracing::info_span!("transfer_serve", %peer);
        let this = t.clone();
        tokio::spawn(
            async move {
                let mut io = stream.compat();
                let busy = match (allowed, &permit) {
                    (false, _) => Some("over the rate of transfer requests; try again later"),
                    (_, None) => Some("serving too many transfers; try again later"),
                    _ => None,
                };
                if let Some(reason) = busy {
                    let _ = write_frame(&mut io, &TransferReply::Error(reason.into())).await;
                    return;
                }
                serve(&this, peer, &mut io).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}

enum Refusal {
    Denied(String),
    Error(String),
}

async fn serve<S>(t: &Transfers, peer: PeerId, io: &mut S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request: TransferRequest =
        match tokio::time::timeout(REQUEST_TIMEOUT, read_frame(io, MAX_TRANSFER_REQUEST_BYTES))
            .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "malformed transfer request");
                let _ = write_frame(io, &TransferReply::Error(e.to_string())).await;
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, "no transfer request within {REQUEST_TIMEOUT:?}");
                return;
            }
        };
    // What follows is a child of the consumer's span when the consumer sent its trace.
    let span = tracing::info_span!("transfer_request", dataset = %request.dataset);
    if let Some(parent) = &request.traceparent {
        crate::telemetry::follow_remote(&span, parent);
    }
    respond(t, peer, io, request).instrument(span).await;
}

/// Decides on `request`, audits the decision, and sends the refusal or the signed header and
/// the file.
async fn respond<S>(t: &Transfers, peer: PeerId, io: &mut S, request: TransferRequest)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let prepared = prepare(t, peer, &request).await;
    let (decision, detail) = match &prepared {
        Ok((header, _)) => (
            "permit",
            format!(
                "agreement {}; columns {}; {} conditions; {} bytes from {}, sha256 {}",
                hex::encode(request.agreement),
                header.columns.join(","),
                request.view.filter.len(),
                header.size,
                header.offset,
                hex::encode(header.sha256)
            ),
        ),
        Err(Refusal::Denied(r)) => ("deny", r.clone()),
        Err(Refusal::Error(r)) => ("error", r.clone()),
    };
    t.policies
        .audit(&peer, "transfer", &request.dataset, decision, detail)
        .await;
    let (header, file) = match prepared {
        Ok(p) => p,
        Err(Refusal::Denied(r)) => {
            let _ = write_frame(io, &TransferReply::Denied(r)).await;
            return;
        }
        Err(Refusal::Error(r)) => {
            let _ = write_frame(io, &TransferReply::Error(r)).await;
            return;
        }
    };
    let signed = match Signed::sign(&header, t.serving.key()) {
        Ok(s) => s,
        Err(e) => {
            let _ = write_frame(io, &TransferReply::Error(e.to_string())).await;
            return;
        }
    };
    if write_frame(io, &TransferReply::Header(ByteBuf::from(signed.to_bytes())))
        .await
        .is_err()
    {
        return;
    }
    let started = Instant::now();
    match send_file(io, &file, header.offset, t.rate).await {
        Ok(sent) => tracing::info!(
            sent,
            ms = started.elapsed().as_millis() as u64,
            "transfer sent"
        ),
        Err(e) => tracing::info!(error = %e, "transfer broken off"),
    }
}

/// Writes the file from `offset` to the end, at most `rate` bytes a second (0: no limit), then
/// closes the stream. A blocking thread reads ahead through a small channel (bounded memory).
async fn send_file<S>(io: &mut S, file: &ServedFile, offset: u64, rate: u64) -> std::io::Result<u64>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    let chunk = if rate > 0 {
        usize::try_from(rate / 8)
            .unwrap_or(CHUNK)
            .clamp(1024, CHUNK)
    } else {
        CHUNK
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    // Sent buffers come back for the next reads (no allocating and zeroing per chunk).
    let (give_back, given_back) = std::sync::mpsc::channel::<Vec<u8>>();
    let path = file.path.clone();
    let mut left = file.size - offset;
    let reader = tokio::task::spawn_blocking(move || {
        let mut read = || -> std::io::Result<()> {
            use std::io::{Read, Seek};
            let mut f = std::fs::File::open(&path)?;
            f.seek(std::io::SeekFrom::Start(offset))?;
            while left > 0 {
                let want = chunk.min(usize::try_from(left).unwrap_or(usize::MAX));
                let mut buf = given_back.try_recv().unwrap_or_default();
                buf.resize(want, 0);
                f.read_exact(&mut buf)?;
                left -= want as u64;
                if tx.blocking_send(Ok(buf)).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        };
        if let Err(e) = read() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let mut sent = 0u64;
    let started = tokio::time::Instant::now();
    while let Some(buf) = rx.recv().await {
        let buf = buf?;
        if rate > 0 {
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
        tokio::time::timeout(WRITE_STALL, io.write_all(&buf))
            .await
            .map_err(|_| std::io::Error::other("the consumer stopped reading"))??;
        sent += buf.len() as u64;
        let _ = give_back.send(buf);
    }
    drop(rx);
    let _ = reader.await;
    if sent != file.size - offset {
        return Err(std::io::Error::other("the file is shorter than announced"));
    }
    io.flush().await?;
    io.shutdown().await?;
    Ok(sent)
}

/// Checks the agreement and the request, decides, and gets the file ready.
async fn prepare(
    t: &Transfers,
    peer: PeerId,
    request: &TransferRequest,
) -> Result<(TransferHeader, ServedFile), Refusal> {
    let dataset = t
        .serving
        .datasets()
        .store()
        .get(&request.dataset)
        .map_err(|e| Refusal::Error(e.to_string()))?
        .ok_or_else(|| Refusal::Error(format!("no dataset `{}`", request.dataset)))?;
    let agreement = t
        .policies
        .provider_agreement(peer, &dataset.record.id, &request.agreement)
        .map_err(|e| match e {
            AgreementRefused::Policy(e) => Refusal::Error(e.to_string()),
            refused => Refusal::Denied(refused.to_string()),
        })?;
    let id = agreement.id;
    let agreement = agreement.signed;
    let user = t
        .serving
        .assertion(&peer, &request.assertion)
        .map_err(|e| Refusal::Denied(e.to_string()))?;
    let view = resolve_view(&agreement.payload().policy, &dataset, &request.view)?;

    let mut read = view.columns.clone();
    for c in &view.filter {
        if !read.contains(&c.column) {
            read.push(c.column.clone());
        }
    }
    let ask = Ask {
        peer,
        organisation: t.federation.organisation_of(&peer),
        user: &user,
        dataset: &dataset,
        terms: Terms::Agreement {
            policy: &agreement.payload().policy,
            id,
            parties: [t.me, peer],
        },
        shape: Shape::Rows,
        columns: read,
    };
    let decision = enforce::decide(&t.policies, &ask).map_err(|e| Refusal::Error(e.to_string()))?;
    if let Err(refusal) = decision.outcome {
        return Err(Refusal::Denied(
            format!("{refusal} {}", decision.rules.join(" "))
                .trim_end()
                .to_owned(),
        ));
    }

    let file = view::prepare(
        &t.serving,
        &t.views_dir(),
        &t.writing,
        &dataset,
        &view,
        request.format,
    )
    .await
    .map_err(|e| Refusal::Error(e.to_string()))?;
    let offset = match request.resume {
        Some(sha) if sha == file.sha256 && request.offset <= file.size => request.offset,
        _ => 0,
    };
    if offset == 0 {
        let _ = t.policies.count_use(&id);
    }
    let header = TransferHeader {
        consumer: peer,
        dataset: dataset.record.id.clone(),
        version: dataset.record.version,
        agreement: request.agreement,
        columns: view.columns,
        rows: file.rows,
        format: request.format,
        size: file.size,
        sha256: file.sha256,
        offset,
        issued: allmende_p2p::clock::now(),
    };
    Ok((header, file))
}

/// The view to serve: the asked columns (or every permitted one), each existing and permitted,
/// and conditions on existing columns.
fn resolve_view(
    terms: &allmende_policy::Policy,
    dataset: &StoredDataset,
    asked: &TransferView,
) -> Result<TransferView, Refusal> {
    asked.check().map_err(|e| Refusal::Error(e.to_string()))?;
    let exists = |c: &str| dataset.schema.iter().any(|f| f.name == c);
    let permitted = permitted_columns(terms, dataset);
    for c in asked
        .columns
        .iter()
        .chain(asked.filter.iter().map(|f| &f.column))
    {
        if !exists(c) {
            return Err(Refusal::Error(format!(
                "dataset `{}` has no column `{c}`",
                dataset.record.slug
            )));
        }
    }
    let columns = if asked.columns.is_empty() {
        permitted
    } else {
        if let Some(c) = asked.columns.iter().find(|c| !permitted.contains(c)) {
            return Err(Refusal::Denied(format!(
                "column `{c}` is not among the columns the agreement permits ({})",
                permitted.join(", ")
            )));
        }
        let mut seen = Vec::new();
        for c in &asked.columns {
            if !seen.contains(c) {
                seen.push(c.clone());
            }
        }
        seen
    };
    if columns.is_empty() {
        return Err(Refusal::Denied(
            "the agreement permits none of the dataset's columns".into(),
        ));
    }
    Ok(TransferView {
        columns,
        filter: asked.filter.clone(),
    })
}
