//! The machine's sound devices through cpal: ALSA, and PulseAudio and PipeWire through
//! their ALSA plugins (the `default` device). Each stream runs on a thread of its own
//! (cpal streams are not `Send`) and meets the call through a bounded buffer of mono
//! samples at the call's rate; the device's own rate and channels are converted here
//! (linear interpolation, channels mixed down or copied). A call at the device's rate
//! (48 kHz, most often) is not resampled at all.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{SampleFormat, StreamConfig};

use crate::VoiceError;
use crate::codec::SampleRate;
use crate::session::{Sink, Source};

/// Time held between the device and the call at most: more is delay nobody wants, so
/// the oldest samples go.
const HELD_SECS: f64 = 0.5;

fn device_error(e: impl std::fmt::Display) -> VoiceError {
    VoiceError::Device(e.to_string())
}

/// Whether there is a default input and output device.
pub fn check() -> Result<(), VoiceError> {
    let host = cpal::default_host();
    if host.default_input_device().is_none() {
        return Err(VoiceError::Device(
            "no sound input device (is PulseAudio or PipeWire running, or an ALSA card there?)"
                .into(),
        ));
    }
    if host.default_output_device().is_none() {
        return Err(VoiceError::Device("no sound output device".into()));
    }
    Ok(())
}

type Shared = Arc<Mutex<VecDeque<i16>>>;

/// Rate conversion, a block at a time, keeping its place between blocks.
struct Resampler {
    step: f64,
    pos: f64,
    last: f32,
}

impl Resampler {
    fn new(from: u32, to: u32) -> Resampler {
        Resampler {
            step: from as f64 / to as f64,
            pos: 0.0,
            last: 0.0,
        }
    }

    /// `input` at the source rate; what it makes at the target rate.
    fn run(&mut self, input: &[f32], out: &mut Vec<f32>) {
        // Positions count from the sample before `input` (`last`) at -1.
        while self.pos < input.len() as f64 - 1.0 + 1.0 {
            let i = self.pos.floor();
            let f = (self.pos - i) as f32;
            let at = |k: f64| -> f32 {
                if k < 0.0 {
                    self.last
                } else {
                    input[(k as usize).min(input.len() - 1)]
                }
            };
            let (a, b) = (at(i - 1.0), at(i));
            out.push(a + (b - a) * f);
            self.pos += self.step;
        }
        self.pos -= input.len() as f64;
        if let Some(l) = input.last() {
            self.last = *l;
        }
    }
}

/// A stream kept on its own thread until the handle is dropped.
struct Running {
    stop: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Builds a stream on a new thread with `build` and keeps it playing until stopped.
fn run_stream(
    build: impl FnOnce() -> Result<cpal::Stream, VoiceError> + Send + 'static,
) -> Result<Running, VoiceError> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("nodus-sound".into())
        .spawn(move || {
            let stream = match build().and_then(|s| s.play().map(|_| s).map_err(device_error)) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            drop(stream);
        })
        .map_err(device_error)?;
    ready_rx
        .recv()
        .map_err(|_| VoiceError::Device("the sound thread ended".into()))??;
    Ok(Running { stop })
}

fn push_bounded(buf: &Shared, rate: SampleRate, samples: impl IntoIterator<Item = i16>) {
    let mut b = buf.lock().expect("sound buffer");
    b.extend(samples);
    let held = (rate.hz() as f64 * HELD_SECS) as usize;
    let over = b.len().saturating_sub(held);
    b.drain(..over);
}

/// The default microphone, as 20 ms frames.
pub struct Input {
    buf: Shared,
    _running: Running,
}

/// The default microphone, at `rate`.
pub fn input(rate: SampleRate) -> Result<Input, VoiceError> {
    let device = cpal::default_host()
        .default_input_device()
        .ok_or_else(|| VoiceError::Device("no sound input device".into()))?;
    let supported = device.default_input_config().map_err(device_error)?;
    let format = supported.sample_format();
    let config: StreamConfig = supported.into();
    let buf: Shared = Arc::default();
    let shared = buf.clone();
    let running = run_stream(move || {
        let channels = config.channels.max(1) as usize;
        let mut rs = Resampler::new(config.sample_rate, rate.hz());
        let mut mono = Vec::new();
        let mut out = Vec::new();
        let mut take = move |data: &mut dyn Iterator<Item = f32>| {
            mono.clear();
            let all: Vec<f32> = data.collect();
            mono.extend(
                all.chunks(channels)
                    .map(|c| c.iter().sum::<f32>() / c.len() as f32),
            );
            out.clear();
            rs.run(&mono, &mut out);
            push_bounded(
                &shared,
                rate,
                out.iter()
                    .map(|s| (s.clamp(-1.0, 1.0) * i16::MAX as f32) as i16),
            );
        };
        let err = |e| tracing::warn!(target: "nodus::voice", "sound input: {e}");
        match format {
            SampleFormat::I16 => device.build_input_stream(
                config,
                move |d: &[i16], _: &_| take(&mut d.iter().map(|s| *s as f32 / i16::MAX as f32)),
                err,
                None,
            ),
            SampleFormat::F32 => device.build_input_stream(
                config,
                move |d: &[f32], _: &_| take(&mut d.iter().copied()),
                err,
                None,
            ),
            other => {
                return Err(VoiceError::Device(format!(
                    "the input device gives {other} samples; calls take 16-bit or float"
                )));
            }
        }
        .map_err(device_error)
    })?;
    Ok(Input {
        buf,
        _running: running,
    })
}

