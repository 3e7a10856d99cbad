//! Reading and writing [`allmende_protocol::frame`]s on a libp2p stream.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use allmende_protocol::frame::{frame, frame_len};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed or ended in the middle of a frame.
    #[error("the stream failed: {0}")]
    Io(#[from] std::io::Error),
    /// The other side sent something that is not a valid frame (too large, malformed).
    #[error("an invalid frame: {0}")]
    Invalid(String),
}

/// Reads one frame of at most `max` bytes; `Ok(None)` when the stream ends before a frame.
pub async fn read_frame_or_end<T, R>(io: &mut R, max: usize) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; 4];
    match io.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = frame_len(prefix, max).map_err(|e| FrameError::Invalid(e.to_string()))?;
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    allmende_protocol::cbor::from_slice(&body, max)
        .map(Some)
        .map_err(|e| FrameError::Invalid(e.to_string()))
}

/// Reads one frame of at most `max` bytes.
pub async fn read_frame<T, R>(io: &mut R, max: usize) -> Result<T, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    read_frame_or_end(io, max).await?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the stream ended before a frame",
        )
        .into()
    })
}

/// Writes one frame and flushes it.
pub async fn write_frame<T, W>(io: &mut W, value: &T) -> Result<(), FrameError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let bytes = frame(value).map_err(|e| FrameError::Invalid(e.to_string()))?;
    io.write_all(&bytes).await?;
    Ok(io.flush().await?)
}
