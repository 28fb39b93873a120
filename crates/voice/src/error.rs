/// Errors of the voice service.
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("opus: {0}")]
    Opus(#[from] audiopus::Error),
    #[error("a frame is 20 ms ({want} samples at {hz} Hz), not {got}")]
    Frame { got: usize, want: usize, hz: u32 },
    #[error(
        "Opus codes at 8000, 12000, 16000, 24000 or 48000 Hz, not {0}: set [voice] sample_rate to one of them"
    )]
    Rate(u32),
    #[error("srtp: {0}")]
    Srtp(String),
    #[error("rtp: {0}")]
    Rtp(String),
    #[error("{path}: {problem}")]
    Wav { path: String, problem: String },
    #[error("voice relay: {0}")]
    Relay(String),
    #[error(transparent)]
    Signaling(#[from] crate::signaling::SignalingError),
    #[error("calls need messaging (contacts and their sessions): set [msg] enabled = true")]
    NoMessaging,
    #[error("no call {0} (`nodus call list` shows the calls)")]
    NoSuchCall(String),
    #[error("no call is ringing")]
    NothingRinging,
    #[error("{0} calls are ringing: name one (`nodus call list`)")]
    WhichCall(usize),
    #[error("call {0} is not ringing here")]
    NotRinging(String),
    #[error("already in call {0}: hang up first (`nodus call hangup`)")]
    InCall(String),
    #[error("{0} is this node")]
    Myself(String),
    #[error("sound device: {0}")]
    Device(String),
    #[error("{0}: {1}")]
    File(String, String),
    #[error("media socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("call history: {0}")]
    Store(String),
}
