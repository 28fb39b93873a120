//! One call's media, both ways, on one UDP socket: a frame from the source every 20 ms,
//! encoded and sealed, sent on the path in use; what arrives opened, buffered and played
//! into the sink every 20 ms. Datagrams that do not open with the call's keys are
//! dropped and counted, whoever sends them.
//!
//! A call has several routes to the other side: the peer's direct addresses (hole
//! punched: both sides send to each other's at once) and a leg through each relay it
//! was given. Media goes on one of them; every other route gets a sealed receiver
//! report every 60 ms, which keeps it open (NAT bindings, relay allocations) and tells
//! the other side it works. A route is alive while something opened from it in the last
//! 200 ms. When the one in use is not, the call moves to a live one (direct before
//! relay), so a dead relay or a lost direct path costs a few hundred milliseconds of
//! sound, not the call. Both sides decide alone; neither needs to tell the other.
//!
//! A direct route's address follows the source of what opens from the peer (a NAT
//! rebinding, another interface): SRTP authenticates it and the replay window stops a
//! captured packet from moving it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::VoiceError;
use crate::adapt::{Controller, Rate};
use crate::bwe::Estimator;
use crate::codec::{OpusDecoder, OpusEncoder, SampleRate};
use crate::jitter::{JitterBuffer, Out};
use crate::media::{Keys, Opened, Receiver, Report, Sender};
use crate::relay::{Token, wrap};
use crate::stats::Reception;

/// Where frames come from: a file, a device.
pub trait Source: Send + 'static {
    /// The next 20 ms, `len` samples at the call's rate; None once it has no more
    /// (silence is sent from then on).
    fn next_frame(&mut self, len: usize) -> Option<Vec<i16>>;
}

/// Where frames go.
pub trait Sink: Send + 'static {
    fn play(&mut self, frame: &[i16]);
}

/// PCM from memory (a WAV file read whole), at the call's rate.
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
    fn next_frame(&mut self, len: usize) -> Option<Vec<i16>> {
        if self.at >= self.pcm.len() {
            return None;
        }
        let end = (self.at + len).min(self.pcm.len());
        let mut f = self.pcm[self.at..end].to_vec();
        f.resize(len, 0);
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

/// One way to reach the other side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Route {
    /// Straight to this address.
    Direct(SocketAddr),
    /// Through a relay, with this side's token.
    Relay {
        relay: SocketAddr,
        #[serde(skip)]
        token: Token,
    },
}

impl Route {
    pub fn is_direct(&self) -> bool {
        matches!(self, Route::Direct(_))
    }

    /// Whether a datagram from `from` came this way.
    fn carries(&self, from: SocketAddr) -> bool {
        match self {
            Route::Direct(a) => *a == from,
            Route::Relay { relay, .. } => *relay == from,
        }
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Direct(a) => write!(f, "direct {a}"),
            Route::Relay { relay, .. } => write!(f, "relay {relay}"),
        }
    }
}

/// Routes a call keeps at most (the peer's candidates, relay legs, addresses latched).
pub const MAX_ROUTES: usize = 16;
/// A route is alive while something opened from it this recently (three probes).
const ALIVE: Duration = Duration::from_millis(200);
/// Standby routes get a report this often (ticks of 20 ms).
const PROBE_EVERY: u32 = 3;
/// The route in use gets one this often (it carries media besides).
const REPORT_EVERY: u32 = 50;
/// A report that cannot wait (the path's queue is filling) goes out at most this often.
const URGENT: u32 = 10;

#[derive(Debug)]
struct Leg {
    route: Route,
    heard: Option<Instant>,
}

#[derive(Debug)]
struct Routes {
    legs: Vec<Leg>,
    active: usize,
    switches: u32,
}

impl Routes {
    fn new(routes: Vec<Route>) -> Routes {
        let mut r = Routes {
            legs: Vec::new(),
            active: 0,
            switches: 0,
        };
        for route in routes {
            r.add(route);
        }
        r
    }

