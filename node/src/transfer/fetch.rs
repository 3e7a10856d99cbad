//! The consumer's side of a transfer: one attempt asks the provider for the bytes after those
//! already on disk, checks the signed header, writes and hashes what arrives, and on the last
//! byte checks the whole file against the signed SHA-256.

use std::io::Write as _;
use std::time::Duration;

use allmende_protocol::query::MAX_ASSERTION_SECS;
use allmende_protocol::transfer::{
    MAX_TRANSFER_REPLY_BYTES, TransferFormat, TransferHeader, TransferReply, TransferRequest,
};
use allmende_protocol::{PeerId, Signed};
use futures::AsyncReadExt as _;
use serde_bytes::ByteBuf;
use sha2::Digest;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::{TransferRecord, Transfers};
use crate::query::QueryOptions;
use allmende_p2p::frames::{FrameError, read_frame, write_frame};

/// Longest wait for the provider's reply (it may first write the view).
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest silence while bytes are expected.
const READ_STALL: Duration = Duration::from_secs(30);
/// How often the bytes received are saved to the record.
const SAVE_EVERY: u64 = 64 << 20;
/// Bytes written before the kernel is asked to start writing them to disk.
const WRITEBACK_EVERY: u64 = 8 << 20;
/// Bytes received before they go to the writing thread.
const BATCH: usize = 256 << 10;

/// Why an attempt ended without the file.
pub(super) enum Failure {
    /// Try again (resuming): the connection broke, the provider was busy or unreachable.
    Retry(String),
    /// Give up: denied, or the provider's answer is invalid.
    Final(String),
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// One attempt; `record` is updated with what the provider said and what arrived.
pub(super) async fn attempt(t: &Transfers, record: &mut TransferRecord) -> Result<(), Failure> {
    let peer: PeerId = record
        .provider
        .parse()
        .map_err(|_| Failure::Final(format!("`{}` is not a PeerId", record.provider)))?;
    let agreement = hex32(&record.agreement)
        .ok_or_else(|| Failure::Final("the agreement id is not 32 bytes of hex".into()))?;
    let part = t.incoming_path(&record.id);
    if let Some(dir) = part.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Failure::Final(e.to_string()))?;
    }
    let resume = record.sha256.as_deref().and_then(hex32);
    let have = match (resume, tokio::fs::metadata(&part).await) {
        (Some(_), Ok(m)) => m.len(),
        _ => 0,
    };
    let options = QueryOptions {
        deadline: Duration::from_secs(MAX_ASSERTION_SECS - 60),
        require_all: false,
        purpose: record.purpose.clone(),
        roles: record.roles.clone(),
        user: record.user.clone(),
        organisation: record.organisation.clone(),
    };
    let assertion = crate::query::assertion(&t.key, &options, peer)
        .map_err(|e| Failure::Final(e.to_string()))?;
    let request = TransferRequest {
        dataset: record.dataset.clone(),
        agreement,
        view: record.view.clone(),
        format: record.format,
        offset: have,
        resume: resume.filter(|_| have > 0),
        assertion: ByteBuf::from(assertion),
        traceparent: crate::telemetry::traceparent(),
    };
    let stream = t
        .federation
        .open_stream(peer, allmende_protocol::version::TRANSFER)
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
    let mut io = stream.compat();
    write_frame(&mut io, &request)
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
    let reply: TransferReply =
        tokio::time::timeout(REPLY_TIMEOUT, read_frame(&mut io, MAX_TRANSFER_REPLY_BYTES))
            .await
            .map_err(|_| {
                Failure::Retry(format!(
                    "the provider did not answer within {REPLY_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| match e {
                FrameError::Invalid(_) => Failure::Final(format!("the provider's reply: {e}")),
                FrameError::Io(_) => Failure::Retry(e.to_string()),
            })?;
    let header_bytes = match reply {
        TransferReply::Header(bytes) => bytes,
        TransferReply::Denied(reason) => {
            return Err(Failure::Final(format!("the provider denied it: {reason}")));
        }
        TransferReply::Error(reason) => {
            return Err(Failure::Retry(format!("the provider failed: {reason}")));
        }
    };
    let header = check_header(t, peer, record, agreement, &header_bytes, have)?;
    record.size = Some(header.size);
    record.sha256 = Some(hex::encode(header.sha256));
    record.version = Some(header.version);
    record.rows = Some(header.rows);
    record.columns = header.columns.clone();
    record.header = Some(hex::encode(&header_bytes));
    record.received = header.offset;
    t.save(record).map_err(|e| Failure::Final(e.to_string()))?;

    let (received, digest) = receive(t, record, io.get_mut(), &part, &header).await?;
    if received < header.size {
        return Err(Failure::Retry(format!(
            "the connection broke after {received} of {} bytes",
            header.size
        )));
    }
    if digest != header.sha256 {
        let _ = tokio::fs::remove_file(&part).await;
        record.sha256 = None;
        record.received = 0;
        return Err(Failure::Retry(
            "the file assembled does not match the provider's signed SHA-256; starting again"
                .into(),
        ));
    }
    let done = t.complete_path(record);
    if let Some(dir) = done.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Failure::Final(e.to_string()))?;
    }
    tokio::fs::rename(&part, &done)
        .await
        .map_err(|e| Failure::Final(e.to_string()))?;
    Ok(())
}

