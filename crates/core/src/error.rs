use std::path::PathBuf;

/// Errors of the base layer. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no node initialised at {0}: run `nodus init --data-dir {0}` first (or `nodus up --init`)"
    )]
    NotInitialised(PathBuf),
    #[error(
        "identity key {path} is corrupt ({reason}); restore it from a backup, or move it away and run `nodus init` to create a new identity"
    )]
    CorruptKey {
        path: PathBuf,
        #[source]
        reason: KeyProblem,
    },
    #[error(
        "identity key {path} has mode {mode:o}, readable by other users; run `chmod 600 {path}` and try again"
    )]
    KeyTooOpen { path: PathBuf, mode: u32 },
    #[error("{path}: line {line}, column {column}: {message}")]
    Config {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("no data directory could be found: set NODUS_DATA_DIR or pass --data-dir")]
    NoDataDir,
    #[error("{path} is not valid: {reason}")]
    BadFile { path: PathBuf, reason: String },
}

impl CoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CoreError::Io {
            path: path.into(),
            source,
        }
    }
}

/// What is wrong with an identity key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    /// libp2p reads an empty file as an RSA key and blames a missing cargo feature.
    #[error("the file is empty")]
    Empty,
    #[error("not a libp2p protobuf-encoded key")]
    Encoding(#[from] libp2p::identity::DecodingError),
    #[error("key type {0:?}, expected ed25519")]
    NotEd25519(libp2p::identity::KeyType),
}
