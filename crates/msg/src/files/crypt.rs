//! How a file's chunks are sealed on the wire: ChaCha20-Poly1305 (RustCrypto's audited
//! `chacha20poly1305`) under the offer's key, chunk `i` with the nonce `i` (96-bit
//! big-endian) and the associated data `hash ‖ size ‖ i` (32 + 8 + 8 bytes, big-endian
//! numbers). A key seals one offer's file only, so a nonce never repeats under a key; a
//! chunk moved to another index, another file or another size fails its tag.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};

use crate::wire::FileHash;

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 256 * 1024;
/// Bytes a seal adds to each chunk.
pub const TAG: usize = 16;

/// The chunk's tag did not check: damaged, or not sealed under this key and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a chunk failed its authentication tag")]
pub struct Tampered;

/// Chunks in a file of `size` bytes.
pub fn chunks(size: u64) -> u64 {
    size.div_ceil(CHUNK as u64)
}

/// Plaintext length of chunk `index` of a `size`-byte file (0 past the end).
pub fn chunk_len(size: u64, index: u64) -> usize {
    let start = index.saturating_mul(CHUNK as u64);
    size.saturating_sub(start).min(CHUNK as u64) as usize
}

/// The sealing of one offer's file.
pub struct FileCipher {
    aead: ChaCha20Poly1305,
    hash: FileHash,
    size: u64,
}

impl FileCipher {
    pub fn new(key: &[u8; 32], hash: FileHash, size: u64) -> FileCipher {
        FileCipher {
            aead: ChaCha20Poly1305::new(key.into()),
            hash,
            size,
        }
    }

    fn nonce_aad(&self, index: u64) -> (Nonce, [u8; 48]) {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&index.to_be_bytes());
        let mut aad = [0u8; 48];
        aad[..32].copy_from_slice(&self.hash);
        aad[32..40].copy_from_slice(&self.size.to_be_bytes());
        aad[40..].copy_from_slice(&index.to_be_bytes());
        (nonce.into(), aad)
    }

    /// Seals chunk `index`: `buf` holds its plaintext and gets the tag appended.
    pub fn seal(&self, index: u64, buf: &mut Vec<u8>) {
        let (nonce, aad) = self.nonce_aad(index);
        // Fails only past 2^38 bytes per chunk, which a chunk never is.
        if let Ok(tag) = self
            .aead
            .encrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into())
        {
            buf.extend_from_slice(&tag);
        }
    }

    /// Opens chunk `index` in place: on success `buf` is its plaintext.
    pub fn open(&self, index: u64, buf: &mut Vec<u8>) -> Result<(), Tampered> {
        let body = buf.len().checked_sub(TAG).ok_or(Tampered)?;
        let (nonce, aad) = self.nonce_aad(index);
        let (text, tag) = buf.split_at_mut(body);
        let tag = Tag::try_from(&*tag).map_err(|_| Tampered)?;
        self.aead
            .decrypt_inout_detached(&nonce, &aad, text.into(), &tag)
            .map_err(|_| Tampered)?;
        buf.truncate(body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_arithmetic() {
        assert_eq!(chunks(0), 0);
        assert_eq!(chunks(1), 1);
        assert_eq!(chunks(CHUNK as u64), 1);
        assert_eq!(chunks(CHUNK as u64 + 1), 2);
        assert_eq!(chunk_len(CHUNK as u64 + 5, 0), CHUNK);
        assert_eq!(chunk_len(CHUNK as u64 + 5, 1), 5);
        assert_eq!(chunk_len(CHUNK as u64 + 5, 2), 0);
        assert_eq!(chunk_len(10, u64::MAX), 0);
    }

    /// A test vector, computed independently with Python's `cryptography`
    /// (`ChaCha20Poly1305(key).encrypt(nonce, b"hello", aad)`): key 32 × 0x01, hash
    /// 32 × 0x02, size 5, chunk 0 holding "hello".
    #[test]
    fn sealing_matches_its_test_vector() {
        let c = FileCipher::new(&[1; 32], [2; 32], 5);
        let mut buf = b"hello".to_vec();
        c.seal(0, &mut buf);
        assert_eq!(buf.len(), 5 + TAG);
        assert_eq!(hex::encode(&buf), VECTOR);
        c.open(0, &mut buf).unwrap();
        assert_eq!(buf, b"hello");
    }
    const VECTOR: &str = "694221bd81f733eca7f6f5e986e04e43f6847da7c0";

    #[test]
    fn a_moved_or_flipped_chunk_fails() {
        let c = FileCipher::new(&[7; 32], [9; 32], 3 * CHUNK as u64);
        let mut sealed = vec![5u8; CHUNK];
        c.seal(1, &mut sealed);
        // Another index, another file, another size, another key: all refused.
        assert_eq!(c.open(2, &mut sealed.clone()), Err(Tampered));
        let other_file = FileCipher::new(&[7; 32], [8; 32], 3 * CHUNK as u64);
        assert_eq!(other_file.open(1, &mut sealed.clone()), Err(Tampered));
        let other_size = FileCipher::new(&[7; 32], [9; 32], 3 * CHUNK as u64 + 1);
        assert_eq!(other_size.open(1, &mut sealed.clone()), Err(Tampered));
        let other_key = FileCipher::new(&[6; 32], [9; 32], 3 * CHUNK as u64);
        assert_eq!(other_key.open(1, &mut sealed.clone()), Err(Tampered));
        let mut flipped = sealed.clone();
        flipped[100] ^= 1;
        assert_eq!(c.open(1, &mut flipped), Err(Tampered));
        assert_eq!(c.open(1, &mut vec![0; 3]), Err(Tampered));
        c.open(1, &mut sealed).unwrap();
        assert_eq!(sealed, vec![5u8; CHUNK]);
    }

    proptest::proptest! {
        /// Whatever bytes arrive as a chunk, opening them is an answer, never a panic,
        /// and only the genuine seal opens.
        #[test]
        fn any_bytes_open_or_are_refused(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..600), index in 0u64..4) {
            let c = FileCipher::new(&[3; 32], [4; 32], 1000);
            let mut buf = raw.clone();
            proptest::prop_assert!(c.open(index, &mut buf).is_err());
            let mut sealed = raw.clone();
            c.seal(index, &mut sealed);
            c.open(index, &mut sealed).unwrap();
            proptest::prop_assert_eq!(sealed, raw);
        }
    }
}
