//! Reading and writing [`allmende_protocol::frame`]s on a libp2p stream.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use allmende_protocol::frame::{frame, frame_len};

/// Reads one frame of at most `max` bytes; `Ok(None)` when the stream ends before a frame.
pub(crate) async fn read_frame_or_end<T, R>(io: &mut R, max: usize) -> Result<Option<T>, String>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; 4];
    match io.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("reading a frame: {e}")),
    }
    let len = frame_len(prefix, max).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    io.read_exact(&mut body)
        .await
        .map_err(|e| format!("reading a frame: {e}"))?;
    allmende_protocol::cbor::from_slice(&body, max)
        .map(Some)
        .map_err(|e| format!("a malformed frame: {e}"))
}

/// Reads one frame of at most `max` bytes.
pub(crate) async fn read_frame<T, R>(io: &mut R, max: usize) -> Result<T, String>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    read_frame_or_end(io, max)
        .await?
        .ok_or_else(|| "the stream ended before a frame".to_owned())
}

/// Writes one frame and flushes it.
pub(crate) async fn write_frame<T, W>(io: &mut W, value: &T) -> Result<(), String>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let bytes = frame(value).map_err(|e| e.to_string())?;
    io.write_all(&bytes).await.map_err(|e| e.to_string())?;
    io.flush().await.map_err(|e| e.to_string())
}
