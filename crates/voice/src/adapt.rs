//! The sender's bitrate, from what the other side reports: loss is taken as the sign of
//! a path that carries less than is sent (or of a lossy link), so the bitrate backs off
//! multiplicatively while the reported loss is high and creeps back up while it is low;
//! the loss the encoder expects (which sets how much in-band FEC each frame carries)
//! follows the reported loss, smoothed, and never below [`MIN_EXPECTED_LOSS`]: a call
//! carries FEC from its first frame, before any report, because one lost frame without
//! it is concealed rather than rebuilt. Reports come about once a second.
//!
//! A report may carry the receiver's estimate of what the path carries (REMB, see
//! [`crate::bwe`]): the bitrate then stays under it, packet headers and the redundant
//! copy counted, so a path short of bandwidth is found by its queue before it drops.

/// Lowest and highest bitrates a call uses (Opus wideband speech stays intelligible at
/// 12 kbps; above 64 kbps it gains nothing PESQ can hear).
pub const MIN_BITRATE: i32 = 12_000;
pub const MAX_BITRATE: i32 = 64_000;
/// Above this loss the bitrate backs off.
const HIGH_LOSS: f64 = 0.10;
/// Below this it may grow.
const LOW_LOSS: f64 = 0.02;
const STEP_UP: i32 = 4_000;
/// The least loss the encoder is told to expect, percent.
pub const MIN_EXPECTED_LOSS: u8 = 10;
/// Redundancy stays on while the smoothed loss is above this.
const REDUNDANT_ABOVE: f64 = 0.005;
/// Weight of a new report in the smoothed loss.
const SMOOTHING: f64 = 0.3;
/// What a packet carries besides Opus (RTP header, SRTP tag, RFC 2198 header), bytes:
/// at 50 packets a second, bits a second of the estimate that are not the codec's.
const PACKET_OVERHEAD: i32 = 12 + 10 + 5;
const PACKETS_PER_SEC: i32 = 50;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub bitrate: i32,
    /// Percent, for the encoder's FEC.
    pub expected_loss: u8,
    /// Each packet carries the frame before it too (RFC 2198): from the start, until a
    /// report says nothing was lost, and again as soon as one says something was.
    pub redundant: bool,
}

#[derive(Debug, Clone)]
pub struct Controller {
    ceiling: i32,
    rate: Rate,
    loss: f64,
}

impl Controller {
    /// Starts at `bitrate`, which is also the most it grows back to.
    pub fn new(bitrate: i32) -> Controller {
        let b = bitrate.clamp(MIN_BITRATE, MAX_BITRATE);
        Controller {
            ceiling: b,
            rate: Rate {
                bitrate: b,
                expected_loss: MIN_EXPECTED_LOSS,
                redundant: true,
            },
            loss: 0.0,
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// A report said this fraction (out of 256) of our frames were lost since the last,
    /// and maybe that the path carries at most `remb` bits a second.
    pub fn reported(&mut self, fraction_lost: u8, remb: Option<u32>) -> Rate {
        let loss = fraction_lost as f64 / 256.0;
        self.loss += (loss - self.loss) * SMOOTHING;
        let b = self.rate.bitrate;
        self.rate.bitrate = if loss > HIGH_LOSS {
            ((b as f64 * (1.0 - loss / 2.0)) as i32).max(MIN_BITRATE)
        } else if loss < LOW_LOSS {
            (b + STEP_UP).min(self.ceiling)
        } else {
            b
        };
        self.rate.expected_loss = ((self.loss * 100.0).ceil() as u8).clamp(MIN_EXPECTED_LOSS, 30);
        self.rate.redundant = fraction_lost > 0 || self.loss > REDUNDANT_ABOVE;
        if let Some(remb) = remb {
            let codec = (remb.min(i32::MAX as u32) as i32)
                .saturating_sub(PACKET_OVERHEAD * 8 * PACKETS_PER_SEC)
                / if self.rate.redundant { 2 } else { 1 };
            self.rate.bitrate = self.rate.bitrate.min(codec).max(MIN_BITRATE);
        }
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_backs_off_and_a_clean_path_grows_back_to_the_start() {
        let mut c = Controller::new(48_000);
        assert_eq!(c.rate().expected_loss, MIN_EXPECTED_LOSS);
        assert!(c.rate().redundant, "redundant from the start");
        let r = c.reported(64, None); // 25 %
        assert!(r.redundant);
        assert!(r.bitrate < 48_000 && r.bitrate >= MIN_BITRATE);
        assert_eq!(r.expected_loss, MIN_EXPECTED_LOSS, "smoothed: 7.5 %");
        for _ in 0..20 {
            c.reported(128, None);
        }
        assert_eq!(c.rate().bitrate, MIN_BITRATE);
        assert_eq!(c.rate().expected_loss, 30, "50 % asks for the most FEC");
        for _ in 0..20 {
            c.reported(0, None);
        }
        assert_eq!(
            c.rate(),
            Rate {
                bitrate: 48_000,
                expected_loss: MIN_EXPECTED_LOSS,
                redundant: false,
            }
        );
        // Moderate loss holds the rate, and turns redundancy on again.
        let r = c.reported(13, None);
        assert_eq!((r.bitrate, r.redundant), (48_000, true));
    }

    #[test]
    fn the_bitrate_stays_under_what_the_receiver_says_the_path_carries() {
        let mut c = Controller::new(48_000);
        // 40 kbps on the path, no loss: less the headers (10.8 kbps), all of it Opus.
        let r = c.reported(0, Some(40_000));
        assert!(!r.redundant);
        assert_eq!(r.bitrate, 40_000 - 10_800);
        // With loss the copies count too: half of it.
        let r = c.reported(26, Some(40_000));
        assert!(r.redundant);
        assert_eq!(r.bitrate, (40_000 - 10_800) / 2);
        // Never below the floor, however low the estimate.
        assert_eq!(c.reported(0, Some(1_000)).bitrate, MIN_BITRATE);
        // Without a limit it grows back as before.
        for _ in 0..20 {
            c.reported(0, None);
        }
        assert_eq!(c.rate().bitrate, 48_000);
    }
}
