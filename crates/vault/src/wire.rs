//! The vault protocol, `/nodus/vault/1`: what a provider's node and a patient's node
//! say to each other. Each side writes length-prefixed postcard frames ([`MAX_FRAME`]
//! at most); a frame that does not decode, or breaks a limit below, ends the stream and
//! counts against the peer.
//!
//! ```text
//! provider                              patient
//! Key                          ->
//!                              <-       Key { public }
//! Fetch { types }              ->
//!                              <-       Grant { patient, no, enc, sealed, total }
//!                              <-       Records [..]   (as many frames as needed)
//!                              <-       Done
//! Append { resource, .. }      ->
//!                              <-       Appended { rtype, id, version }
//! any request                  <-       Refused(reason)
//!
//! patient                               replica
//! Hold(snapshot), HoldMore(chunk).., HoldEnd ->
//!                              <-       Held { upto }
//! Restore                      ->
//!                              <-       Snapshot, Chunk.., Done
//! ```
//!
//! One request per stream. Records travel as they are stored: sealed under their data
//! key, with the data key wrapped under the grant key, which only the provider can open.

use futures::{AsyncRead, AsyncWrite};
use nodus_net::StreamProtocol;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/vault/1");
pub const MAX_FRAME: usize = 4 << 20;
/// Largest resource a provider may append.
pub const MAX_RESOURCE: usize = 1 << 20;
// A batch closes once it passes BATCH_BYTES, so it holds at most one more record
// (MAX_RECORD, 2 MiB) beyond it: well within a frame.
const _: () = assert!(BATCH_BYTES + crate::vault::MAX_RECORD + (64 << 10) < MAX_FRAME);
/// Records are sent in frames of about this many bytes.
pub const BATCH_BYTES: usize = 1 << 20;
/// At most this many types in one fetch, each at most [`MAX_TYPE_LEN`] bytes.
pub const MAX_TYPES: usize = 64;
pub const MAX_TYPE_LEN: usize = 64;
/// At most this many grants and anchors in a [`Snapshot`].
pub const MAX_GRANTS: usize = 10_000;
pub const MAX_ANCHORS: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// This node's X25519 public key, to be granted to.
    Key,
    /// The records a grant covers; `types` empty: all the grant covers.
    Fetch {
        types: Vec<String>,
    },
    /// A provider's own record: the resource's JSON, signed by the provider's identity
    /// key over [`append_message`].
    Append {
        resource: Vec<u8>,
        public_key: Vec<u8>,
        signature: Vec<u8>,
    },
    /// From a patient to a replica: hold what changed (this, then [`Request::HoldMore`]
    /// frames, then [`Request::HoldEnd`]).
    Hold(Snapshot),
    HoldMore(Chunk),
    HoldEnd,
    /// From a patient to a replica: send back everything held for me.
    Restore,
}

/// A patient's vault as replicas hold it, first part: how far it goes, every grant
/// and anchor (rows as stored).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Log entries the state covers.
    pub upto: u64,
    pub grants: Vec<Vec<u8>>,
    pub anchors: Vec<(u64, Vec<u8>)>,
}

/// The rest, in frames: records (`Type/id`, row) and log entries (number, row).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Chunk {
    pub records: Vec<(String, Vec<u8>)>,
    pub log: Vec<(u64, Vec<u8>)>,
}

impl Chunk {
    pub fn bytes(&self) -> usize {
        self.records
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum::<usize>()
            + self.log.iter().map(|(_, v)| v.len() + 12).sum::<usize>()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Key {
        public: [u8; 32],
    },
    /// First frame of a fetch: the grant key sealed to the provider, and how many
    /// records follow.
    Grant {
        patient: String,
        no: u64,
        enc: Vec<u8>,
        sealed: Vec<u8>,
        total: u64,
    },
    Records(Vec<WireRecord>),
    Done,
    Appended {
        rtype: String,
        id: String,
        version: u64,
    },
    /// A replica holds the patient's state up to this many log entries.
    Held {
        upto: u64,
    },
    /// A replica's answer to [`Request::Restore`]: this, [`Reply::Chunk`]s, [`Reply::Done`].
    Snapshot(Snapshot),
    Chunk(Chunk),
    Refused(Refusal),
}

/// A record as a provider receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireRecord {
    pub rtype: String,
    pub id: String,
    pub version: u64,
    pub epoch: u64,
    /// The resource, sealed under its data key.
    pub body: Vec<u8>,
    /// The data key, wrapped under the grant key.
    pub wrap: Vec<u8>,
}

