//! Opus frames in RTP (RFC 3550; payload format RFC 7587: one frame per packet,
//! timestamps on a 48 kHz clock whatever the coded rate) protected by SRTP (RFC 3711,
//! AES_CM_128_HMAC_SHA1_80, webrtc-rs's implementation). Each direction of a call has
//! its own master key and salt; a receiver keeps a replay window, so a packet seen before
//! or altered on the way is dropped.

use bytes::Bytes;
use rtp::header::Header;
use rtp::packet::Packet;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::srtp_replay_protection;
use webrtc_srtp::protection_profile::ProtectionProfile;
use webrtc_util::marshal::{Marshal, Unmarshal};

use crate::VoiceError;

/// The dynamic payload type used for Opus (as WebRTC's SDP usually has it).
pub const PAYLOAD_TYPE: u8 = 111;
/// RTP timestamp ticks per 20 ms frame (RFC 7587: a 48 kHz clock).
pub const TICKS_PER_FRAME: u32 = 960;
const PROFILE: ProtectionProfile = ProtectionProfile::Aes128CmHmacSha1_80;
/// Packets a receiver remembers to refuse replays of.
const REPLAY_WINDOW: usize = 1024;

/// One direction's SRTP master key and salt, agreed over the contacts' Olm session.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub key: [u8; 16],
    pub salt: [u8; 14],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    pub fn random() -> Keys {
        Keys {
            key: rand::random(),
            salt: rand::random(),
        }
    }
}

fn srtp(e: impl std::fmt::Display) -> VoiceError {
    VoiceError::Srtp(e.to_string())
}

/// Sends one stream: numbers, stamps and seals each frame.
pub struct Sender {
    ctx: Context,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
}

impl Sender {
    pub fn new(keys: &Keys, ssrc: u32) -> Result<Sender, VoiceError> {
        Ok(Sender {
            ctx: Context::new(&keys.key, &keys.salt, PROFILE, None, None).map_err(srtp)?,
            ssrc,
            seq: rand::random(),
            timestamp: rand::random(),
        })
    }

    /// The next 20 ms frame as an SRTP packet.
    pub fn packet(&mut self, opus: &[u8]) -> Result<Bytes, VoiceError> {
        let p = Packet {
            header: Header {
                version: 2,
                payload_type: PAYLOAD_TYPE,
                sequence_number: self.seq,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(opus),
        };
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(TICKS_PER_FRAME);
        let plain = p.marshal().map_err(|e| VoiceError::Rtp(e.to_string()))?;
        self.ctx.encrypt_rtp(&plain).map_err(srtp)
    }
}

/// A frame as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

/// Opens one stream's packets.
pub struct Receiver {
    ctx: Context,
}

impl Receiver {
    pub fn new(keys: &Keys) -> Result<Receiver, VoiceError> {
        Ok(Receiver {
            ctx: Context::new(
                &keys.key,
                &keys.salt,
                PROFILE,
                Some(srtp_replay_protection(REPLAY_WINDOW)),
                None,
            )
            .map_err(srtp)?,
        })
    }

    /// Checks and opens a datagram: a tampered, replayed, foreign or malformed one is an
    /// error (to be dropped and counted).
    pub fn open(&mut self, datagram: &[u8]) -> Result<Received, VoiceError> {
        let plain = self.ctx.decrypt_rtp(datagram).map_err(srtp)?;
        let p = Packet::unmarshal(&mut &plain[..]).map_err(|e| VoiceError::Rtp(e.to_string()))?;
        if p.header.version != 2 || p.header.payload_type != PAYLOAD_TYPE {
            return Err(VoiceError::Rtp("not an Opus RTP packet".into()));
        }
        Ok(Received {
            seq: p.header.sequence_number,
            timestamp: p.header.timestamp,
            ssrc: p.header.ssrc,
            payload: p.payload.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_open_in_order_and_tampered_replayed_or_foreign_ones_do_not() {
        let keys = Keys::random();
        let mut tx = Sender::new(&keys, 7).unwrap();
        let mut rx = Receiver::new(&keys).unwrap();
        let a = tx.packet(b"frame one").unwrap();
        let b = tx.packet(b"frame two").unwrap();
        let got_b = rx.open(&b).unwrap();
        let got_a = rx.open(&a).unwrap();
        assert_eq!(got_a.payload, b"frame one");
        assert_eq!(got_b.seq, got_a.seq.wrapping_add(1));
        assert_eq!(
            got_b.timestamp,
            got_a.timestamp.wrapping_add(TICKS_PER_FRAME)
        );
        assert!(rx.open(&a).is_err(), "a replay");
        let c = tx.packet(b"frame three").unwrap();
        let mut bad = c.to_vec();
        let last = bad.len() - 12;
        bad[last] ^= 1;
        assert!(rx.open(&bad).is_err(), "tampered");
        assert!(rx.open(&c).is_ok(), "the untouched one still opens");
        let mut other = Sender::new(&Keys::random(), 7).unwrap();
        assert!(
            rx.open(&other.packet(b"x").unwrap()).is_err(),
            "another key"
        );
        assert!(rx.open(b"garbage").is_err());
    }
}
