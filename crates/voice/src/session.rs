//! One call's media, both ways, on a UDP socket: a frame from the source every 20 ms,
//! encoded and sealed, to the peer, directly or through a relay; what arrives opened,
//! buffered and played into the sink every 20 ms. Datagrams that do not open with the
//! call's keys are dropped and counted, whoever sends them. On the direct path the peer's
//! address is the last one a packet that opened came from (it may move: a NAT rebinding,
//! another interface).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{Mutex, watch};

use crate::VoiceError;
use crate::codec::{FRAME, OpusDecoder, OpusEncoder};
use crate::jitter::{JitterBuffer, Out};
use crate::media::{Keys, Receiver, Sender};
use crate::relay::{Token, wrap};

/// Where frames come from: a file, a device.
pub trait Source: Send + 'static {
    /// The next 20 ms; None once it has no more (silence is sent from then on).
    fn next_frame(&mut self) -> Option<Vec<i16>>;
}

/// Where frames go.
pub trait Sink: Send + 'static {
    fn play(&mut self, frame: &[i16]);
}

/// PCM from memory (a WAV file read whole).
pub struct Samples {
    pcm: Vec<i16>,
    at: usize,
}

impl Samples {
    pub fn new(pcm: Vec<i16>) -> Samples {
        Samples { pcm, at: 0 }
    }
}

impl Source for Samples {
    fn next_frame(&mut self) -> Option<Vec<i16>> {
        if self.at >= self.pcm.len() {
            return None;
        }
        let end = (self.at + FRAME).min(self.pcm.len());
        let mut f = self.pcm[self.at..end].to_vec();
        f.resize(FRAME, 0);
        self.at = end;
        Some(f)
    }
}

/// Keeps what is played (a recording).
#[derive(Clone, Default)]
pub struct Recording(pub Arc<std::sync::Mutex<Vec<i16>>>);

impl Sink for Recording {
    fn play(&mut self, frame: &[i16]) {
        self.0.lock().expect("recording").extend_from_slice(frame);
    }
}

/// How to reach the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// Straight to this address (replaced by where its packets come from).
    Direct(SocketAddr),
    /// Through a relay, with this side's token.
    Relay { relay: SocketAddr, token: Token },
}

#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// Datagrams that did not open (tampered, replayed, foreign, garbage).
    pub dropped: AtomicU64,
}

/// A running call's media.
pub struct Session {
    socket: Arc<UdpSocket>,
    path: Arc<Mutex<Path>>,
    pub counters: Arc<Counters>,
}

pub struct Setup {
    /// Keys of what this side sends, and of what it receives.
    pub send: Keys,
    pub receive: Keys,
    pub path: Path,
    pub bitrate: i32,
}

impl Session {
    pub fn new(socket: UdpSocket, path: Path) -> Session {
        Session {
            socket: Arc::new(socket),
            path: Arc::new(Mutex::new(path)),
            counters: Arc::new(Counters::default()),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Moves the call to another path (the old one died).
    pub async fn switch(&self, path: Path) {
        *self.path.lock().await = path;
    }

    /// Runs until `stop` turns true: sends `source`, plays into `sink`.
    pub async fn run(
        &self,
        setup: Setup,
        mut source: impl Source,
        mut sink: impl Sink,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), VoiceError> {
        let mut tx = Sender::new(&setup.send, rand::random())?;
        let mut rx = Receiver::new(&setup.receive)?;
        let mut enc = OpusEncoder::new(setup.bitrate, 5)?;
        let mut dec = OpusDecoder::new()?;
        let mut jitter = JitterBuffer::new();
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut buf = vec![0u8; 2048];
        loop {
            tokio::select! {
                // (The guard wait_for returns is not Send: dropped inside.)
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return Ok(()),
                _ = tick.tick() => {
                    let frame = source.next_frame().unwrap_or_else(|| vec![0; FRAME]);
                    let packet = tx.packet(&enc.encode(&frame)?)?;
                    self.send(&packet).await;
                    let played = match jitter.pop() {
                        Out::Frame(p) => dec.decode(&p)?,
                        Out::Recover(p) => dec.recover(&p)?,
                        Out::Conceal => dec.conceal()?,
                        Out::Wait => vec![0; FRAME],
                    };
                    sink.play(&played);
                }
                r = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = r else { continue };
                    match rx.open(&buf[..n]) {
                        Ok(got) => {
                            self.counters.received.fetch_add(1, Ordering::Relaxed);
                            self.latch(from).await;
                            let at = start.elapsed().as_secs_f64() * 1000.0;
                            jitter.push(got.seq, got.timestamp, at, got.payload);
                        }
                        Err(_) => {
                            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }

    async fn send(&self, packet: &[u8]) {
        let path = self.path.lock().await.clone();
        let sent = match path {
            Path::Direct(to) => self.socket.send_to(packet, to).await,
            Path::Relay { relay, token } => self.socket.send_to(&wrap(&token, packet), relay).await,
        };
        if sent.is_ok() {
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// On the direct path, answers go where the peer's packets come from.
    async fn latch(&self, from: SocketAddr) {
        let mut path = self.path.lock().await;
        if let Path::Direct(to) = &mut *path
            && *to != from
        {
            *to = from;
        }
    }
}