    fn add(&mut self, route: Route) -> usize {
        if let Some(i) = self.legs.iter().position(|l| l.route == route) {
            return i;
        }
        if self.legs.len() >= MAX_ROUTES {
            // Forget the direct route heard least recently (never the one in use).
            let active = self.active;
            if let Some(i) = self
                .legs
                .iter()
                .enumerate()
                .filter(|(i, l)| *i != active && l.route.is_direct())
                .min_by_key(|(_, l)| l.heard)
                .map(|(i, _)| i)
            {
                self.legs[i] = Leg { route, heard: None };
                return i;
            }
            return self.active;
        }
        self.legs.push(Leg { route, heard: None });
        self.legs.len() - 1
    }

    /// Something opened from `from` at `now`.
    fn heard(&mut self, from: SocketAddr, now: Instant) {
        let i = match self.legs.iter().position(|l| l.route.carries(from)) {
            Some(i) => i,
            // The peer from an address it did not offer (a NAT's): a direct route.
            None => {
                tracing::debug!(target: "nodus::voice", "the other side heard from {from}, an address it did not offer: a direct route");
                self.add(Route::Direct(from))
            }
        };
        if let Some(l) = self.legs.get_mut(i) {
            l.heard = Some(now);
        }
    }

    fn alive(&self, i: usize, now: Instant) -> bool {
        self.legs[i]
            .heard
            .is_some_and(|h| now.saturating_duration_since(h) < ALIVE)
    }

    /// Moves to a better route when there is one; true when it moved.
    fn choose(&mut self, now: Instant) -> bool {
        if self.legs.is_empty() {
            return false;
        }
        let current_ok = self.alive(self.active, now);
        let direct_alive =
            (0..self.legs.len()).any(|i| self.legs[i].route.is_direct() && self.alive(i, now));
        if current_ok && (self.legs[self.active].route.is_direct() || !direct_alive) {
            return false;
        }
        let best = (0..self.legs.len())
            .filter(|i| self.alive(*i, now))
            .max_by_key(|i| (self.legs[*i].route.is_direct(), self.legs[*i].heard));
        match best {
            Some(b) if b != self.active => {
                self.active = b;
                self.switches += 1;
                true
            }
            _ => false,
        }
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// Datagrams that did not open (tampered, replayed, foreign, garbage).
    pub dropped: AtomicU64,
}

/// What a call's media did, at its end. Kept in the call history: a field added
/// later reads as its default in rows written before it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Summary {
    pub sent: u64,
    pub received: u64,
    /// Frames the other side sent that never came (RFC 3550's count).
    pub lost: u64,
    pub dropped: u64,
    pub played: u64,
    /// Rebuilt from the next frame's FEC.
    pub recovered: u64,
    /// Lost, and taken whole from the next packet's copy (RFC 2198).
    pub rebuilt: u64,
    /// Packets sent carrying the frame before theirs too.
    pub sent_redundant: u64,
    pub concealed: u64,
    /// Turns when nothing had come in time (concealed too).
    pub underruns: u64,
    pub late: u64,
    pub jitter_ms: f64,
    /// The longest run of 20 ms with nothing to play, once sound had started.
    pub longest_gap_ms: u64,
    /// Times the call moved to another route.
    pub switches: u32,
    /// The bitrate sent at the end, and the lowest it went.
    pub bitrate: i32,
    pub lowest_bitrate: i32,
    /// The loss the other side last reported, and the most it reported, percent.
    pub loss_reported: f64,
    pub worst_loss_reported: f64,
    /// The lowest bitrate the other side estimated the path carries (REMB), bits a
    /// second; 0 when it never found a limit.
    pub lowest_remb: u32,
    /// The longest queue this side measured on the path to it, ms (see [`crate::bwe`]).
    pub worst_queue_ms: f64,
    /// The other side hung up on the media path (RTCP BYE).
    pub bye: bool,
    /// When the media started (Unix time, microseconds): with a cross-correlation of
    /// what was said and what was heard, the mouth-to-ear delay.
    pub started_unix_us: u64,
}

/// The route in use, once one has been heard from.
pub type ActiveRoute = watch::Receiver<Option<Route>>;

/// A running call's media.
pub struct Session {
    socket: Arc<UdpSocket>,
    routes: std::sync::Mutex<Routes>,
    active: watch::Sender<Option<Route>>,
    pub counters: Arc<Counters>,
    created: Instant,
    /// The figures so far, renewed once a second while the call runs.
    live: std::sync::Mutex<Option<Summary>>,
}

