//! Streams inside a circuit, the same at both of its ends (the client; the exit or the
//! onion service): bytes read from one side go out as DATA cells when the circuit's
//! congestion window has room ([`crate::congestion`]); DATA cells that come in are
//! written to the other side. END closes a stream in both directions, as in Tor: there is
//! no half-close.
//!
//! A stream whose reader falls behind is paused, not its circuit (as Tor's proposal
//! 344): once [`XOFF_AT`] cells wait here to be written, XOFF asks the other end to stop
//! sending on that stream; XON, once they are down to [`XON_AT`], to go on. The circuit's
//! window is acknowledged as cells arrive, so the other streams go on meanwhile.
//!
//! What a receiver holds is bounded whatever the other end does: a stream at most
//! [`STREAM_BUFFER`] cells (XOFF_AT and what an honest sender can send before the XOFF
//! reaches it: its window, twice over), a circuit at most [`CIRCUIT_BUFFER`]. More ends
//! the circuit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

use crate::cell::{Body, EndReason, RELAY_DATA, RelayCommand, RelayMsg};
use crate::congestion::{MAX_WINDOW, Window};
use crate::relay::MAX_STREAMS;

/// Cells waiting on one stream at which this side sends XOFF.
pub const XOFF_AT: usize = 32;
/// ... and at which, after an XOFF, it sends XON.
pub const XON_AT: usize = 16;
/// The most cells a stream may have waiting here.
pub const STREAM_BUFFER: usize = XOFF_AT + 2 * MAX_WINDOW as usize;
/// The most cells a circuit's streams may have waiting here together: each stream up
/// to its XOFF, and what the window lets the other end send before the XOFFs reach it.
pub const CIRCUIT_BUFFER: usize = MAX_STREAMS * XOFF_AT + 2 * MAX_WINDOW as usize;

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

/// SENDMEs on their way out of this end, which its writer sends ahead of everything
/// else. They do not wait in the writer's queue with DATA: the circuit's reader, which
/// sends them, must never wait on its writer, or both ends of a busy circuit could wait
/// on each other through full links (each end's reader blocked by its writer, each
/// writer by the other end's reader). An honest other end earns at most a window's
/// worth ([`MAX_CONTROL`]); more queued ends the circuit.
#[derive(Clone)]
pub struct Control {
    tx: mpsc::UnboundedSender<RelayMsg>,
    queued: Arc<AtomicUsize>,
}

/// The writer's end of [`Control`].
pub struct ControlRx {
    rx: mpsc::UnboundedReceiver<RelayMsg>,
    queued: Arc<AtomicUsize>,
}

/// SENDMEs one end may have queued: twice what the largest window earns.
pub const MAX_CONTROL: usize = 2 * (MAX_WINDOW / crate::congestion::SENDME_EVERY) as usize;

pub fn control() -> (Control, ControlRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Control {
            tx,
            queued: queued.clone(),
        },
        ControlRx { rx, queued },
    )
}

