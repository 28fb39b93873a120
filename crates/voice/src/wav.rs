//! WAV files for scripts and tests: 16-bit mono at 16 kHz, what the codec takes (convert
//! others with `ffmpeg -i in.wav -ar 16000 -ac 1 out.wav`).

use std::path::Path;

use crate::VoiceError;
use crate::codec::RATE;

fn err(path: &Path, problem: impl std::fmt::Display) -> VoiceError {
    VoiceError::Wav {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

pub fn read(path: &Path) -> Result<Vec<i16>, VoiceError> {
    let mut r = hound::WavReader::open(path).map_err(|e| err(path, e))?;
    let spec = r.spec();
    if spec.channels != 1 || spec.sample_rate != RATE || spec.bits_per_sample != 16 {
        return Err(err(
            path,
            format!(
                "is {} channel(s) at {} Hz, {} bits; calls take 16-bit mono at 16 kHz: ffmpeg -i {} -ar 16000 -ac 1 out.wav",
                spec.channels,
                spec.sample_rate,
                spec.bits_per_sample,
                path.display()
            ),
        ));
    }
    r.samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path, e))
}

pub fn write(path: &Path, samples: &[i16]) -> Result<(), VoiceError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
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
