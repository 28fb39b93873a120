//! A write buffer that turns a muxer's small writes into whole TLS records.
//!
//! yamux writes a frame as two writes, its 12-byte header and then the body, and asks
//! for a flush after each frame. A TLS stream seals every write as a record of its own and
//! sends it at once, so a small message left as two records in two `send` calls (two
//! packets, two wake-ups of the reader). Noise buffers until a flush by itself; TLS needs
//! this in front of it.
//!
//! Writes smaller than one record collect here until a flush or a full record. A large
//! write tops up what is collected to one record and the rest of it goes straight
//! through, so a bulk stream is copied here at most one record per frame.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::{AsyncRead, AsyncWrite};

/// The largest plaintext of one TLS record.
pub const RECORD: usize = 16 * 1024;

#[derive(Debug)]
pub struct Coalesce<S> {
    inner: S,
    pending: Vec<u8>,
    /// How much of `pending` the inner stream has taken.
    sent: usize,
}

impl<S> Coalesce<S> {
    pub fn new(inner: S) -> Self {
        Coalesce {
            inner,
            pending: Vec::with_capacity(RECORD),
            sent: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    fn poll_send_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.len() == RECORD {
            ready!(this.poll_send_pending(cx))?;
        }
        if this.pending.is_empty() && buf.len() >= RECORD {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        let n = buf.len().min(RECORD - this.pending.len());
        this.pending.extend_from_slice(&buf[..n]);
        if this.pending.len() == RECORD {
            // Start sending now; what the socket cannot take yet goes out on the next
            // write or flush.
            if let Poll::Ready(Err(e)) = this.poll_send_pending(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_pending(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::AsyncWriteExt;
    use futures::executor::block_on;

    /// Records every write the inner stream receives, taking at most `cap` bytes of each.
    #[derive(Default)]
    struct Writes {
        seen: Vec<Vec<u8>>,
        flushes: usize,
        cap: usize,
    }

    impl AsyncWrite for Writes {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.cap);
            self.get_mut().seen.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn writer(cap: usize) -> Coalesce<Writes> {
        Coalesce::new(Writes {
            cap,
            ..Writes::default()
        })
    }

    #[test]
    fn a_small_frame_goes_out_as_one_write_at_flush() {
        let mut w = writer(usize::MAX);
        block_on(async {
            w.write_all(&[1; 12]).await.unwrap();
            w.write_all(&[2; 32]).await.unwrap();
            assert!(w.get_ref().seen.is_empty(), "nothing sent before the flush");
            w.flush().await.unwrap();
        });
        let inner = w.get_ref();
        assert_eq!(inner.seen.len(), 1);
        assert_eq!(inner.seen[0].len(), 44);
        assert_eq!(inner.flushes, 1);
    }

    #[test]
    fn a_large_body_tops_up_one_record_then_passes_through() {
        let mut w = writer(usize::MAX);
        let body: Vec<u8> = (0..256 * 1024).map(|i| i as u8).collect();
        block_on(async {
            w.write_all(&[9; 12]).await.unwrap();
            w.write_all(&body).await.unwrap();
            w.flush().await.unwrap();
        });
        let inner = w.get_ref();
        let lens: Vec<usize> = inner.seen.iter().map(Vec::len).collect();
        assert_eq!(lens, [RECORD, body.len() - (RECORD - 12)]);
        let all: Vec<u8> = inner.seen.concat();
        assert_eq!(&all[..12], &[9; 12]);
        assert_eq!(&all[12..], &body[..]);
    }

    #[test]
    fn bytes_keep_their_order_when_the_inner_stream_takes_little_at_a_time() {
        let mut w = writer(1000);
        let a: Vec<u8> = (0..5000).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..70_000).map(|i| (i % 241) as u8).collect();
        block_on(async {
            w.write_all(&a).await.unwrap();
            w.write_all(&b).await.unwrap();
            w.write_all(&[7; 3]).await.unwrap();
            w.close().await.unwrap();
        });
        let all: Vec<u8> = w.get_ref().seen.concat();
        assert_eq!(all.len(), a.len() + b.len() + 3);
        assert_eq!(&all[..a.len()], &a[..]);
        assert_eq!(&all[a.len()..a.len() + b.len()], &b[..]);
        assert_eq!(&all[a.len() + b.len()..], &[7; 3]);
    }
}
