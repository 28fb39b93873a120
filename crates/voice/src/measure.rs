//! Mouth-to-ear delay, measured from what was said and what was heard: each second of
//! speech is found in the recording by cross-correlation, and its offset there, with
//! when each side's media started, is the time from the speaker's frame leaving the
//! source to it playing at the other end (codec, network, jitter buffer; not the sound
//! card's own buffers).

use crate::codec::RATE;

const WINDOW: usize = RATE as usize;
/// Coarse search step, in samples (a quarter millisecond), refined to one sample.
const STEP: usize = 4;

fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// Delays in milliseconds, one per second of `said` that holds speech and is found in
/// `heard` (correlation above 0.5) within `max_ms`. `*_start_us`: when each side's
/// media started, on one clock (Unix time, microseconds).
pub fn mouth_to_ear(
    said: &[i16],
    said_start_us: u64,
    heard: &[i16],
    heard_start_us: u64,
    max_ms: u32,
) -> Vec<f64> {
    // Heard sample j plays at heard_start + j/16 ms; said sample i leaves at
    // said_start + i/16 ms. A delay of d ms puts i at j = i + offset + 16 d.
    let per_ms = (RATE / 1000) as i64;
    let offset = (said_start_us as i64 - heard_start_us as i64) * per_ms / 1000;
    let max_lag = max_ms as i64 * per_ms;
    let mut out = Vec::new();
    for w in said.chunks_exact(WINDOW) {
        let energy = w.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / WINDOW as f64;
        if energy.sqrt() < 300.0 {
            continue; // (near) silence: nothing to find
        }
        let i = (w.as_ptr() as usize - said.as_ptr() as usize) / 2;
        let at = |lag: i64| -> Option<f64> {
            let j = i as i64 + offset + lag;
            if j < 0 || j as usize + WINDOW > heard.len() {
                return None;
            }
            Some(correlation(w, &heard[j as usize..j as usize + WINDOW]))
        };
        let coarse = (0..=max_lag)
            .step_by(STEP)
            .filter_map(|l| at(l).map(|c| (l, c)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((l, _)) = coarse else { continue };
        let fine = (l - STEP as i64..=l + STEP as i64)
            .filter(|l| *l >= 0)
            .filter_map(|l| at(l).map(|c| (l, c)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((l, c)) = fine
            && c > 0.5
        {
            out.push(l as f64 / per_ms as f64);
        }
    }
    out
}

/// The `p`th percentile (0..=100) of `values`, nearest rank.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// `pcm` at `from` Hz (mono) made 16 kHz by linear interpolation: for speech a program
/// made (espeak-ng speaks at 22,050 Hz), which is then the reference itself.
pub fn resample(pcm: &[i16], from: u32) -> Vec<i16> {
    if from == RATE || pcm.is_empty() {
        return pcm.to_vec();
    }
    let n = (pcm.len() as u64 * RATE as u64 / from as u64) as usize;
    (0..n)
        .map(|k| {
            let x = k as f64 * from as f64 / RATE as f64;
            let i = x.floor() as usize;
            let f = x - i as f64;
            let a = pcm[i.min(pcm.len() - 1)] as f64;
            let b = pcm[(i + 1).min(pcm.len() - 1)] as f64;
            (a + (b - a) * f).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A noise-like signal (speech-ish energy) of `secs` seconds.
    fn noise(secs: usize) -> Vec<i16> {
        let mut x: u32 = 12345;
        (0..secs * WINDOW)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) as i16) / 4
            })
            .collect()
    }

    #[test]
    fn a_known_delay_is_found_whatever_the_start_times() {
        let said = noise(4);
        // Heard 37.5 ms late, by a side whose media started 10 ms after the speaker's.
        let late = 600; // samples
        let start_gap = 160; // samples: 10 ms
        let mut heard = vec![0i16; late - start_gap];
        heard.extend_from_slice(&said);
        let d = mouth_to_ear(&said, 1_000_000, &heard, 1_010_000, 200);
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(d.iter().all(|x| (*x - 37.5).abs() < 0.01), "{d:?}");
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 10.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 10.0], 99.0), Some(10.0));
        // Silence is not measured.
        assert!(mouth_to_ear(&[0; WINDOW * 2], 0, &heard, 0, 200).is_empty());
    }

    #[test]
    fn resampling_keeps_the_length_in_time() {
        let pcm: Vec<i16> = (0..22_050).map(|i| (i % 100) as i16).collect();
        assert_eq!(resample(&pcm, 22_050).len(), 16_000);
    }
}
