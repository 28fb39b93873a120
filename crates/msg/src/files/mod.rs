//! Files sent with messages: photos, videos, documents, of any size up to
//! `[msg] max_file_mib`.
//!
//! A file does not travel inside the message. The sender keeps it in its file store
//! ([`blobs`], named by the SHA-256 of its bytes) and the message (Olm-encrypted, through
//! the outbox and mailboxes as any other) carries a [`crate::wire::FileOffer`]: the hash,
//! the size, a name, a media type and a fresh 32-byte key. The recipient then fetches
//! the file from the sender over [`crate::wire::FILE_PROTOCOL`] ([`transfer`]).
//!
//! # The file protocol (`/nodus/file/1`)
//!
//! 1. The recipient writes one frame (big-endian u32 length, postcard body, at most
//!    [`MAX_REQUEST`] bytes): `FileRequest { hash, from }`, `from` being a chunk index.
//! 2. The sender answers with one frame, `FileReply::Sending { size }` or
//!    `FileReply::Refused(reason)`. It serves a hash only to a peer it offered that
//!    file to (a grant); anyone else is refused, so a hash alone reveals nothing.
//! 3. After `Sending`, chunks `from, from + 1, ...` follow as raw bytes, each the
//!    [`crypt::CHUNK`]-byte slice of the file (the last may be shorter) sealed with
//!    ChaCha20-Poly1305 under the offer's key ([`crypt`]): ciphertext then a 16-byte tag.
//!    Lengths follow from `size`, so there is no framing. The sender then closes.
//!
//! Invariants:
//! - A chunk is written to the recipient's partial file only after its tag checks; the
//!   file is synced before the progress that counts it is committed, so a restart
//!   resumes from committed progress and every byte before it is genuine.
//! - A download is complete only when the whole file hashes to the offer's hash; then
//!   the partial file is renamed to its hash. A sender whose bytes do not match its
//!   offer is refused for good (and struck in the overlay).
//! - The recipient never allocates what the sender claims: buffers are one chunk; the
//!   size must equal the offer's, which must be within `max_file_mib`.
//! - The same bytes are stored once, whoever sent them and however often.

pub mod blobs;
pub mod crypt;
pub(crate) mod transfer;

pub use blobs::{Blobs, ImportError, NoRoom};

/// Largest request frame.
pub const MAX_REQUEST: usize = 1024;
