//! Speech for the demo and the benchmark, and its score: a sentence spoken by
//! espeak-ng (Debian's `espeak-ng`), made 16 kHz mono here; PESQ (ITU-T P.862 wideband)
//! through PyPI's `pesq` when python3 has it. scripts/test installs both.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use nodus_voice::measure::resample;

pub const SENTENCE: &str = "The quick brown fox jumps over the lazy dog. \
    Peer to peer calls carry speech between two people, with no server in between.";

/// The sentence, spoken, 16 kHz mono, written to `path` too.
pub fn speak(path: &Path) -> Result<Vec<i16>> {
    let out = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "--stdout", SENTENCE])
        .output()
        .context("espeak-ng speaks the demo's sentence: apt-get install espeak-ng (scripts/test does)")?;
    if !out.status.success() {
        bail!("espeak-ng: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (rate, pcm) = nodus_voice::wav::from_bytes(&out.stdout)?;
    let pcm = resample(&pcm, rate);
    nodus_voice::wav::write(path, &pcm)?;
    Ok(pcm)
}

const PESQ: &str = r#"
import sys, wave
import numpy as np
from pesq import pesq
def read(p):
    with wave.open(p, "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)
ref, deg = read(sys.argv[1]), read(sys.argv[2])
n = max(len(ref), len(deg))
ref, deg = np.pad(ref, (0, n - len(ref))), np.pad(deg, (0, n - len(deg)))
print(f"{pesq(16000, ref, deg, 'wb'):.3f}")
"#;

/// PESQ of `heard` against `said` (WAV files): None when python3 has no `pesq`.
pub fn pesq(said: &Path, heard: &Path) -> Result<Option<f64>> {
    let Ok(out) = Command::new("python3")
        .args(["-c", PESQ])
        .arg(said)
        .arg(heard)
        .output()
    else {
        return Ok(None);
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named") {
            return Ok(None);
        }
        bail!("pesq: {err}");
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).trim().parse()?))
}

pub fn pesq_text(score: Option<f64>) -> String {
    match score {
        Some(s) => format!("PESQ {s:.2}"),
        None => "PESQ not measured (pip install pesq)".into(),
    }
}
