//! What a receiver counts of the stream it receives, and what it reports back
//! (RFC 3550 appendix A.3: expected from the extended sequence numbers, lost as expected
//! minus received, the fraction lost since the last report out of 256).

use crate::media::Report;

#[derive(Debug, Default, Clone)]
pub struct Reception {
    ssrc: u32,
    base: Option<u64>,
    highest: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
}

impl Reception {
    pub fn new(ssrc: u32) -> Reception {
        Reception {
            ssrc,
            ..Reception::default()
        }
    }

    /// A frame with this sequence number opened.
    pub fn frame(&mut self, seq: u16) {
        let ext = match self.base {
            None => {
                let ext = (1u64 << 16) + seq as u64;
                self.base = Some(ext);
                self.highest = ext;
                ext
            }
            Some(_) => {
                let base = self.highest & !0xffff;
                [base - (1 << 16), base, base + (1 << 16)]
                    .into_iter()
                    .map(|b| b + seq as u64)
                    .min_by_key(|c| c.abs_diff(self.highest))
                    .unwrap_or(self.highest)
            }
        };
        self.highest = self.highest.max(ext);
        self.received += 1;
    }

    pub fn expected(&self) -> u64 {
        self.base.map_or(0, |b| self.highest - b + 1)
    }

    /// Frames that never came (duplicates cannot make it negative: SRTP refuses them).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// The report for now: what was lost since the last one.
    pub fn report(&mut self, jitter_ms: f64) -> Report {
        let expected = self.expected();
        let interval_expected = expected - self.expected_prior;
        let interval_received = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost = interval_expected.saturating_sub(interval_received);
        let fraction_lost = (lost << 8)
            .checked_div(interval_expected)
            .map_or(0, |f| f.min(255) as u8);
        Report {
            ssrc: self.ssrc,
            fraction_lost,
            total_lost: self.lost().min(u32::MAX as u64) as u32,
            highest: self.highest as u32,
            jitter: (jitter_ms * 48.0) as u32,
            remb: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_counted_across_the_wrap_and_reported_per_interval() {
        let mut r = Reception::new(9);
        for s in 65_530u16..=65_535 {
            r.frame(s);
        }
        // 0 and 1 lost, then 2..10 came.
        for s in 2u16..10 {
            r.frame(s);
        }
        assert_eq!(r.expected(), 16);
        assert_eq!(r.lost(), 2);
        let first = r.report(10.0);
        assert_eq!(first.fraction_lost, (2 * 256 / 16) as u8);
        assert_eq!(first.jitter, 480);
        for s in 10u16..20 {
            r.frame(s);
        }
        let second = r.report(0.0);
        assert_eq!(second.fraction_lost, 0);
        assert_eq!(second.total_lost, 2);
    }
}
