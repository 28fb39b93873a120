//! The node's Olm account and its pairwise sessions, in memory; [`crate::store`] holds
//! their pickles. Nothing here touches the network or the disk: callers persist
//! [`Crypto::account_pickle`] and [`Crypto::session_pickles`] in the same transaction as
//! the messages the change belongs to.

use std::collections::HashMap;

use vodozemac::olm::{Account, OlmMessage, Session, SessionConfig, SessionPickle};
use vodozemac::Curve25519PublicKey;

use crate::seal::SealKey;

/// Sessions kept per peer (both sides starting a session at once leaves two).
const MAX_SESSIONS: usize = 4;
/// One-time keys kept published; replenished when fewer than half remain.
pub const BUNDLE_KEYS: usize = 20;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OlmError {
    #[error("no session with this peer")]
    NoSession,
    #[error("not a valid Olm message")]
    Malformed,
    #[error("decryption failed (tampered, replayed, or for a session we do not hold)")]
    Undecryptable,
    #[error("bad key: {0}")]
    BadKey(String),
}

pub struct Crypto {
    pub account: Account,
    pub seal: SealKey,
    sessions: HashMap<String, Vec<Session>>,
    /// One-time keys we published and not yet saw used.
    pub published: Vec<[u8; 32]>,
}

pub struct Decrypted {
    pub plaintext: Vec<u8>,
    /// A pre-key message used up one of our one-time keys: the account changed.
    pub used_one_time_key: Option<[u8; 32]>,
}

impl Crypto {
    pub fn new() -> Crypto {
        let mut account = Account::new();
        account.generate_fallback_key();
        account.mark_keys_as_published();
        Crypto {
            account,
            seal: SealKey::generate(),
            sessions: HashMap::new(),
            published: Vec::new(),
        }
    }

    pub fn restore(
        account: Account,
        seal: SealKey,
        sessions: HashMap<String, Vec<Session>>,
        published: Vec<[u8; 32]>,
    ) -> Crypto {
        Crypto {
            account,
            seal,
            sessions,
            published,
        }
    }

    pub fn curve25519(&self) -> [u8; 32] {
        self.account.curve25519_key().to_bytes()
    }

    pub fn ed25519(&self) -> [u8; 32] {
        *self.account.ed25519_key().as_bytes()
    }

    pub fn fallback_key(&self) -> Option<[u8; 32]> {
        self.account
            .fallback_key()
            .values()
            .next()
            .map(|k| k.to_bytes())
    }

    /// Makes `n` new one-time keys and returns their public halves.
    pub fn new_one_time_keys(&mut self, n: usize) -> Vec<[u8; 32]> {
        let created = self.account.generate_one_time_keys(n).created;
        self.account.mark_keys_as_published();
        created.iter().map(|k| k.to_bytes()).collect()
    }

    pub fn has_session(&self, peer: &str) -> bool {
        self.sessions.get(peer).is_some_and(|s| !s.is_empty())
    }

    pub fn session_pickles(&self, peer: &str) -> Vec<SessionPickle> {
        self.sessions
            .get(peer)
            .map(|s| s.iter().map(|s| s.pickle()).collect())
            .unwrap_or_default()
    }

    /// Opens a session to a peer from its identity key and one of its one-time keys.
    pub fn start_session(
        &mut self,
        peer: &str,
        identity: &[u8; 32],
        one_time_key: &[u8; 32],
    ) -> Result<(), OlmError> {
        let session = self
            .account
            .create_outbound_session(
                SessionConfig::version_1(),
                Curve25519PublicKey::from_bytes(*identity),
                Curve25519PublicKey::from_bytes(*one_time_key),
            )
            .map_err(|e| OlmError::BadKey(e.to_string()))?;
        self.add_session(peer, session);
        Ok(())
    }

    fn add_session(&mut self, peer: &str, session: Session) {
        let list = self.sessions.entry(peer.to_string()).or_default();
        list.insert(0, session);
        list.truncate(MAX_SESSIONS);
    }

    /// Drops every session with `peer` (its one-time key was refused, say).
    pub fn forget_sessions(&mut self, peer: &str) {
        self.sessions.remove(peer);
    }

    pub fn encrypt(&mut self, peer: &str, plaintext: &[u8]) -> Result<(u8, Vec<u8>), OlmError> {
        let session = self
            .sessions
            .get_mut(peer)
            .and_then(|s| s.first_mut())
            .ok_or(OlmError::NoSession)?;
        let msg = session
            .encrypt(plaintext)
            .map_err(|e| OlmError::BadKey(e.to_string()))?;
        let (kind, bytes) = msg.to_parts();
        Ok((kind as u8, bytes))
    }

