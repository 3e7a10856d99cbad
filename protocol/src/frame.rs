//! Length-prefixed frames for the stream protocols (transfers, query answers): a 4-byte
//! big-endian length followed by that many bytes of deterministic CBOR. A reader checks the
//! length against its bound before reading the body.

use serde::Serialize;

/// A frame's length prefix, checked against `max`.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// A value as one frame: length prefix and deterministic CBOR.
pub fn frame<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let body = crate::cbor::to_vec(value).map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: body.len(),
        max: u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Errors of framing.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced length exceeds the bound.
    #[error("a frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The value could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
}
