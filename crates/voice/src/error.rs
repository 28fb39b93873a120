/// Errors of the voice service.
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("opus: {0}")]
    Opus(#[from] audiopus::Error),
    #[error("a frame is 20 ms ({frame} samples at 16 kHz), not {0}", frame = crate::codec::FRAME)]
    Frame(usize),
    #[error("srtp: {0}")]
    Srtp(String),
    #[error("rtp: {0}")]
    Rtp(String),
    #[error("{path}: {problem}")]
    Wav { path: String, problem: String },
}
