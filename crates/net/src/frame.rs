//! Length-prefixed frames on service streams: a 4-byte big-endian length, then the body.
//!
//! The body is read as it arrives, never allocated from the length alone: a peer that
//! claims a large frame and sends a few bytes costs what it sent, not what it claimed.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
}

/// Reads one frame of at most `max` bytes; `Ok(None)` at a clean end of stream before
/// a frame starts. A stream that ends inside a frame is an `UnexpectedEof` error.
pub async fn read<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = Vec::new();
    (&mut *r).take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Some(body))
}

/// Writes `body` as one frame (refused over `max` bytes) and flushes.
pub async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    body: &[u8],
    max: usize,
) -> Result<(), FrameError> {
    if body.len() > max {
        return Err(FrameError::TooLarge {
            len: body.len(),
            max,
        });
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// Yields its bytes, then ends; remembers the largest buffer it was asked to fill.
    struct Recording {
        data: Vec<u8>,
        at: usize,
        largest_ask: usize,
    }

    impl AsyncRead for Recording {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            self.largest_ask = self.largest_ask.max(buf.len());
            let n = buf.len().min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    fn stream(bytes: &[u8]) -> Recording {
        Recording {
            data: bytes.to_vec(),
            at: 0,
            largest_ask: 0,
        }
    }

    #[test]
    fn a_claimed_length_is_not_allocated_before_the_bytes_come() {
        // Claims 16 MiB, sends 10 bytes.
        let mut bytes = (16u32 << 20).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[7; 10]);
        let mut s = stream(&bytes);
        let r = futures::executor::block_on(read(&mut s, 16 << 20));
        assert!(
            matches!(r, Err(FrameError::Io(ref e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
            "{r:?}"
        );
        assert!(
            s.largest_ask < 64 * 1024,
            "asked to fill {} bytes",
            s.largest_ask
        );
    }

    #[test]
    fn frames_read_back_and_limits_hold() {
        let mut bytes = 3u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        bytes.extend_from_slice(&100u32.to_be_bytes());
        let mut s = stream(&bytes);
        let got = futures::executor::block_on(read(&mut s, 64)).unwrap();
        assert_eq!(got.as_deref(), Some(&b"abc"[..]));
        let r = futures::executor::block_on(read(&mut s, 64));
        assert!(
            matches!(r, Err(FrameError::TooLarge { len: 100, max: 64 })),
            "{r:?}"
        );
        let mut empty = stream(b"");
        assert!(
            futures::executor::block_on(read(&mut empty, 64))
                .unwrap()
                .is_none()
        );
    }
}
