//! Speech through the media path, scored as people hear it: espeak-ng says a sentence,
//! ffmpeg makes it 16 kHz mono, it goes through Opus, RTP, SRTP, a channel and the
//! jitter buffer, and PyPI `pesq` (ITU-T P.862 wideband) scores what came out against
//! what went in: above 3.5 on a clean path, above 3.0 with 5% loss and 30 ms of jitter.
//! Needs espeak-ng and ffmpeg (Debian) and `pip install -r interop/voice/requirements.txt`,
//! which scripts/test installs.

mod common;

use common::{pesq, speech};
use nodus_voice::loopback::{Channel, transmit};
use nodus_voice::wav;

fn score(channel: Channel) -> (f64, nodus_voice::loopback::Result_) {
    let dir = tempfile::tempdir().unwrap();
    let input = speech(dir.path());
    let pcm = wav::read(&input).unwrap();
    let got = transmit(&pcm, channel, nodus_voice::codec::DEFAULT_BITRATE).unwrap();
    let output = dir.path().join("out.wav");
    wav::write(&output, &got.pcm).unwrap();
    (pesq(&input, &output), got)
}

#[test]
fn speech_scores_above_3_5_on_a_clean_path() {
    let (s, got) = score(Channel::clean());
    assert_eq!(got.lost, 0);
    println!("PESQ clean {s}");
    assert!(s > 3.5, "PESQ {s}");
}

#[test]
fn speech_scores_above_3_0_with_5_percent_loss_and_30_ms_jitter() {
    let (s, got) = score(Channel {
        delay_ms: 5.0,
        jitter_ms: 30.0,
        loss: 0.05,
        seed: 22,
    });
    println!("PESQ impaired {s} {:?} lost {}", got.stats, got.lost);
    assert!(got.lost > 0, "the channel lost nothing");
    assert!(got.stats.recovered + got.stats.concealed > 0);
    assert!(s > 3.0, "PESQ {s}, {got:?}", got = got.stats);
}