/// Why a patient's node said no.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("the patient has not granted this provider access")]
    NoGrant,
    #[error("the patient's grant to this provider expired at {until_ms} ms")]
    Expired { until_ms: u64 },
    #[error("the patient's grant does not cover {}", types.join(", "))]
    NotCovered { types: Vec<String> },
    #[error("the resource is not valid FHIR R4: {path}: {problem}")]
    Invalid { path: String, problem: String },
    #[error("{record} is not this provider's record")]
    NotYours { record: String },
    #[error("the signature does not match the resource or the provider")]
    BadSignature,
    #[error("the request breaks a limit of the vault protocol")]
    Malformed,
    #[error("the patient's node could not serve this now")]
    Unavailable,
    #[error(
        "this node does not hold a copy for that patient (its operator runs `nodus vault hold <patient>` to)"
    )]
    NotHolding,
    #[error("holding this would pass this node's budget of {budget_mb} MiB for that patient")]
    Full { budget_mb: u64 },
    #[error("what was sent to hold does not follow from what is held: {0}")]
    Inconsistent(String),
}

/// What a provider signs to append `resource` to `patient`'s vault.
pub fn append_message(patient: &str, resource: &[u8]) -> Vec<u8> {
    let mut m = format!("nodus-vault append\0{patient}\0").into_bytes();
    m.extend_from_slice(resource);
    m
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Frame(#[from] nodus_net::frame::FrameError),
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("a frame that does not decode")]
    Decode,
    #[error("the stream ended early")]
    Ended,
    #[error("a request that breaks the protocol's limits")]
    Limits,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("vault messages serialize")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    postcard::from_bytes(bytes).map_err(|_| WireError::Decode)
}

/// A request as a patient's node takes it: decoded, then held to the limits.
pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    let r: Request = decode(bytes)?;
    let ok = match &r {
        Request::Key => true,
        Request::Fetch { types } => {
            types.len() <= MAX_TYPES && types.iter().all(|t| t.len() <= MAX_TYPE_LEN)
        }
        Request::Append {
            resource,
            public_key,
            signature,
        } => resource.len() <= MAX_RESOURCE && public_key.len() <= 128 && signature.len() <= 128,
        Request::Hold(s) => s.grants.len() <= MAX_GRANTS && s.anchors.len() <= MAX_ANCHORS,
        Request::HoldMore(_) | Request::HoldEnd | Request::Restore => true,
    };
    ok.then_some(r).ok_or(WireError::Limits)
}

pub async fn write<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
) -> Result<(), WireError> {
    Ok(nodus_net::frame::write(w, &encode(value), MAX_FRAME).await?)
}

pub async fn read<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> Result<T, WireError> {
    let body = nodus_net::frame::read(r, MAX_FRAME)
        .await?
        .ok_or(WireError::Ended)?;
    decode(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_after_decoding() {
        let many = Request::Fetch {
            types: vec!["Observation".into(); MAX_TYPES + 1],
        };
        assert!(matches!(
            decode_request(&encode(&many)),
            Err(WireError::Limits)
        ));
        let fine = Request::Fetch {
            types: vec!["Observation".into()],
        };
        assert_eq!(decode_request(&encode(&fine)).unwrap(), fine);
        assert!(matches!(decode_request(&[9, 9, 9]), Err(WireError::Decode)));
    }
}
