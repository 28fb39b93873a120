//! Media for the content tests and demo, made and checked by Debian's ffmpeg: a test
//! pattern with a tone in H.264/AAC MP4 with the index (moov) first, so a player can
//! start before the end has arrived; and ffprobe's reading of a stream.

use std::path::Path;

use serde_json::Value;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{0} is not installed: `apt-get install ffmpeg` (scripts/test does)")]
    Missing(&'static str),
    #[error("{0} failed: {1}")]
    Failed(&'static str, String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn which(tool: &'static str) -> Result<(), MediaError> {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if found {
        Ok(())
    } else {
        Err(MediaError::Missing(tool))
    }
}

/// Writes `seconds` of a 640x360 test pattern at 25 fps with a 440 Hz tone, about
/// 1.2 Mbit/s, to `path` (an .mp4).
pub async fn test_video(path: &Path, seconds: u32) -> Result<(), MediaError> {
    which("ffmpeg")?;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=640x360:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={seconds}"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            "1200k",
            "-g",
            "50",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-movflags",
            "+faststart",
            "-shortest",
        ])
        .arg(path);
    run("ffmpeg", &mut cmd).await.map(|_| ())
}

/// Runs `cmd` (the tool `tool`): its stdout, or its stderr as the error.
async fn run(tool: &'static str, cmd: &mut Command) -> Result<Vec<u8>, MediaError> {
    let out = cmd.output().await?;
    if !out.status.success() {
        return Err(MediaError::Failed(
            tool,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(out.stdout)
}

/// What ffprobe reads from a file or URL.
#[derive(Debug, Clone)]
pub struct Probe {
    pub duration: f64,
    /// Codec names of its streams, in order (`h264`, `aac`).
    pub codecs: Vec<String>,
}

pub async fn probe(input: &str) -> Result<Probe, MediaError> {
    which("ffprobe")?;
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-show_entries",
        "format=duration:stream=codec_name",
        "-of",
        "json",
    ])
    .arg(input);
    let out = run("ffprobe", &mut cmd).await?;
    let v: Value =
        serde_json::from_slice(&out).map_err(|e| MediaError::Failed("ffprobe", e.to_string()))?;
    Ok(Probe {
        duration: v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
        codecs: v["streams"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|x| x["codec_name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    })
}
