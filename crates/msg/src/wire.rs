//! What peers send each other, and the framing of it.
//!
//! Two stream protocols: [`MSG_PROTOCOL`] carries [`Envelope`]s straight to their
//! recipient (over a direct connection or a relayed circuit, both end-to-end Noise), and
//! [`MAILBOX_PROTOCOL`] stores sealed envelopes on the peers closest to an offline
//! recipient. Every frame is a big-endian u32 length and a postcard body of at most
//! [`MAX_FRAME`] bytes; a longer length or a body that does not decode ends the stream.

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::card::ContactCard;

pub const MSG_PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/msg/1");
pub const MAILBOX_PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/mailbox/1");
/// Files a message offers, fetched from their sender by content hash ([`crate::files`]).
pub const FILE_PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/file/1");

/// Largest text a person may send (64 KiB), and the frame that must hold it with its
/// encryption overhead (Olm's base64-free binary form adds well under 1 KiB).
pub const MAX_TEXT: usize = 64 * 1024;
pub const MAX_FRAME: usize = 192 * 1024;
/// At most this many items in one mailbox reply.
pub const MAX_FETCH: usize = 256;
/// Largest signal body, and the longest name of the service sending it.
pub const MAX_SIGNAL: usize = 16 * 1024;
pub const MAX_SIGNAL_APP: usize = 32;

pub type MsgId = [u8; 16];
/// SHA-256 of a file's bytes: how files are named, stored and asked for.
pub type FileHash = [u8; 32];

/// At most this many files in one message.
pub const MAX_FILES: usize = 16;
/// Longest file name and media type a message may carry.
pub const MAX_FILE_NAME: usize = 255;
pub const MAX_MIME: usize = 127;

/// An end-to-end encrypted message as it travels. `id` is also inside the ciphertext,
/// so a replay under a fresh id is caught when the two differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: MsgId,
    /// The sender's peer id (bytes). Checked against the stream's authenticated peer on
    /// direct delivery, and by the Olm session bound to that peer's keys otherwise.
    pub sender: Vec<u8>,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// A pairwise Olm message. The sender's card rides along on pre-key messages so a
    /// recipient who never saw an invite from the sender can verify who it is.
    Olm {
        card: Option<ContactCard>,
        kind: u8,
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
    },
    /// A group message under the sender's Megolm session `session` (its id).
    Group {
        group: MsgId,
        session: String,
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
    },
}