impl Control {
    /// Queues a circuit SENDME; `false` if [`MAX_CONTROL`] already wait (the other end
    /// sent far past its window without reading: it must go).
    pub fn sendme(&self) -> bool {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_CONTROL {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let m = RelayMsg::new(RelayCommand::Sendme, 0, Vec::new());
        if self.tx.send(m).is_err() {
            // The writer is gone: so is the circuit.
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        true
    }
}

impl ControlRx {
    fn taken(&self, m: Option<RelayMsg>) -> Option<RelayMsg> {
        if m.is_some() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        m
    }

    pub fn try_next(&mut self) -> Option<RelayMsg> {
        let m = self.rx.try_recv().ok();
        self.taken(m)
    }

    pub async fn next(&mut self) -> Option<RelayMsg> {
        let m = self.rx.recv().await;
        self.taken(m)
    }
}

/// What a writer task sends next: a SENDME if one waits, else the next from its queue
/// (after flushing `w` if it has to wait for one). `None` once the queue is closed or
/// `w` failed.
pub async fn next_out<W: futures::AsyncWrite + Unpin>(
    control: &mut ControlRx,
    rx: &mut mpsc::Receiver<Out>,
    w: &mut crate::link::BufWriter<W>,
) -> Option<Out> {
    if let Some(m) = control.try_next() {
        return Some(Out::Msg(m));
    }
    tokio::select! {
        biased;
        Some(m) = control.next() => Some(Out::Msg(m)),
        m = crate::link::next_or_flush(rx, w) => m,
    }
}

/// What one end of a circuit shares among its streams: the congestion window their
/// DATA goes out within, and the cells waiting here to be written, all streams together.
#[derive(Clone, Default)]
pub struct Shared {
    pub window: Arc<Window>,
    waiting: Arc<AtomicUsize>,
}

impl Shared {
    pub fn new(window: Window) -> Shared {
        Shared {
            window: Arc::new(window),
            waiting: Arc::default(),
        }
    }
}

/// One stream's flow control, between the circuit's reader and the stream's pump.
struct Flow {
    /// Cells waiting here on this stream, and on its whole circuit.
    waiting: AtomicUsize,
    circuit: Arc<AtomicUsize>,
    /// The other end sent XOFF and no XON since.
    paused: AtomicBool,
    resumed: Notify,
    /// This stream's cells waiting here reached XOFF_AT.
    crowded: Notify,
}

/// A DATA payload waiting to be written, counted against its stream's and its
/// circuit's buffers until it is (or is dropped).
pub struct Waiting {
    data: Vec<u8>,
    flow: Arc<Flow>,
}

impl Waiting {
    fn new(data: Vec<u8>, flow: &Arc<Flow>) -> Waiting {
        flow.waiting.fetch_add(1, Ordering::Relaxed);
        flow.circuit.fetch_add(1, Ordering::Relaxed);
        Waiting {
            data,
            flow: flow.clone(),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.flow.waiting.fetch_sub(1, Ordering::Relaxed);
        self.flow.circuit.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The circuit reader's end of one stream.
pub struct StreamSlot {
    data: mpsc::Sender<Waiting>,
    flow: Arc<Flow>,
}

/// The pump's end of one stream: what arrives for it, and what it sends within.
pub struct Incoming {
    data: mpsc::Receiver<Waiting>,
    flow: Arc<Flow>,
    window: Arc<Window>,
}

/// A new stream on the circuit whose end `shared` is.
pub fn slot(shared: &Shared) -> (StreamSlot, Incoming) {
    let (data, rx) = mpsc::channel(STREAM_BUFFER);
    let flow = Arc::new(Flow {
        waiting: AtomicUsize::new(0),
        circuit: shared.waiting.clone(),
        paused: AtomicBool::new(false),
        resumed: Notify::new(),
        crowded: Notify::new(),
    });
    let incoming = Incoming {
        data: rx,
        flow: flow.clone(),
        window: shared.window.clone(),
    };
    (StreamSlot { data, flow }, incoming)
}

impl StreamSlot {
    /// Hands a DATA payload on. `false` if the other end sent past what flow control
    /// lets it (it must go).
    pub fn deliver(&self, data: Vec<u8>) -> bool {
        if self.flow.circuit.load(Ordering::Relaxed) >= CIRCUIT_BUFFER {
            return false;
        }
        match self.data.try_send(Waiting::new(data, &self.flow)) {
            Err(mpsc::error::TrySendError::Full(_)) => false,
            // The stream's pump is gone: the payload is dropped, as after END.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
            Ok(()) => {
                if self.flow.waiting.load(Ordering::Relaxed) >= XOFF_AT {
                    self.flow.crowded.notify_one();
                }
                true
            }
        }
    }

    /// XOFF (`false`) or XON (`true`) from the other end.
    pub fn flow(&self, go_on: bool) {
        self.flow.paused.store(!go_on, Ordering::Relaxed);
        if go_on {
            self.flow.resumed.notify_one();
        }
    }
}

/// The far end of a new stream (an exit, an onion service): `connect` reaches the
/// destination; then CONNECTED and the pump, or END with the reason it failed.
pub async fn answer_begin<S, F>(id: u16, connect: F, incoming: Incoming, out: mpsc::Sender<Out>)
where
    S: AsyncRead + AsyncWrite,
    F: std::future::Future<Output = Result<S, EndReason>>,
{
    match connect.await {
        Ok(io) => {
            let m = RelayMsg::new(RelayCommand::Connected, id, Vec::new());
            if out.send(Out::Msg(m)).await.is_ok() {
                pump(id, io, incoming, out).await;
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
    incoming: Incoming,
    out: mpsc::Sender<Out>,
) {
    let Incoming {
        data: mut incoming,
        flow,
        window,
    } = incoming;
    let (mut rd, mut wr) = tokio::io::split(io);
    let say = |command| Out::Msg(RelayMsg::new(command, id, Vec::new()));
    let up = async {
        let mut buf = vec![0u8; RELAY_DATA];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            loop {
                let resumed = flow.resumed.notified();
                tokio::pin!(resumed);
                resumed.as_mut().enable();
                if !flow.paused.load(Ordering::Relaxed) {
                    break;
                }
                resumed.await;
            }
            if !window.take().await {
                return;
            }
            let m = RelayMsg::new(RelayCommand::Data, id, buf[..n].to_vec());
            if out.send(Out::Msg(m)).await.is_err() {
                return;
            }
        }
        let _ = out.send(Out::Msg(end(id, EndReason::Done))).await;
    };
    let down = async {
        let mut paused = false;
        while let Some(cell) = incoming.recv().await {
            // A reader that stops reading stops this write: the XOFF goes meanwhile.
            let written = {
                let write = wr.write_all(&cell.data);
                tokio::pin!(write);
                loop {
                    tokio::select! {
                        r = &mut write => break r.is_ok(),
                        _ = flow.crowded.notified(), if !paused => {
                            if flow.waiting.load(Ordering::Relaxed) >= XOFF_AT {
                                paused = true;
                                if out.send(say(RelayCommand::Xoff)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            };
            drop(cell);
            if !written {
                break;
            }
            if paused && flow.waiting.load(Ordering::Relaxed) <= XON_AT {
                paused = false;
                if out.send(say(RelayCommand::Xon)).await.is_err() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_holds_no_more_than_its_buffer_and_frees_what_it_writes() {
        let shared = Shared::default();
        let (slot, mut incoming) = slot(&shared);
        for _ in 0..STREAM_BUFFER {
            assert!(slot.deliver(vec![1]));
        }
        assert!(!slot.deliver(vec![1]), "past the stream's buffer");
        assert_eq!(shared.waiting.load(Ordering::Relaxed), STREAM_BUFFER);
        drop(incoming.data.try_recv().unwrap());
        assert!(slot.deliver(vec![1]), "room again once one was written");
        drop(incoming);
        assert_eq!(
            shared.waiting.load(Ordering::Relaxed),
            0,
            "all freed with the stream"
        );
        assert!(
            slot.deliver(vec![1]),
            "a closed stream's DATA is dropped, not refused"
        );
        assert_eq!(shared.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_circuits_streams_together_hold_no_more_than_its_buffer() {
        let shared = Shared::default();
        let streams: Vec<_> = (0..CIRCUIT_BUFFER.div_ceil(STREAM_BUFFER) + 1)
            .map(|_| slot(&shared))
            .collect();
        let mut taken = 0;
        'fill: for (slot, _) in &streams {
            for _ in 0..STREAM_BUFFER {
                if !slot.deliver(vec![0]) {
                    break 'fill;
                }
                taken += 1;
            }
        }
        assert_eq!(taken, CIRCUIT_BUFFER);
    }

    #[tokio::test(start_paused = true)]
    async fn xoff_and_xon_pause_and_resume_the_sending_side() {
        let shared = Shared::default();
        let (slot, incoming) = slot(&shared);
        let (out, mut sent) = mpsc::channel(16);
        let (mut app, ours) = tokio::io::duplex(1 << 16);
        let pump = tokio::spawn(pump(7, ours, incoming, out));
        slot.flow(false);
        app.write_all(b"held back").await.unwrap();
        // Paused time: this returns once every task is idle.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert!(sent.try_recv().is_err(), "nothing sent while paused");
        slot.flow(true);
        match sent.recv().await {
            Some(Out::Msg(m)) => {
                assert_eq!((m.command, m.stream), (RelayCommand::Data, 7));
                assert_eq!(m.data, b"held back");
            }
            _ => panic!("DATA once resumed"),
        }
        pump.abort();
    }

    #[tokio::test]
    async fn sendmes_go_out_ahead_of_queued_cells_and_are_bounded() {
        let (control, mut control_rx) = control();
        let (out, mut rx) = mpsc::channel(4);
        let mut w = crate::link::writer(futures::io::sink());
        out.send(Out::Msg(RelayMsg::new(RelayCommand::Data, 1, vec![1])))
            .await
            .unwrap();
        for _ in 0..MAX_CONTROL {
            assert!(control.sendme());
        }
        assert!(!control.sendme(), "more than any window earns");
        let first = next_out(&mut control_rx, &mut rx, &mut w).await;
        assert!(matches!(first, Some(Out::Msg(m)) if m.command == RelayCommand::Sendme));
        assert!(control.sendme(), "room again once one went out");
        for _ in 0..MAX_CONTROL {
            next_out(&mut control_rx, &mut rx, &mut w).await.unwrap();
        }
        let last = next_out(&mut control_rx, &mut rx, &mut w).await;
        assert!(matches!(last, Some(Out::Msg(m)) if m.command == RelayCommand::Data));
    }

    proptest::proptest! {
        /// Whatever the other end sends and however the pumps drain, a delivery is
        /// refused exactly when its stream or its circuit is full.
        #[test]
        fn deliveries_are_refused_exactly_at_the_bounds(
            steps in proptest::collection::vec((0usize..3, 0usize..2 * STREAM_BUFFER, proptest::bool::ANY), 1..40),
        ) {
            let shared = Shared::default();
            let mut streams: Vec<_> = (0..3).map(|_| slot(&shared)).collect();
            for (k, n, drain) in steps {
                let (slot, incoming) = &mut streams[k];
                if drain {
                    for _ in 0..n {
                        let _ = incoming.data.try_recv();
                    }
                    continue;
                }
                for _ in 0..n {
                    let before = (slot.flow.waiting.load(Ordering::Relaxed), shared.waiting.load(Ordering::Relaxed));
                    let full = before.0 >= STREAM_BUFFER || before.1 >= CIRCUIT_BUFFER;
                    proptest::prop_assert_eq!(slot.deliver(vec![0]), !full);
                }
                proptest::prop_assert!(shared.waiting.load(Ordering::Relaxed) <= CIRCUIT_BUFFER);
            }
        }
    }
}
