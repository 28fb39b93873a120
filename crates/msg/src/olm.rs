//! The node's Olm account and its pairwise sessions, in memory; [`crate::store`] holds
//! their pickles. Nothing here touches the network or the disk: callers persist
//! [`Crypto::account_pickle`] and [`Crypto::session_pickles`] in the same transaction as
//! the messages the change belongs to.

use std::collections::HashMap;

use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{Account, OlmMessage, Session, SessionConfig, SessionPickle};

use crate::seal::SealKey;

/// Sessions kept per peer (both sides starting a session at once leaves two).
const MAX_SESSIONS: usize = 4;
/// One-time keys kept published; replenished when fewer than half remain.
pub const BUNDLE_KEYS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum OlmError {
    #[error("no session with this peer")]
    NoSession,
    #[error("not a valid Olm message")]
    Malformed,
    #[error("decryption failed (tampered, replayed, or for a session we do not hold)")]
    Undecryptable,
    #[error("the peer's keys cannot start a session: {0}")]
    BadKey(#[from] vodozemac::olm::SessionCreationError),
    #[error("the session refused to encrypt: {0}")]
    Encrypt(#[from] vodozemac::olm::EncryptionError),
}

pub struct Crypto {
    pub account: Account,
    pub seal: SealKey,
    sessions: HashMap<String, Vec<Session>>,
    /// One-time keys we published and not yet saw used.
    pub published: Vec<[u8; 32]>,
    /// The account as it becomes if the last pre-key decryption is accepted.
    pending_account: Option<Account>,
}

/// A decryption not yet applied: the caller checks the plaintext first and then
/// [`Crypto::accept`]s it, so that a message which decrypts but is refused (a replay
/// under a fresh id, say) does not use up the message key the genuine one needs.
pub struct Decrypted {
    pub plaintext: Vec<u8>,
    /// A pre-key message used up one of our one-time keys: the account changes.
    pub used_one_time_key: Option<[u8; 32]>,
    commit: Commit,
}

enum Commit {
    Existing { index: usize, session: Session },
    New { session: Session },
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
            pending_account: None,
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
            pending_account: None,
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
        let session = self.account.create_outbound_session(
            SessionConfig::version_1(),
            Curve25519PublicKey::from_bytes(*identity),
            Curve25519PublicKey::from_bytes(*one_time_key),
        )?;
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
        let msg = session.encrypt(plaintext)?;
        let (kind, bytes) = msg.to_parts();
        Ok((kind as u8, bytes))
    }

    /// Decrypts a message from `peer`, whose identity key is `identity`, on a copy of
    /// the session. A pre-key message for no session we hold opens a new one.
    pub fn decrypt(
        &mut self,
        peer: &str,
        identity: &[u8; 32],
        kind: u8,
        ciphertext: &[u8],
    ) -> Result<Decrypted, OlmError> {
        let msg =
            OlmMessage::from_parts(kind as usize, ciphertext).map_err(|_| OlmError::Malformed)?;
        let empty = Vec::new();
        let list = self.sessions.get(peer).unwrap_or(&empty);
        for (index, s) in list.iter().enumerate() {
            if let OlmMessage::PreKey(m) = &msg
                && s.session_id() != m.session_id()
            {
                continue;
            }
            let mut trial = Session::from_pickle(s.pickle());
            match trial.decrypt(&msg) {
                Ok(plaintext) => {
                    return Ok(Decrypted {
                        plaintext,
                        used_one_time_key: None,
                        commit: Commit::Existing {
                            index,
                            session: trial,
                        },
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
        // Session creation takes the one-time key out of the account: do it on a copy.
        let mut account = Account::from_pickle(self.account.pickle());
        let created = account
            .create_inbound_session(
                SessionConfig::version_1(),
                Curve25519PublicKey::from_bytes(*identity),
                m,
            )
            .map_err(|_| OlmError::Undecryptable)?;
        self.pending_account = Some(account);
        Ok(Decrypted {
            plaintext: created.plaintext,
            used_one_time_key: Some(otk),
            commit: Commit::New {
                session: created.session,
            },
        })
    }

    /// Applies a decryption whose plaintext the caller accepted.
    pub fn accept(&mut self, peer: &str, d: Decrypted) {
        match d.commit {
            Commit::Existing { index, session } => {
                let list = self.sessions.entry(peer.to_string()).or_default();
                if index < list.len() {
                    // The session that works is the one to answer on.
                    list.remove(index);
                    list.insert(0, session);
                }
            }
            Commit::New { session } => {
                if let Some(a) = self.pending_account.take() {
                    self.account = a;
                }
                self.add_session(peer, session);
                if let Some(otk) = d.used_one_time_key {
                    self.published.retain(|k| *k != otk);
                }
            }
        }
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

    fn open(
        c: &mut Crypto,
        peer: &str,
        id: &[u8; 32],
        m: &(u8, Vec<u8>),
    ) -> Result<Vec<u8>, OlmError> {
        let d = c.decrypt(peer, id, m.0, &m.1)?;
        let p = d.plaintext.clone();
        c.accept(peer, d);
        Ok(p)
    }

    #[test]
    fn conversation_tamper_replay_reorder() {
        let (mut alice, mut bob) = pair();
        let a_id = alice.curve25519();
        let b_id = bob.curve25519();
        let m1 = alice.encrypt("bob", b"hello").unwrap();
        assert_eq!(open(&mut bob, "alice", &a_id, &m1).unwrap(), b"hello");
        assert_eq!(bob.published.len(), 4);
        // Replay of the same pre-key message: refused.
        assert!(matches!(
            open(&mut bob, "alice", &a_id, &m1),
            Err(OlmError::Undecryptable)
        ));

        let r = bob.encrypt("alice", b"hi").unwrap();
        assert_eq!(open(&mut alice, "bob", &b_id, &r).unwrap(), b"hi");

        // Out of order: the third message arrives before the second.
        let m2 = alice.encrypt("bob", b"two").unwrap();
        let m3 = alice.encrypt("bob", b"three").unwrap();
        assert_eq!(open(&mut bob, "alice", &a_id, &m3).unwrap(), b"three");
        // A decryption the caller does not accept leaves the session as it was.
        let d = bob.decrypt("alice", &a_id, m2.0, &m2.1).unwrap();
        assert_eq!(d.plaintext, b"two");
        drop(d);
        assert_eq!(open(&mut bob, "alice", &a_id, &m2).unwrap(), b"two");
        // Replayed normal message.
        assert!(open(&mut bob, "alice", &a_id, &m2).is_err());

        // Tampered.
        let (k, mut c) = alice.encrypt("bob", b"four").unwrap();
        let last = c.len() - 1;
        c[last] ^= 0x40;
        assert!(matches!(
            open(&mut bob, "alice", &a_id, &(k, c)),
            Err(OlmError::Undecryptable)
        ));
        assert!(matches!(
            bob.decrypt("alice", &a_id, 7, &[1, 2, 3]),
            Err(OlmError::Malformed)
        ));
    }

    #[test]
    fn refused_pre_key_message_keeps_the_one_time_key() {
        let (mut alice, mut bob) = pair();
        let a_id = alice.curve25519();
        let m = alice.encrypt("bob", b"first").unwrap();
        let d = bob.decrypt("alice", &a_id, m.0, &m.1).unwrap();
        drop(d);
        assert_eq!(bob.published.len(), 5);
        assert_eq!(open(&mut bob, "alice", &a_id, &m).unwrap(), b"first");
    }
}