/// Checks the provider's signed header against what was asked and what is on disk.
fn check_header(
    t: &Transfers,
    peer: PeerId,
    record: &TransferRecord,
    agreement: [u8; 32],
    bytes: &[u8],
    have: u64,
) -> Result<TransferHeader, Failure> {
    let bad = |m: &str| Failure::Final(format!("the provider's header is invalid: {m}"));
    let signed: Signed<TransferHeader> =
        Signed::from_bytes(bytes, MAX_TRANSFER_REPLY_BYTES).map_err(|e| bad(&e.to_string()))?;
    if signed.signer() != peer {
        return Err(bad("not signed by the provider"));
    }
    let h = signed.into_payload();
    if h.consumer != t.me {
        return Err(bad("made for another node"));
    }
    if h.dataset != record.dataset || h.agreement != agreement || h.format != record.format {
        return Err(bad("names another dataset, agreement or format"));
    }
    if h.size > t.max_bytes {
        return Err(Failure::Final(format!(
            "the file has {} bytes, more than this node accepts ({})",
            h.size, t.max_bytes
        )));
    }
    if h.offset != 0 && (h.offset != have || record.sha256 != Some(hex::encode(h.sha256))) {
        return Err(bad("resumes at a point this node did not ask for"));
    }
    if !record.view.columns.is_empty() && h.columns != record.view.columns {
        return Err(bad("serves other columns than asked"));
    }
    // A whole dataset in Parquet is the owner's stored file: its checksum is in the owner's
    // signed catalog entry of that version.
    if h.format == TransferFormat::Parquet
        && record.view.filter.is_empty()
        && let Some(announced) = announced_checksum(t, peer, &h)
        && announced != h.sha256
    {
        return Err(bad(
            "its SHA-256 differs from the checksum in the owner's signed catalog entry",
        ));
    }
    Ok(h)
}

/// The Parquet checksum the owner's signed catalog entry announces for this version of the
/// dataset, when this node has that entry and the header covers every column of it.
fn announced_checksum(t: &Transfers, peer: PeerId, h: &TransferHeader) -> Option<[u8; 32]> {
    let entries = t.federation.log().latest_entries().ok()?;
    let (entry, _) = entries.iter().find(|(e, _)| {
        let e = e.payload();
        e.publisher == peer && e.dataset.id == h.dataset && e.dataset.version == h.version
    })?;
    let record = &entry.payload().dataset;
    let d = record.distributions.first()?;
    if d.byte_size != h.size || !d.checksum.algorithm.eq_ignore_ascii_case("sha256") {
        // Not the stored file (a column subset), or announced with another algorithm.
        return None;
    }
    hex32(&d.checksum.value)
}

