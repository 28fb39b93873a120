//! Group sessions (Megolm). Each member encrypts its group messages with its own
//! outbound session and gives the session key to every other member over Olm. When a
//! member is removed, every remaining member starts a new outbound session and shares it
//! only with the remaining members, so the removed one cannot read what follows.

use std::collections::HashMap;

use vodozemac::megolm::{
    GroupSession, GroupSessionPickle, InboundGroupSession, InboundGroupSessionPickle,
    MegolmMessage, SessionConfig, SessionKey,
};

use crate::wire::MsgId;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GroupCryptoError {
    #[error("no key for this sender's group session")]
    UnknownSession,
    #[error("not a valid Megolm message")]
    Malformed,
    #[error("group message failed authentication")]
    Undecryptable,
    #[error("bad group session key")]
    BadKey,
}

#[derive(Default)]
pub struct GroupCrypto {
    outbound: HashMap<MsgId, GroupSession>,
    /// (group, sender peer, session id) → session.
    inbound: HashMap<(MsgId, String, String), InboundGroupSession>,
}

pub fn inbound_key(group: &MsgId, sender: &str, session_id: &str) -> String {
    format!("{}|{sender}|{session_id}", hex::encode(group))
}

impl GroupCrypto {
    pub fn restore_outbound(&mut self, group: MsgId, pickle: GroupSessionPickle) {
        self.outbound
            .insert(group, GroupSession::from_pickle(pickle));
    }

    pub fn restore_inbound(
        &mut self,
        group: MsgId,
        sender: String,
        pickle: InboundGroupSessionPickle,
    ) {
        let s = InboundGroupSession::from_pickle(pickle);
        self.inbound.insert((group, sender, s.session_id()), s);
    }

    /// Starts a fresh outbound session for `group` (at creation, and after a removal).
    /// Returns its key for the other members.
    pub fn rotate(&mut self, group: MsgId) -> Vec<u8> {
        let s = GroupSession::new(SessionConfig::version_1());
        let key = s.session_key().to_bytes();
        self.outbound.insert(group, s);
        key
    }

    /// The current outbound key, making a session if there is none.
    pub fn current_key(&mut self, group: MsgId) -> Vec<u8> {
        match self.outbound.get(&group) {
            Some(s) => s.session_key().to_bytes(),
            None => self.rotate(group),
        }
    }

    pub fn outbound_pickle(&self, group: &MsgId) -> Option<GroupSessionPickle> {
        self.outbound.get(group).map(|s| s.pickle())
    }

    /// Encrypts under our outbound session; returns its id and the ciphertext.
    pub fn encrypt(&mut self, group: MsgId, plaintext: &[u8]) -> (String, Vec<u8>) {
        let s = self
            .outbound
            .entry(group)
            .or_insert_with(|| GroupSession::new(SessionConfig::version_1()));
        (s.session_id(), s.encrypt(plaintext).to_bytes())
    }

    /// Adds a member's session key; returns the store key and pickle to persist.
    pub fn add_inbound(
        &mut self,
        group: MsgId,
        sender: &str,
        session_key: &[u8],
    ) -> Result<(String, InboundGroupSessionPickle), GroupCryptoError> {
        let key = SessionKey::from_bytes(session_key).map_err(|_| GroupCryptoError::BadKey)?;
        let s = InboundGroupSession::new(&key, SessionConfig::version_1());
        let id = s.session_id();
        let pickle = s.pickle();
        self.inbound
            .insert((group, sender.to_string(), id.clone()), s);
        Ok((inbound_key(&group, sender, &id), pickle))
    }

    /// Decrypts a member's group message; returns the plaintext and the store key and
    /// pickle of the session (its ratchet moved).
    pub fn decrypt(
        &mut self,
        group: MsgId,
        sender: &str,
        session_id: &str,
        ciphertext: &[u8],
    ) -> Result<(Vec<u8>, String, InboundGroupSessionPickle), GroupCryptoError> {
        let msg = MegolmMessage::from_bytes(ciphertext).map_err(|_| GroupCryptoError::Malformed)?;
        let id = session_id.to_string();
        let s = self
            .inbound
            .get_mut(&(group, sender.to_string(), id.clone()))
            .ok_or(GroupCryptoError::UnknownSession)?;
        let out = s
            .decrypt(&msg)
            .map_err(|_| GroupCryptoError::Undecryptable)?;
        Ok((out.plaintext, inbound_key(&group, sender, &id), s.pickle()))
    }

    /// Forgets everything about a group (we were removed from it, or left).
    pub fn forget(&mut self, group: &MsgId) {
        self.outbound.remove(group);
        self.inbound.retain(|(g, _, _), _| g != group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_member_cannot_read_after_rotation() {
        let g = [7u8; 16];
        let mut alice = GroupCrypto::default();
        let mut bob = GroupCrypto::default();
        let mut carol = GroupCrypto::default();
        let k1 = alice.current_key(g);
        bob.add_inbound(g, "alice", &k1).unwrap();
        carol.add_inbound(g, "alice", &k1).unwrap();
        let (sid, c) = alice.encrypt(g, b"hello both");
        assert_eq!(bob.decrypt(g, "alice", &sid, &c).unwrap().0, b"hello both");
        assert_eq!(
            carol.decrypt(g, "alice", &sid, &c).unwrap().0,
            b"hello both"
        );

        // Carol removed: Alice rotates and tells only Bob.
        let k2 = alice.rotate(g);
        bob.add_inbound(g, "alice", &k2).unwrap();
        let (sid2, c) = alice.encrypt(g, b"just bob");
        assert_ne!(sid, sid2);
        assert_eq!(bob.decrypt(g, "alice", &sid2, &c).unwrap().0, b"just bob");
        assert_eq!(
            carol.decrypt(g, "alice", &sid2, &c).err(),
            Some(GroupCryptoError::UnknownSession)
        );
        // Under the old session id the new ciphertext does not verify either.
        assert!(carol.decrypt(g, "alice", &sid, &c).is_err());

        let mut bad = c.clone();
        bad[10] ^= 1;
        assert!(bob.decrypt(g, "alice", &sid2, &bad).is_err());
        assert!(bob.decrypt(g, "mallory", &sid2, &c).is_err());
    }
}
