//! The compute protocol, `/nodus/compute/2`, and the project announcements gossiped on
//! [`TOPIC`].
//!
//! A volunteer keeps one stream open to each coordinator it works for and sends one
//! request at a time on it; each request gets one reply. Frames are length-prefixed
//! postcard ([`MAX_FRAME`] at most).
//!
//! ```text
//! volunteer                                  coordinator
//! Projects                          ->
//!                                   <-       Projects [Announce..]
//! Module { project }                ->
//!                                   <-       Module { wasm }        (sha256 = Announce.module)
//! Work { project, max, class,      ->
//!        payout }
//!                                   <-       Units { units, credit } | NoWork { finished }
//! Submit { project, results }       ->
//!                                   <-       Accepted { credit }
//! any request                       <-       Refused(reason)
//! ```
//!
//! The coordinator computes each result's hash itself ([`output_hash`]); nothing a
//! volunteer claims about its result is taken on trust but the fuel, which is checked
//! by the quorum (a result's credit is the fuel of the canonical result, not the
//! volunteer's claim).

use futures::{AsyncRead, AsyncWrite};
use nodus_net::StreamProtocol;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::job::{Failure, Job, Output};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/compute/2");
/// The gossip topic on which coordinators announce projects that have work.
pub const TOPIC: &str = "nodus/compute/projects/1";
/// The DHT key coordinators provide, for volunteers that join after an announcement.
pub const PROVIDER_KEY: &[u8] = b"/nodus/compute/coordinators";
pub const MAX_FRAME: usize = 24 << 20;
/// Most units one Work request may ask for, and one Submit may carry.
pub const MAX_BATCH: usize = 256;
/// Most projects one announcement list may carry.
pub const MAX_PROJECTS: usize = 256;
pub const MAX_NAME: usize = 128;
pub const MAX_CLASS: usize = 64;

pub type ProjectId = [u8; 16];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Projects,
    Module {
        project: ProjectId,
    },
    /// `class`: what this volunteer's results agree with ([`crate::sandbox::class`]);
    /// `payout`: where it is paid, by projects that pay ([`crate::pay`]).
    Work {
        project: ProjectId,
        max: u16,
        class: String,
        payout: Option<[u8; 20]>,
    },
    Submit {
        project: ProjectId,
        results: Vec<Returned>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Projects(Vec<Announce>),
    Module {
        wasm: Vec<u8>,
    },
    Units {
        units: Vec<Assignment>,
        credit: u64,
    },
    /// Nothing to hand out now; `finished`: never again (done or cancelled).
    NoWork {
        finished: bool,
        credit: u64,
    },
    Accepted {
        credit: u64,
    },
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("no such project here")]
    UnknownProject,
    #[error("the coordinator is busy; try later")]
    Busy,
}

/// What a coordinator says about a project that has work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    pub project: ProjectId,
    pub name: String,
    /// sha256 of the module's bytes: a volunteer runs nothing else.
    pub module: [u8; 32],
    pub module_len: u32,
    pub fuel: u64,
    pub memory_mb: u32,
    pub output_bytes: u32,
    pub deadline_secs: u32,
    pub units: u32,
    pub open: u32,
    /// Units run with NaNs canonicalised (their replicas may cross architectures).
    pub canonical_nans: bool,
}

/// One replica of a unit, handed to one volunteer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub unit: u32,
    pub replica: u32,
    pub job: Job,
}

/// A finished replica, as the volunteer reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Returned {
    pub unit: u32,
    pub replica: u32,
    pub fuel: u64,
    pub result: Result<Output, Failure>,
}

/// The hash a quorum compares: sha256 over the output's postcard encoding (exit code,
/// stdout, files in name order).
pub fn output_hash(output: &Output) -> [u8; 32] {
    let mut files = output.files.clone();
    files.sort();
    let canonical = Output {
        exit_code: output.exit_code,
        stdout: output.stdout.clone(),
        files,
    };
    Sha256::digest(encode(&canonical)).into()
}

/// A module's hash, as announced.
pub fn module_hash(wasm: &[u8]) -> [u8; 32] {
    Sha256::digest(wasm).into()
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Frame(#[from] nodus_net::frame::FrameError),
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("a frame that does not decode: {0}")]
    Decode(String),
    #[error("{0}")]
    Limit(&'static str),
    #[error("the stream ended")]
    Closed,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard encodes owned values")
}

fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, WireError> {
    postcard::from_bytes(raw).map_err(|e| WireError::Decode(e.to_string()))
}

/// A request, with the limits a coordinator holds peers to.
pub fn decode_request(raw: &[u8]) -> Result<Request, WireError> {
    let r: Request = decode(raw)?;
    if let Request::Submit { results, .. } = &r
        && results.len() > MAX_BATCH
    {
        return Err(WireError::Limit("more results in one submit than allowed"));
    }
    if let Request::Work { max, class, .. } = &r {
        if *max as usize > MAX_BATCH {
            return Err(WireError::Limit("more units asked for than allowed"));
        }
        if class.len() > MAX_CLASS {
            return Err(WireError::Limit("a class name over the limit"));
        }
    }
    Ok(r)
}

/// A reply, with the limits a volunteer holds coordinators to.
pub fn decode_reply(raw: &[u8]) -> Result<Reply, WireError> {
    let r: Reply = decode(raw)?;
    match &r {
        Reply::Units { units, .. } if units.len() > MAX_BATCH => {
            Err(WireError::Limit("more units than asked for"))
        }
        Reply::Projects(p) if p.len() > MAX_PROJECTS => {
            Err(WireError::Limit("more projects than allowed"))
        }
        Reply::Projects(p) if p.iter().any(|a| a.name.len() > MAX_NAME) => {
            Err(WireError::Limit("a project name over the limit"))
        }
        _ => Ok(r),
    }
}

/// An announcement from gossip.
pub fn decode_announce(raw: &[u8]) -> Result<Announce, WireError> {
    let a: Announce = decode(raw)?;
    if a.name.len() > MAX_NAME {
        return Err(WireError::Limit("a project name over the limit"));
    }
    Ok(a)
}

pub async fn write<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
) -> Result<(), WireError> {
    Ok(nodus_net::frame::write(w, &encode(value), MAX_FRAME).await?)
}

pub async fn read_raw<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, WireError> {
    nodus_net::frame::read(r, MAX_FRAME)
        .await?
        .ok_or(WireError::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_hash_does_not_depend_on_file_order() {
        let a = Output {
            exit_code: 0,
            stdout: b"x".to_vec(),
            files: vec![("a".into(), vec![1]), ("b".into(), vec![2])],
        };
        let mut b = a.clone();
        b.files.reverse();
        assert_eq!(output_hash(&a), output_hash(&b));
        b.stdout.push(b'y');
        assert_ne!(output_hash(&a), output_hash(&b));
    }

    #[test]
    fn limits_are_held() {
        let big = Request::Work {
            project: [0; 16],
            max: MAX_BATCH as u16 + 1,
            class: String::new(),
            payout: None,
        };
        assert!(matches!(
            decode_request(&encode(&big)),
            Err(WireError::Limit(_))
        ));
        assert!(decode_request(&[0xff, 0xff]).is_err());
    }
}