/// Appends the stream's bytes to the part file (cut to the header's offset first) until the
/// announced size; returns the size on disk and the SHA-256 of the whole file. A blocking thread
/// writes and hashes while this task receives, fed through a small channel of [`BATCH`]-sized
/// buffers that it hands back for reuse (bounded memory, few wake-ups, no zeroing).
async fn receive<R>(
    t: &Transfers,
    record: &mut TransferRecord,
    io: &mut R,
    part: &std::path::Path,
    header: &TransferHeader,
) -> Result<(u64, [u8; 32]), Failure>
where
    R: futures::AsyncRead + Unpin,
{
    let io_err = |e: std::io::Error| Failure::Final(format!("writing the file: {e}"));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<u8>, usize)>(8);
    let (give_back, mut given_back) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let path = part.to_path_buf();
    let offset = header.offset;
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, [u8; 32])> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        file.set_len(offset)?;
        let (prefix, mut hasher) = super::view::hasher_of(&path, offset)?;
        if prefix != offset {
            return Err(std::io::Error::other(
                "the partial file shrank while resuming",
            ));
        }
        let mut written = offset;
        let mut flushed = offset;
        while let Some((buf, len)) = rx.blocking_recv() {
            let chunk = &buf[..len];
            file.write_all(chunk)?;
            hasher.update(chunk);
            written += len as u64;
            let _ = give_back.send(buf);
            if written - flushed >= WRITEBACK_EVERY {
                start_writeback(&file, flushed, written - flushed);
                flushed = written;
            }
        }
        file.sync_all()?;
        Ok((written, hasher.finalize().into()))
    });
    let mut received = header.offset;
    let mut saved = received;
    // Read straight into initialised memory: a tokio `read_buf` through the compat layer would
    // zero the whole spare capacity on every poll. At most 10 buffers exist: 8 queued, one being
    // written, one being filled.
    let mut next_buf = move || given_back.try_recv().unwrap_or_else(|_| vec![0u8; BATCH]);
    let mut buf = next_buf();
    let mut filled = 0;
    let broke = loop {
        let left = header.size - received;
        let n = match tokio::time::timeout(READ_STALL, io.read(&mut buf[filled..])).await {
            Ok(Ok(0)) if left == 0 => break None,
            Ok(Ok(0)) => break Some("the provider closed the stream early".to_owned()),
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) if left == 0 => break None,
            Ok(Err(e)) => break Some(e.to_string()),
            Err(_) => break Some(format!("no bytes for {READ_STALL:?}")),
        };
        if n as u64 > left {
            return Err(Failure::Final(
                "the provider sent more bytes than its header announced".into(),
            ));
        }
        filled += n;
        received += n as u64;
        if filled == BATCH || received == header.size {
            let full = std::mem::replace(&mut buf, next_buf());
            if tx.send((full, std::mem::take(&mut filled))).await.is_err() {
                // The writer stopped: its error follows.
                break None;
            }
        }
        if received - saved >= SAVE_EVERY {
            record.received = received;
            let _ = t.save(record);
            saved = received;
        }
    };
    if filled > 0 {
        // Bytes that arrived before the stream broke are kept for the next attempt.
        let _ = tx.send((buf, filled)).await;
    }
    drop(tx);
    let (written, digest) = writer
        .await
        .map_err(|e| Failure::Final(e.to_string()))?
        .map_err(io_err)?;
    record.received = written;
    if let Some(reason) = broke {
        tracing::info!(written, %reason, "transfer stream ended early");
    }
    Ok((written, digest))
}

/// Asks the kernel to start writing `len` bytes from `offset` of `file` to disk without waiting
/// for them, so the `fsync` at the end finds little left to do (a hint: errors are ignored, the
/// `fsync` reports them).
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd as _;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range(2) on an open descriptor this function borrows; it touches no
    // memory of this process.
    unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}