    /// Decrypts a message from `peer`, whose identity key is `identity`. A pre-key
    /// message for no session we hold opens a new one (using up a one-time key).
    pub fn decrypt(
        &mut self,
        peer: &str,
        identity: &[u8; 32],
        kind: u8,
        ciphertext: &[u8],
    ) -> Result<Decrypted, OlmError> {
        let msg =
            OlmMessage::from_parts(kind as usize, ciphertext).map_err(|_| OlmError::Malformed)?;
        let list = self.sessions.entry(peer.to_string()).or_default();
        for i in 0..list.len() {
            if let OlmMessage::PreKey(m) = &msg
                && list[i].session_id() != m.session_id()
            {
                continue;
            }
            match list[i].decrypt(&msg) {
                Ok(plaintext) => {
                    // The session that works is the one to answer on.
                    let s = list.remove(i);
                    list.insert(0, s);
                    return Ok(Decrypted {
                        plaintext,
                        used_one_time_key: None,
                    });
                }
                Err(_) if matches!(msg, OlmMessage::PreKey(_)) => {
                    return Err(OlmError::Undecryptable);
                }
                Err(_) => {}
            }
        }
        let OlmMessage::PreKey(m) = &msg else {
            return Err(OlmError::Undecryptable);
        };
        let otk = m.one_time_key().to_bytes();
        let created = self
            .account
            .create_inbound_session(
                SessionConfig::version_1(),
                Curve25519PublicKey::from_bytes(*identity),
                m,
            )
            .map_err(|_| OlmError::Undecryptable)?;
        self.add_session(peer, created.session);
        self.published.retain(|k| *k != otk);
        Ok(Decrypted {
            plaintext: created.plaintext,
            used_one_time_key: Some(otk),
        })
    }

    /// Whether fewer than half the published one-time keys remain.
    pub fn needs_keys(&self) -> bool {
        self.published.len() < BUNDLE_KEYS / 2
    }
}

impl Default for Crypto {
    fn default() -> Self {
        Crypto::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Crypto, Crypto) {
        let alice = Crypto::new();
        let mut bob = Crypto::new();
        let otks = bob.new_one_time_keys(5);
        bob.published = otks.clone();
        let mut alice = alice;
        alice
            .start_session("bob", &bob.curve25519(), &otks[0])
            .unwrap();
        (alice, bob)
    }

    #[test]
    fn conversation_tamper_replay_reorder() {
        let (mut alice, mut bob) = pair();
        let a_id = alice.curve25519();
        let b_id = bob.curve25519();
        let (k, c) = alice.encrypt("bob", b"hello").unwrap();
        let d = bob.decrypt("alice", &a_id, k, &c).unwrap();
        assert_eq!(d.plaintext, b"hello");
        assert!(d.used_one_time_key.is_some());
        assert_eq!(bob.published.len(), 4);
        // Replay of the same pre-key message: refused.
        assert_eq!(
            bob.decrypt("alice", &a_id, k, &c).err(),
            Some(OlmError::Undecryptable)
        );

        let (k, c) = bob.encrypt("alice", b"hi").unwrap();
        assert_eq!(alice.decrypt("bob", &b_id, k, &c).unwrap().plaintext, b"hi");

        // Out of order: the third message arrives before the second.
        let m2 = alice.encrypt("bob", b"two").unwrap();
        let m3 = alice.encrypt("bob", b"three").unwrap();
        assert_eq!(bob.decrypt("alice", &a_id, m3.0, &m3.1).unwrap().plaintext, b"three");
        assert_eq!(bob.decrypt("alice", &a_id, m2.0, &m2.1).unwrap().plaintext, b"two");
        // Replayed normal message.
        assert!(bob.decrypt("alice", &a_id, m2.0, &m2.1).is_err());

        // Tampered.
        let (k, mut c) = alice.encrypt("bob", b"four").unwrap();
        let last = c.len() - 1;
        c[last] ^= 0x40;
        assert_eq!(
            bob.decrypt("alice", &a_id, k, &c).err(),
            Some(OlmError::Undecryptable)
        );
        assert_eq!(
            bob.decrypt("alice", &a_id, 7, &[1, 2, 3]).err(),
            Some(OlmError::Malformed)
        );
    }
}