/// The recipient's answer to each delivered envelope, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MsgReply {
    /// Stored (or already had it): the sender may forget it.
    Ack(MsgId),
    /// Refused for good; retrying the same bytes will not help.
    Reject { id: MsgId, reason: RejectReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// Authentication failed: tampered, replayed, or not for any session we hold.
    Undecryptable,
    /// The sender field does not match who sent it.
    WrongSender,
    /// A group we do not know (yet: its membership may still be on the way).
    UnknownGroup,
    /// The sender's group key has not reached us yet; worth retrying.
    MissingKey,
    /// The plaintext does not parse or its inner id differs from the envelope's.
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MailboxRequest {
    /// Keep `sealed` for the peer `to` for at most `ttl_secs`;
    /// `order` is the sender's queue position: items are handed back in it, because
    /// a ratchet keeps only a few keys for messages that arrive out of order.
    Store {
        to: Vec<u8>,
        id: MsgId,
        order: u64,
        ttl_secs: u32,
        #[serde(with = "serde_bytes")]
        sealed: Vec<u8>,
    },
    /// Items held for the asking peer (the stream's authenticated peer).
    Fetch { max: u32 },
    /// Forget items held for the asking peer.
    Delete { ids: Vec<MsgId> },
    /// Forget items the asking peer stored for `to` (its recipient acknowledged them).
    Retract { to: Vec<u8>, ids: Vec<MsgId> },
    /// A nonce to sign ([`MailboxReply::Nonce`]), so that the stream can speak for an
    /// identity that is not its peer's: an anonymous one, whose stream comes from the
    /// last relay of a circuit.
    Challenge,
    /// From now on the stream's asking peer is the identity of `key` (a public key,
    /// protobuf-encoded), which signed [`proof_payload`] for this mailbox and the last
    /// nonce of this stream (each nonce proves once).
    Prove {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        sig: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MailboxReply {
    Stored,
    Refused(String),
    Items(Vec<MailboxItem>),
    Deleted(u32),
    Nonce([u8; 32]),
    /// The stream now speaks for the proven identity.
    Proven,
}

/// What an identity signs to speak for itself on a mailbox's stream: the domain, the
/// mailbox's peer id (a proof for one mailbox is no good at another) and its nonce.
pub fn proof_payload(mailbox: &PeerId, nonce: &[u8; 32]) -> Vec<u8> {
    let mut p = b"nodus-mailbox-proof-1".to_vec();
    p.extend_from_slice(&mailbox.to_bytes());
    p.extend_from_slice(nonce);
    p
}

/// The identity a [`MailboxRequest::Prove`] proves, if its signature checks.
pub fn check_proof(mailbox: &PeerId, nonce: &[u8; 32], key: &[u8], sig: &[u8]) -> Option<PeerId> {
    let key = libp2p::identity::PublicKey::try_decode_protobuf(key).ok()?;
    key.verify(&proof_payload(mailbox, nonce), sig)
        .then(|| key.to_peer_id())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxItem {
    pub id: MsgId,
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

/// What is inside an Olm message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plain {
    /// Must equal the envelope's id.
    pub id: MsgId,
    /// The sender's counter for this conversation: the recipient orders by it.
    pub seq: u64,
    pub sent_ms: u64,
    pub content: Content,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Content {
    Text(String),
    /// Texts sent together (each with its own id, seq and time), under one Olm message:
    /// one ratchet step and one acknowledgement for all of them. Only texts inside.
    Batch(Vec<Plain>),
    /// Delivery or read receipts for messages the other side sent.
    Receipt {
        ids: Vec<MsgId>,
        read: bool,
    },
    /// The sender's current Megolm session key for a group.
    GroupKey {
        group: MsgId,
        session_key: Vec<u8>,
    },
    /// The group's name and members, from its owner. A member left out has been removed.
    GroupState {
        group: MsgId,
        name: String,
        epoch: u64,
        members: Vec<ContactCard>,
    },
    /// A message with files: the text (may be empty) and, for each file, what the
    /// recipient needs to fetch it from the sender over [`FILE_PROTOCOL`] and check it.
    Files {
        text: String,
        files: Vec<FileOffer>,
    },
    /// A service's signal to a contact (a call's ringing and its keys), end-to-end
    /// encrypted as texts are, delivered as they are, never stored as a message.
    Signal {
        app: String,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
}

/// A file offered in a message. The sender serves it to this recipient only, in chunks
/// sealed with `key` ([`crate::files::crypt`]); the recipient checks each chunk as it
/// arrives and the whole against `hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileOffer {
    pub hash: FileHash,
    pub size: u64,
    pub name: String,
    pub mime: String,
    pub key: [u8; 32],
}

impl FileOffer {
    /// Whether a peer's offer is within the limits every honest sender keeps.
    pub fn well_formed(&self) -> bool {
        !self.name.is_empty() && self.name.len() <= MAX_FILE_NAME && self.mime.len() <= MAX_MIME
    }
}

/// Asks the sender of a message for one of its files, from chunk `from` on (a download
/// that was cut resumes where its last synced chunk ended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRequest {
    pub hash: FileHash,
    pub from: u64,
}

/// The answer; after `Sending` the chunks follow as raw bytes (see [`crate::files`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FileReply {
    Sending { size: u64 },
    Refused(String),
}

/// What is inside a Megolm message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupPlain {
    pub id: MsgId,
    pub seq: u64,
    pub sent_ms: u64,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard only fails on types serde cannot express, which ours never are.
    postcard::to_allocvec(value).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    Ok(postcard::from_bytes(bytes)?)
}

pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
) -> Result<(), WireError> {
    let body = encode(value);
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len()));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
) -> Result<Option<T>, WireError> {
    read_frame_max(r, MAX_FRAME).await
}

