//! Speech for the voice tests: a sentence spoken by espeak-ng, made 16 kHz mono by
//! ffmpeg, and PESQ (PyPI `pesq`, P.862 wideband) to score what came out. scripts/test
//! installs all three.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const SENTENCE: &str = "The quick brown fox jumps over the lazy dog. \
    Peer to peer calls carry speech between two people, with no server in between.";

pub fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sentence, spoken, as 16 kHz mono.
pub fn speech(dir: &Path) -> PathBuf {
    let raw = dir.join("raw.wav");
    let speech = dir.join("speech.wav");
    run(Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&raw)
        .arg(SENTENCE));
    run(Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&raw)
        .args(["-ar", "16000", "-ac", "1", "-sample_fmt", "s16"])
        .arg(&speech));
    speech
}

pub fn pesq(reference: &Path, degraded: &Path) -> f64 {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/voice/pesq_score.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(reference)
        .arg(degraded)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "pesq: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
