//! What two contacts' nodes say to set a call up and tear it down. These travel as
//! messaging signals (`MsgHandle::send_signal`, app `call`): Olm-encrypted end to end
//! between contacts, so the SRTP keys inside are agreed over the contacts' Olm session
//! and nobody else, relays included, sees them.
//!
//! ```text
//! caller                                   callee
//! Offer { call, keys, candidates, relays } ->
//!                                       <- Ringing { call }
//!                                       <- Answer { call, keys, candidates } | Reject { call, busy }
//! Hangup { call }                        <->
//! Move { call, relays }                  <-> (every route died: new relay legs)
//! ```
//!
//! Each side's `keys` seal what that side sends (key, salt and the stream's SSRC).
//! `relays` are allocations the caller made, each with the callee's token. Postcard-
//! encoded; what does not decode or breaks a limit is dropped.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::media::Keys;
use crate::relay::Token;

pub type CallId = [u8; 16];
/// Addresses a side offers for the direct path, at most.
pub const MAX_CANDIDATES: usize = 8;
/// Relay legs a signal carries, at most.
pub const MAX_RELAYS: usize = 3;
/// The app name signals travel under.
pub const APP: &str = "call";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireKeys {
    pub key: [u8; 16],
    pub salt: [u8; 14],
    pub ssrc: u32,
}

impl From<&Keys> for WireKeys {
    fn from(k: &Keys) -> Self {
        WireKeys {
            key: k.key,
            salt: k.salt,
            ssrc: k.ssrc,
        }
    }
}

impl From<&WireKeys> for Keys {
    fn from(k: &WireKeys) -> Self {
        Keys {
            key: k.key,
            salt: k.salt,
            ssrc: k.ssrc,
        }
    }
}

/// A relay allocation: where it is, and the token of the side the signal goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayLeg {
    pub addr: SocketAddr,
    pub token: Token,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallSignal {
    Offer {
        call: CallId,
        keys: WireKeys,
        candidates: Vec<SocketAddr>,
        relays: Vec<RelayLeg>,
    },
    Ringing {
        call: CallId,
    },
    Answer {
        call: CallId,
        keys: WireKeys,
        candidates: Vec<SocketAddr>,
    },
    Reject {
        call: CallId,
        /// In another call, rather than declined.
        busy: bool,
    },
    Hangup {
        call: CallId,
    },
    /// Every route died: the sender made these relay allocations and tries them.
    Move {
        call: CallId,
        relays: Vec<RelayLeg>,
    },
}

impl CallSignal {
    pub fn call(&self) -> CallId {
        match self {
            CallSignal::Offer { call, .. }
            | CallSignal::Ringing { call }
            | CallSignal::Answer { call, .. }
            | CallSignal::Reject { call, .. }
            | CallSignal::Hangup { call }
            | CallSignal::Move { call, .. } => *call,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("signals serialize")
    }

    /// A signal as a contact's node sent it: None when it does not decode or offers
    /// more candidates or relays than allowed.
    pub fn decode(bytes: &[u8]) -> Option<CallSignal> {
        let s: CallSignal = postcard::from_bytes(bytes).ok()?;
        let (candidates, relays) = match &s {
            CallSignal::Offer {
                candidates, relays, ..
            } => (candidates.len(), relays.len()),
            CallSignal::Answer { candidates, .. } => (candidates.len(), 0),
            CallSignal::Move { relays, .. } => (0, relays.len()),
            _ => (0, 0),
        };
        (candidates <= MAX_CANDIDATES && relays <= MAX_RELAYS).then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip_and_limits_hold() {
        let keys = Keys::random();
        let offer = CallSignal::Offer {
            call: [1; 16],
            keys: (&keys).into(),
            candidates: vec!["127.0.0.1:5000".parse().unwrap()],
            relays: vec![RelayLeg {
                addr: "127.0.0.2:6000".parse().unwrap(),
                token: [9; 16],
            }],
        };
        let back = CallSignal::decode(&offer.encode()).unwrap();
        assert_eq!(back, offer);
        let CallSignal::Offer { keys: k, .. } = back else {
            unreachable!()
        };
        assert_eq!(Keys::from(&k), keys);
        let many = CallSignal::Answer {
            call: [2; 16],
            keys: (&keys).into(),
            candidates: vec!["127.0.0.1:1".parse().unwrap(); MAX_CANDIDATES + 1],
        };
        assert_eq!(CallSignal::decode(&many.encode()), None);
        let leg = RelayLeg {
            addr: "127.0.0.2:6000".parse().unwrap(),
            token: [9; 16],
        };
        let moved = CallSignal::Move {
            call: [3; 16],
            relays: vec![leg; MAX_RELAYS + 1],
        };
        assert_eq!(CallSignal::decode(&moved.encode()), None);
        assert_eq!(CallSignal::decode(b"\xff\xff"), None);
    }
}
