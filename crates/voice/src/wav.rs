//! WAV files for scripts and tests: 16-bit mono at the call's rate, what the codec
//! takes (convert others with `ffmpeg -i in.wav -ar 16000 -ac 1 out.wav`).

use std::path::Path;

use crate::VoiceError;
use crate::codec::SampleRate;

fn err(path: &Path, problem: impl std::fmt::Display) -> VoiceError {
    VoiceError::Wav {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// A 16 kHz file.
pub fn read(path: &Path) -> Result<Vec<i16>, VoiceError> {
    read_at(path, SampleRate::WIDEBAND)
}

/// A file at `rate`.
pub fn read_at(path: &Path, rate: SampleRate) -> Result<Vec<i16>, VoiceError> {
    let mut r = hound::WavReader::open(path).map_err(|e| err(path, e))?;
    let spec = r.spec();
    if spec.channels != 1 || spec.sample_rate != rate.hz() || spec.bits_per_sample != 16 {
        return Err(err(
            path,
            format!(
                "is {} channel(s) at {} Hz, {} bits; calls here take 16-bit mono at {hz} Hz ([voice] sample_rate): ffmpeg -i {} -ar {hz} -ac 1 -sample_fmt s16 out.wav",
                spec.channels,
                spec.sample_rate,
                spec.bits_per_sample,
                path.display(),
                hz = rate.hz(),
            ),
        ));
    }
    r.samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path, e))
}

/// Writes a 16 kHz file.
pub fn write(path: &Path, samples: &[i16]) -> Result<(), VoiceError> {
    write_at(path, SampleRate::WIDEBAND, samples)
}

pub fn write_at(path: &Path, rate: SampleRate, samples: &[i16]) -> Result<(), VoiceError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate.hz(),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| err(path, e))?;
    for s in samples {
        w.write_sample(*s).map_err(|e| err(path, e))?;
    }
    w.finalize().map_err(|e| err(path, e))
}

/// 16-bit samples of a WAV held in memory, and their rate (a program's output, which
/// may not say its length: what is there is read).
pub fn from_bytes(bytes: &[u8]) -> Result<(u32, Vec<i16>), VoiceError> {
    let r = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| err(Path::new("(in memory)"), e))?;
    let rate = r.spec().sample_rate;
    Ok((
        rate,
        r.into_samples::<i16>().map_while(Result::ok).collect(),
    ))
}