impl Source for Input {
    fn next_frame(&mut self, len: usize) -> Option<Vec<i16>> {
        let mut b = self.buf.lock().expect("sound buffer");
        let n = b.len().min(len);
        let mut f: Vec<i16> = b.drain(..n).collect();
        f.resize(len, 0);
        Some(f)
    }
}

/// The default speaker, fed 20 ms frames.
pub struct Output {
    buf: Shared,
    rate: SampleRate,
    _running: Running,
}

/// The default speaker, fed at `rate`.
pub fn output(rate: SampleRate) -> Result<Output, VoiceError> {
    let device = cpal::default_host()
        .default_output_device()
        .ok_or_else(|| VoiceError::Device("no sound output device".into()))?;
    let supported = device.default_output_config().map_err(device_error)?;
    let format = supported.sample_format();
    let config: StreamConfig = supported.into();
    let buf: Shared = Arc::default();
    let shared = buf.clone();
    let running = run_stream(move || {
        let channels = config.channels.max(1) as usize;
        let mut rs = Resampler::new(rate.hz(), config.sample_rate);
        let mut held: VecDeque<f32> = VecDeque::new();
        let mut give = move |len: usize, put: &mut dyn FnMut(usize, f32)| {
            let frames = len / channels;
            // Convert what the call has, until the device's block is full.
            while held.len() < frames {
                let pcm: Vec<f32> = {
                    let mut b = shared.lock().expect("sound buffer");
                    let n = b.len().min(rate.frame());
                    b.drain(..n).map(|s| s as f32 / i16::MAX as f32).collect()
                };
                if pcm.is_empty() {
                    break;
                }
                let mut out = Vec::new();
                rs.run(&pcm, &mut out);
                held.extend(out);
            }
            for k in 0..frames {
                let s = held.pop_front().unwrap_or(0.0);
                for c in 0..channels {
                    put(k * channels + c, s);
                }
            }
        };
        let err = |e| tracing::warn!(target: "nodus::voice", "sound output: {e}");
        match format {
            SampleFormat::I16 => device.build_output_stream(
                config,
                move |d: &mut [i16], _: &_| {
                    give(d.len(), &mut |i, s| {
                        d[i] = (s.clamp(-1.0, 1.0) * i16::MAX as f32) as i16
                    })
                },
                err,
                None,
            ),
            SampleFormat::F32 => device.build_output_stream(
                config,
                move |d: &mut [f32], _: &_| give(d.len(), &mut |i, s| d[i] = s),
                err,
                None,
            ),
            other => {
                return Err(VoiceError::Device(format!(
                    "the output device takes {other} samples; calls give 16-bit or float"
                )));
            }
        }
        .map_err(device_error)
    })?;
    Ok(Output {
        buf,
        rate,
        _running: running,
    })
}

impl Sink for Output {
    fn play(&mut self, frame: &[i16]) {
        push_bounded(&self.buf, self.rate, frame.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_in_blocks_keeps_the_rate_and_the_shape() {
        let tone: Vec<f32> = (0..48_000)
            .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin())
            .collect();
        let mut rs = Resampler::new(48_000, 16_000);
        let mut out = Vec::new();
        for block in tone.chunks(441) {
            rs.run(block, &mut out);
        }
        assert!((out.len() as i64 - 16_000).abs() <= 2, "{}", out.len());
        // The same tone: sample k at 16 kHz is sample 3k - 1 at 48 kHz (one input sample
        // late: the first output is the sample before the stream).
        for k in 10..16_000 - 10 {
            assert!((out[k] - tone[3 * k - 1]).abs() < 1e-4, "at {k}");
        }
    }
}