/// Reads one frame of at most `max` bytes.
pub async fn read_frame_max<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max: usize,
) -> Result<Option<T>, WireError> {
    use nodus_net::frame::{self, FrameError};
    match frame::read(r, max).await {
        Ok(Some(body)) => decode(&body).map(Some),
        Ok(None) => Ok(None),
        Err(FrameError::Io(e)) => Err(e.into()),
        Err(FrameError::TooLarge { len, .. }) => Err(WireError::TooLarge(len)),
    }
}

/// A new message id: the time in milliseconds (48 bits, big-endian), then 80 random
/// bits. Ids key several tables (seen, msg_index, outbox); ids that grow with time land
/// at the end of those B-trees instead of on a random page each, so a batch of messages
/// rewrites a few pages rather than one per message.
pub fn new_id() -> MsgId {
    let mut id: MsgId = rand::random();
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    id[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_proof_speaks_for_its_key_at_its_mailbox_for_its_nonce_only() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let (mailbox, other) = (PeerId::random(), PeerId::random());
        let nonce = [7u8; 32];
        let sig = key.sign(&proof_payload(&mailbox, &nonce)).unwrap();
        let public = key.public().encode_protobuf();
        assert_eq!(
            check_proof(&mailbox, &nonce, &public, &sig),
            Some(key.public().to_peer_id())
        );
        assert_eq!(check_proof(&other, &nonce, &public, &sig), None);
        assert_eq!(check_proof(&mailbox, &[8; 32], &public, &sig), None);
        let someone = libp2p::identity::Keypair::generate_ed25519().public();
        assert_eq!(
            check_proof(&mailbox, &nonce, &someone.encode_protobuf(), &sig),
            None
        );
        let mut bent = sig.clone();
        bent[0] ^= 1;
        assert_eq!(check_proof(&mailbox, &nonce, &public, &bent), None);
        assert_eq!(check_proof(&mailbox, &nonce, b"not a key", &sig), None);
    }

    /// Byte fields are written as one run (serde_bytes) instead of byte by byte, which
    /// postcard encodes the same way: nodes of either build read each other's frames.
    #[test]
    fn byte_fields_encode_as_before() {
        #[derive(Serialize)]
        enum BodyBefore {
            Olm {
                card: Option<ContactCard>,
                kind: u8,
                ciphertext: Vec<u8>,
            },
        }
        #[derive(Serialize)]
        struct EnvelopeBefore {
            id: MsgId,
            sender: Vec<u8>,
            body: BodyBefore,
        }
        let ciphertext: Vec<u8> = (0..=255).cycle().take(70_000).collect();
        let now = Envelope {
            id: [3; 16],
            sender: vec![1, 2, 3],
            body: Body::Olm {
                card: None,
                kind: 1,
                ciphertext: ciphertext.clone(),
            },
        };
        let before = EnvelopeBefore {
            id: [3; 16],
            sender: vec![1, 2, 3],
            body: BodyBefore::Olm {
                card: None,
                kind: 1,
                ciphertext,
            },
        };
        assert_eq!(encode(&now), encode(&before));
        assert_eq!(decode::<Envelope>(&encode(&before)).unwrap(), now);
    }

    #[test]
    fn envelope_round_trip() {
        let e = Envelope {
            id: new_id(),
            sender: vec![1, 2, 3],
            body: Body::Olm {
                card: None,
                kind: 1,
                ciphertext: vec![9; 100],
            },
        };
        let back: Envelope = decode(&encode(&e)).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn ids_grow_with_time_and_stay_unique() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert!(hex::encode(a) < hex::encode(b));
        let many: std::collections::HashSet<MsgId> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(many.len(), 10_000);
    }

    /// Bytes that decode must be a value that encodes back to a decodable equal; bytes
    /// that do not are a `Decode` error (never a panic, never another kind).
    fn decodes_or_is_refused<T>(raw: &[u8]) -> Result<(), proptest::test_runner::TestCaseError>
    where
        T: serde::de::DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
    {
        match decode::<T>(raw) {
            Ok(v) => proptest::prop_assert_eq!(decode::<T>(&encode(&v)).unwrap(), v),
            Err(e) => proptest::prop_assert!(matches!(e, WireError::Decode(_)), "{e}"),
        }
        Ok(())
    }

    #[test]
    fn garbage_is_a_decode_error() {
        for raw in [
            &b""[..],
            &[0xff; 8],
            &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ] {
            assert!(matches!(decode::<Envelope>(raw), Err(WireError::Decode(_))));
            assert!(matches!(
                decode::<MailboxRequest>(raw),
                Err(WireError::Decode(_))
            ));
            assert!(matches!(
                decode::<MailboxReply>(raw),
                Err(WireError::Decode(_))
            ));
            assert!(matches!(decode::<MsgReply>(raw), Err(WireError::Decode(_))));
            assert!(matches!(decode::<Plain>(raw), Err(WireError::Decode(_))));
            assert!(matches!(
                decode::<FileReply>(raw),
                Err(WireError::Decode(_))
            ));
        }
    }

    fn bytes(max: usize) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::num::u8::ANY, 0..max)
    }

    fn id() -> impl proptest::strategy::Strategy<Value = MsgId> {
        proptest::array::uniform16(proptest::num::u8::ANY)
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused(raw in bytes(512)) {
            decodes_or_is_refused::<Envelope>(&raw)?;
            decodes_or_is_refused::<MsgReply>(&raw)?;
            decodes_or_is_refused::<MailboxRequest>(&raw)?;
            decodes_or_is_refused::<MailboxReply>(&raw)?;
            decodes_or_is_refused::<Plain>(&raw)?;
            decodes_or_is_refused::<GroupPlain>(&raw)?;
            decodes_or_is_refused::<FileRequest>(&raw)?;
            decodes_or_is_refused::<FileReply>(&raw)?;
        }

        #[test]
        fn envelopes_round_trip(i in id(), sender in bytes(64), kind in proptest::num::u8::ANY, ct in bytes(512), group in id(), session in ".{0,20}", olm in proptest::bool::ANY) {
            let body = if olm {
                Body::Olm { card: None, kind, ciphertext: ct }
            } else {
                Body::Group { group, session, ciphertext: ct }
            };
            let e = Envelope { id: i, sender, body };
            proptest::prop_assert_eq!(decode::<Envelope>(&encode(&e)).unwrap(), e);
        }

        #[test]
        fn mailbox_requests_round_trip(to in bytes(64), i in id(), order in proptest::num::u64::ANY, ttl in proptest::num::u32::ANY, sealed in bytes(256), ids in proptest::collection::vec(id(), 0..8)) {
            for req in [
                MailboxRequest::Store { to: to.clone(), id: i, order, ttl_secs: ttl, sealed: sealed.clone() },
                MailboxRequest::Fetch { max: ttl },
                MailboxRequest::Delete { ids: ids.clone() },
                MailboxRequest::Retract { to: to.clone(), ids: ids.clone() },
                MailboxRequest::Challenge,
                MailboxRequest::Prove { key: to.clone(), sig: sealed.clone() },
            ] {
                proptest::prop_assert_eq!(decode::<MailboxRequest>(&encode(&req)).unwrap(), req);
            }
        }

        #[test]
        fn plaintexts_round_trip(i in id(), seq in proptest::num::u64::ANY, ms in proptest::num::u64::ANY, text in ".{0,64}", ids in proptest::collection::vec(id(), 0..8), read in proptest::bool::ANY) {
            for content in [
                Content::Text(text.clone()),
                Content::Receipt { ids: ids.clone(), read },
                Content::Batch(vec![Plain { id: i, seq, sent_ms: ms, content: Content::Text(text.clone()) }]),
                Content::Files { text: text.clone(), files: vec![FileOffer { hash: [seq as u8; 32], size: ms, name: text.clone(), mime: "image/png".into(), key: [read as u8; 32] }] },
            ] {
                let p = Plain { id: i, seq, sent_ms: ms, content };
                proptest::prop_assert_eq!(decode::<Plain>(&encode(&p)).unwrap(), p);
            }
        }
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_before_allocation() {
        let mut bytes = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        let mut r = futures::io::Cursor::new(bytes);
        let got = read_frame::<_, Envelope>(&mut r).await;
        assert!(matches!(got, Err(WireError::TooLarge(_))));
    }
}
