//! Streams inside a circuit, the same at the client and at the exit: bytes read from one
//! side go out as DATA cells within the send window; DATA cells that come in are written
//! to the other side, and every [`SENDME_EVERY`] of them delivered opens the peer's window
//! again (SENDME). END closes a stream in both directions, as in Tor: there is no
//! half-close.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};

use crate::cell::{Body, EndReason, RELAY_DATA, RelayCommand, RelayMsg};

/// DATA cells a side may send on one stream before the peer's SENDME (1 MiB).
pub const WINDOW: usize = 256;
/// DATA cells delivered per SENDME.
pub const SENDME_EVERY: usize = 128;

/// What a circuit's writer task sends toward the client (at a relay) or into the
/// circuit (at the client).
pub enum Out {
    /// A cell from further along, to which a relay adds its layer.
    Wrap(Box<Body>),
    /// A message this side writes: to the client (relay), to the last hop (client).
    Msg(RelayMsg),
    /// Ends the circuit on this link.
    Destroy,
}

/// One stream's end of the window: DATA from the circuit, and permits to send.
pub struct StreamSlot {
    pub data: mpsc::Sender<Vec<u8>>,
    pub window: Arc<Semaphore>,
}

/// A new stream's two ends: the slot the circuit's reader delivers to (its window is
/// what the pump sends within), and the DATA the pump writes out.
pub fn slot() -> (StreamSlot, mpsc::Receiver<Vec<u8>>) {
    let (data, rx) = mpsc::channel(WINDOW);
    let window = Arc::new(Semaphore::new(WINDOW));
    (StreamSlot { data, window }, rx)
}

impl StreamSlot {
    /// Hands a DATA payload on. `false` if the peer sent past its window (it must go).
    pub fn deliver(&self, data: Vec<u8>) -> bool {
        !matches!(
            self.data.try_send(data),
            Err(mpsc::error::TrySendError::Full(_))
        )
    }

    /// A SENDME: `false` if it would open the window past its size.
    pub fn sendme(&self) -> bool {
        if self.window.available_permits() + SENDME_EVERY > WINDOW {
            return false;
        }
        self.window.add_permits(SENDME_EVERY);
        true
    }
}

/// The far end of a new stream (an exit, an onion service): `connect` reaches the
/// destination; then CONNECTED and the pump, or END with the reason it failed.
pub async fn answer_begin<S, F>(
    id: u16,
    connect: F,
    incoming: mpsc::Receiver<Vec<u8>>,
    window: Arc<Semaphore>,
    out: mpsc::Sender<Out>,
) where
    S: AsyncRead + AsyncWrite,
    F: std::future::Future<Output = Result<S, EndReason>>,
{
    match connect.await {
        Ok(io) => {
            let m = RelayMsg::new(RelayCommand::Connected, id, Vec::new());
            if out.send(Out::Msg(m)).await.is_ok() {
                pump(id, io, incoming, window, out).await;
            }
        }
        Err(reason) => {
            let _ = out.send(Out::Msg(end(id, reason))).await;
        }
    }
}

/// END on stream `id` for `reason`.
pub fn end(id: u16, reason: EndReason) -> RelayMsg {
    RelayMsg::new(RelayCommand::End, id, vec![reason as u8])
}

/// Moves bytes between `io` and the circuit until either side ends the stream.
pub async fn pump<S: AsyncRead + AsyncWrite>(
    id: u16,
    io: S,
    mut incoming: mpsc::Receiver<Vec<u8>>,
    window: Arc<Semaphore>,
    out: mpsc::Sender<Out>,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let up = async {
        let mut buf = vec![0u8; RELAY_DATA];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match window.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => return,
            }
            let m = RelayMsg::new(RelayCommand::Data, id, buf[..n].to_vec());
            if out.send(Out::Msg(m)).await.is_err() {
                return;
            }
        }
        let _ = out.send(Out::Msg(end(id, EndReason::Done))).await;
    };
    let down = async {
        let mut delivered = 0;
        while let Some(data) = incoming.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
            delivered += 1;
            if delivered == SENDME_EVERY {
                delivered = 0;
                let m = RelayMsg::new(RelayCommand::Sendme, id, Vec::new());
                if out.send(Out::Msg(m)).await.is_err() {
                    break;
                }
            }
        }
        let _ = wr.shutdown().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
