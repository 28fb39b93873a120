//! A call's media path in one process, on simulated time: PCM in, Opus, RTP, SRTP, a
//! channel that delays, jitters and loses packets (seeded, so a run repeats), SRTP, the
//! jitter buffer, Opus out. For tests and the benchmark; the network path has its own
//! tests.

use rand::{Rng, SeedableRng};

use crate::VoiceError;
use crate::codec::{FRAME, OpusDecoder, OpusEncoder, SampleRate};
use crate::jitter::{JitterBuffer, Out, Stats};
use crate::media::{Keys, Receiver, Sender};

/// What the channel does to packets.
#[derive(Debug, Clone, Copy)]
pub struct Channel {
    pub delay_ms: f64,
    /// Each packet is delayed by up to this much more, uniformly.
    pub jitter_ms: f64,
    /// Share of packets lost, 0..1.
    pub loss: f64,
    pub seed: u64,
}

impl Channel {
    pub fn clean() -> Channel {
        Channel {
            delay_ms: 1.0,
            jitter_ms: 0.0,
            loss: 0.0,
            seed: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Result_ {
    /// What the far side played, from the first 20 ms tick on.
    pub pcm: Vec<i16>,
    pub stats: Stats,
    pub lost: usize,
    /// Ticks played before the first frame came out (the buffer's initial delay).
    pub waited: usize,
}

/// Sends `pcm` (16 kHz) through `channel` at `bitrate`; what comes out the other end.
pub fn transmit(pcm: &[i16], channel: Channel, bitrate: i32) -> Result<Result_, VoiceError> {
    let keys = Keys::random();
    let mut tx = Sender::new(&keys)?;
    let mut rx = Receiver::new(&keys)?;
    let expected_loss = (channel.loss * 100.0).round() as u8;
    let mut enc = OpusEncoder::new(SampleRate::WIDEBAND, bitrate, expected_loss.max(5))?;
    let mut dec = OpusDecoder::new(SampleRate::WIDEBAND)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(channel.seed);
    let mut arrivals: Vec<(f64, bytes::Bytes)> = Vec::new();
    let mut lost = 0;
    for (i, frame) in pcm.chunks(FRAME).enumerate() {
        let mut f = frame.to_vec();
        f.resize(FRAME, 0);
        let packet = tx.packet(&enc.encode(&f)?)?;
        if rng.random::<f64>() < channel.loss {
            lost += 1;
            continue;
        }
        let at = i as f64 * 20.0 + channel.delay_ms + rng.random::<f64>() * channel.jitter_ms;
        arrivals.push((at, packet));
    }
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let frames = pcm.len().div_ceil(FRAME);
    let mut jb = JitterBuffer::new();
    let mut out = Vec::with_capacity(pcm.len() + 10 * FRAME);
    let mut next = 0;
    let mut waited = 0;
    let mut started = false;
    // Play until every frame had its turn, plus what the buffer holds back.
    let mut tick = 0usize;
    while tick < frames + 60 {
        let now = tick as f64 * 20.0;
        while next < arrivals.len() && arrivals[next].0 <= now {
            let (at, p) = &arrivals[next];
            let crate::media::Opened::Frame(got) = rx.open(p)? else {
                unreachable!("only frames are sent")
            };
            jb.push(got.seq, got.timestamp, *at, got.payload);
            next += 1;
        }
        let frame = match jb.pop() {
            Out::Frame(p) => Some(dec.decode(&p)?),
            Out::Recover(p) => Some(dec.recover(&p)?),
            Out::Conceal => Some(dec.conceal()?),
            Out::Wait => None,
        };
        match frame {
            Some(f) => {
                started = true;
                out.extend_from_slice(&f);
            }
            None if !started => waited += 1,
            None => out.extend(std::iter::repeat_n(0i16, FRAME)),
        }
        tick += 1;
    }
    Ok(Result_ {
        pcm: out,
        stats: jb.stats,
        lost,
        waited,
    })
}