pub struct Setup {
    /// Keys of what this side sends, and of what it receives.
    pub send: Keys,
    pub receive: Keys,
    pub bitrate: i32,
    /// The rate this side codes and plays at (the other side's may differ).
    pub rate: SampleRate,
}

impl Session {
    /// A session on `socket` trying `routes` (relay legs first: media goes on the first
    /// until one is heard from).
    pub fn new(socket: UdpSocket, routes: Vec<Route>) -> Session {
        Session {
            socket: Arc::new(socket),
            routes: std::sync::Mutex::new(Routes::new(routes)),
            active: watch::channel(None).0,
            counters: Arc::new(Counters::default()),
            created: Instant::now(),
            live: Default::default(),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Another way to the other side (a relay it asked for when the others died).
    pub fn add_route(&self, route: Route) {
        self.routes.lock().expect("routes").add(route);
    }

    /// The route in use, as it changes.
    pub fn active(&self) -> ActiveRoute {
        self.active.subscribe()
    }

    /// Whether any route has been heard from within `within` of `now`.
    /// (A session never heard from counts from when it was made.)
    pub fn heard_within(&self, within: Duration) -> bool {
        let now = Instant::now();
        let routes = self.routes.lock().expect("routes");
        let last = routes
            .legs
            .iter()
            .filter_map(|l| l.heard)
            .max()
            .unwrap_or(self.created);
        now.saturating_duration_since(last) < within
    }

    /// Runs until `stop` turns true: sends `source`, plays into `sink`.
    pub async fn run(
        &self,
        setup: Setup,
        mut source: impl Source,
        mut sink: impl Sink,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Summary, VoiceError> {
        let mut tx = Sender::new(&setup.send)?;
        let mut rx = Receiver::new(&setup.receive)?;
        let mut rate = Controller::new(setup.bitrate);
        let frame_len = setup.rate.frame();
        let mut enc = OpusEncoder::new(setup.rate, rate.rate().bitrate, rate.rate().expected_loss)?;
        let mut dec = OpusDecoder::new(setup.rate)?;
        let mut jitter = JitterBuffer::new();
        let mut reception = Reception::new(setup.receive.ssrc);
        let mut bwe = Estimator::new();
        let mut summary = Summary {
            lowest_bitrate: rate.rate().bitrate,
            ..Summary::default()
        };
        let mut last_report: Report = reception.report(0.0);
        let mut last_adapted: Option<u32> = None;
        let start = Instant::now();
        summary.started_unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut ticks: u32 = 0;
        let mut reported_at: u32 = 0;
        let mut previous: Option<Vec<u8>> = None;
        let (mut sounding, mut gap) = (false, 0u64);
        let mut buf = vec![0u8; 2048];
        loop {
            tokio::select! {
                // (The guard wait_for returns is not Send: dropped inside.)
                _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
                _ = tick.tick() => {
                    ticks = ticks.wrapping_add(1);
                    let frame = source.next_frame(frame_len).unwrap_or_else(|| vec![0; frame_len]);
                    let opus = enc.encode(&frame)?;
                    let packet = match (&previous, rate.rate().redundant) {
                        (Some(prev), true) => {
                            summary.sent_redundant += 1;
                            tx.packet_with_previous(&opus, prev)?
                        }
                        _ => tx.packet(&opus)?,
                    };
                    previous = Some(opus);
                    // A report once a second; at once (at most every URGENT ticks)
                    // when the path's queue is filling, so the sender backs off
                    // before the queue is deep.
                    let due = ticks.is_multiple_of(REPORT_EVERY)
                        || (bwe.overused() && ticks.wrapping_sub(reported_at) >= URGENT);
                    summary.worst_queue_ms = summary.worst_queue_ms.max(bwe.queue_ms());
                    if due {
                        reported_at = ticks;
                        last_report = Report {
                            remb: bwe.report(),
                            ..reception.report(jitter.jitter_ms())
                        };
                        tracing::debug!(target: "nodus::voice", "reporting {:?}, queue {:.0} ms, {:.0} bps in", last_report, bwe.queue_ms(), bwe.received_bps());
                        self.sum_up(&mut summary, &reception, &jitter, &rate);
                        *self.live.lock().expect("live") = Some(summary.clone());
                    }
                    // A fresh report goes on every route, the one in use too (a call
                    // with one route would otherwise report only when the two
                    // periods meet, every three seconds).
                    let probe = (ticks.is_multiple_of(PROBE_EVERY) || due).then_some(last_report);
                    self.send_tick(&packet, probe, due, &mut tx).await?;
                    let played = match jitter.pop() {
                        Out::Frame(p) => { sounding = true; gap = 0; dec.decode(&p)? }
                        Out::Recover(p) => { gap = 0; dec.recover(&p)? }
                        Out::Conceal => { gap += 1; dec.conceal()? }
                        Out::Wait => { gap += 1; vec![0; frame_len] }
                    };
                    if sounding {
                        summary.longest_gap_ms = summary.longest_gap_ms.max(gap * 20);
                    }
                    sink.play(&played);
                }
                r = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = r else { continue };
                    match rx.open(&buf[..n]) {
                        Ok(opened) => {
                            self.heard(from);
                            match opened {
                                Opened::Frame(got) => {
                                    self.counters.received.fetch_add(1, Ordering::Relaxed);
                                    reception.frame(got.seq);
                                    let at = start.elapsed().as_secs_f64() * 1000.0;
                                    bwe.arrived(at, got.timestamp, n);
                                    jitter.push(got.seq, got.timestamp, at, got.payload);
                                    if let Some(prev) = got.previous {
                                        jitter.push_previous(got.seq.wrapping_sub(1), prev);
                                    }
                                }
                                Opened::Bye => {
                                    summary.bye = true;
                                    break;
                                }
                                Opened::Report(r) => {
                                    // Probes on every route repeat one report: adapt once.
                                    if last_adapted != Some(r.highest) {
                                        last_adapted = Some(r.highest);
                                        let Rate { bitrate, expected_loss, .. } = rate.reported(r.fraction_lost, r.remb);
                                        if let Some(remb) = r.remb {
                                            summary.lowest_remb = if summary.lowest_remb == 0 { remb } else { summary.lowest_remb.min(remb) };
                                        }
                                        tracing::debug!(target: "nodus::voice", "report: {} of 256 lost, path estimate {:?} bps: sending {bitrate} bps", r.fraction_lost, r.remb);
                                        enc.adapt(bitrate, expected_loss)?;
                                        summary.lowest_bitrate = summary.lowest_bitrate.min(bitrate);
                                        summary.loss_reported = r.fraction_lost as f64 * 100.0 / 256.0;
                                        summary.worst_loss_reported = summary.worst_loss_reported.max(summary.loss_reported);
                                    }
                                }
                            }
                        }
                        Err(_) => {
                            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        if !summary.bye {
            self.say_bye(&mut tx).await;
        }
        self.sum_up(&mut summary, &reception, &jitter, &rate);
        Ok(summary)
    }

    /// The figures of a running call so far (None before its media starts): what
    /// [`Session::run`] ends with, renewed once a second.
    pub fn quality(&self) -> Option<Summary> {
        self.live.lock().expect("live").clone()
    }

    /// Brings `summary`'s counted figures up to now.
    fn sum_up(
        &self,
        summary: &mut Summary,
        reception: &Reception,
        jitter: &JitterBuffer,
        rate: &Controller,
    ) {
        summary.sent = self.counters.sent.load(Ordering::Relaxed);
        summary.received = reception.received();
        summary.lost = reception.lost();
        summary.dropped = self.counters.dropped.load(Ordering::Relaxed);
        summary.played = jitter.stats.played;
        summary.recovered = jitter.stats.recovered;
        summary.concealed = jitter.stats.concealed;
        summary.late = jitter.stats.late;
        summary.underruns = jitter.stats.underruns;
        summary.rebuilt = jitter.stats.rebuilt;
        summary.jitter_ms = jitter.jitter_ms();
        summary.switches = self.routes.lock().expect("routes").switches;
        summary.bitrate = rate.rate().bitrate;
    }

    fn heard(&self, from: SocketAddr) {
        let now = Instant::now();
        let mut routes = self.routes.lock().expect("routes");
        routes.heard(from, now);
        if routes.choose(now) || self.active.borrow().is_none() {
            let r = routes.legs[routes.active].route.clone();
            drop(routes);
            self.active.send_replace(Some(r));
        }
    }

    /// This tick's frame on the route in use, and `report` on every other route (and on
    /// the one in use too when `report_active`), sealed for each (a copy would be a
    /// replay).
    async fn send_tick(
        &self,
        packet: &[u8],
        report: Option<Report>,
        report_active: bool,
        tx: &mut Sender,
    ) -> Result<(), VoiceError> {
        let (active, others): (Route, Vec<Route>) = {
            let mut routes = self.routes.lock().expect("routes");
            if routes.legs.is_empty() {
                return Ok(());
            }
            if routes.choose(Instant::now()) {
                let r = routes.legs[routes.active].route.clone();
                self.active.send_replace(Some(r));
            }
            let active = routes.active;
            let others = if report.is_some() {
                routes
                    .legs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != active || report_active)
                    .map(|(_, l)| l.route.clone())
                    .collect()
            } else {
                Vec::new()
            };
            (routes.legs[active].route.clone(), others)
        };
        if self.send_on(&active, packet).await {
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(report) = report {
            for r in others {
                self.send_on(&r, &tx.report(report)?).await;
            }
        }
        Ok(())
    }

    /// BYE on every route, twice (each its own packet), so the other side ends now
    /// rather than when the signalling reaches it or its silence rule does.
    async fn say_bye(&self, tx: &mut Sender) {
        let routes: Vec<Route> = {
            let r = self.routes.lock().expect("routes");
            r.legs.iter().map(|l| l.route.clone()).collect()
        };
        for _ in 0..2 {
            for r in &routes {
                if let Ok(bye) = tx.bye() {
                    self.send_on(r, &bye).await;
                }
            }
        }
    }

    async fn send_on(&self, route: &Route, datagram: &[u8]) -> bool {
        match route {
            Route::Direct(to) => self.socket.send_to(datagram, to).await.is_ok(),
            Route::Relay { relay, token } => self
                .socket
                .send_to(&wrap(token, datagram), relay)
                .await
                .is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(port: u16) -> Route {
        Route::Relay {
            relay: SocketAddr::from(([127, 0, 0, 9], port)),
            token: [port as u8; 16],
        }
    }

    #[test]
    fn the_call_moves_to_a_live_route_and_prefers_direct() {
        let t0 = Instant::now();
        let direct = SocketAddr::from(([127, 0, 0, 2], 4000));
        let mut r = Routes::new(vec![relay(1), relay(2), Route::Direct(direct)]);
        assert!(!r.choose(t0), "nothing heard: stays on the first");
        r.heard(SocketAddr::from(([127, 0, 0, 9], 2)), t0);
        assert!(r.choose(t0));
        assert_eq!(r.legs[r.active].route, relay(2));
        // The direct route answers: it is taken.
        r.heard(direct, t0 + Duration::from_millis(10));
        assert!(r.choose(t0 + Duration::from_millis(10)));
        assert_eq!(r.legs[r.active].route, Route::Direct(direct));
        // It falls silent while relay 1 keeps answering: back to the relay.
        let later = t0 + Duration::from_millis(400);
        r.heard(SocketAddr::from(([127, 0, 0, 9], 1)), later);
        assert!(r.choose(later + Duration::from_millis(1)));
        assert_eq!(r.legs[r.active].route, relay(1));
        assert_eq!(r.switches, 3);
        // Nothing alive: it stays where it is.
        assert!(!r.choose(later + Duration::from_secs(5)));
    }

    #[test]
    fn an_address_the_peer_did_not_offer_becomes_a_route_and_routes_are_bounded() {
        let t0 = Instant::now();
        let mut r = Routes::new(vec![relay(1)]);
        for p in 0..40u16 {
            r.heard(SocketAddr::from(([127, 0, 0, 3], 5000 + p)), t0);
        }
        assert_eq!(r.legs.len(), MAX_ROUTES);
        assert!(r.legs.iter().any(|l| l.route == relay(1)));
    }
}
