//! Length-prefixed Kafka frames: a 4-byte big-endian size, then the message.
//!
//! The size is checked against the configured maximum before the buffer is
//! allocated, so a forged length cannot make the broker allocate memory.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a frame could not be read. Every variant closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {size} is outside 1..={max} bytes")]
    BadSize { size: i64, max: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one frame. `Ok(None)` means the peer closed the connection cleanly
/// between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_size: usize,
) -> Result<Option<BytesMut>, FrameError> {
    let mut len_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut len_buf[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let size = i32::from_be_bytes(len_buf);
    if size <= 0 || size as usize > max_size {
        return Err(FrameError::BadSize {
            size: size as i64,
            max: max_size,
        });
    }
    let mut buf = BytesMut::zeroed(size as usize);
    reader.read_exact(&mut buf).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_frame_and_then_clean_eof() {
        let data = [0u8, 0, 0, 3, 1, 2, 3];
        let mut r = &data[..];
        let f = read_frame(&mut r, 10).await.unwrap().unwrap();
        assert_eq!(&f[..], &[1, 2, 3]);
        assert!(read_frame(&mut r, 10).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rejects_oversize_and_negative_lengths_without_reading() {
        let data = [0x7f, 0xff, 0xff, 0xff];
        let mut r = &data[..];
        assert!(matches!(
            read_frame(&mut r, 1024).await,
            Err(FrameError::BadSize { .. })
        ));
        let data = [0xff, 0xff, 0xff, 0xff];
        let mut r = &data[..];
        assert!(matches!(
            read_frame(&mut r, 1024).await,
            Err(FrameError::BadSize { .. })
        ));
    }

    #[tokio::test]
    async fn truncated_frames_are_errors() {
        let data = [0u8, 0, 0, 9, 1, 2];
        let mut r = &data[..];
        assert!(matches!(
            read_frame(&mut r, 1024).await,
            Err(FrameError::Truncated)
        ));
        let data = [0u8, 0];
        let mut r = &data[..];
        assert!(matches!(
            read_frame(&mut r, 1024).await,
            Err(FrameError::Truncated)
        ));
    }
}
