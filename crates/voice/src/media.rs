//! Opus frames in RTP (RFC 3550; payload format RFC 7587: one frame per packet,
//! timestamps on a 48 kHz clock whatever the coded rate) protected by SRTP (RFC 3711,
//! AES_CM_128_HMAC_SHA1_80, webrtc-rs's implementation). Each direction of a call has
//! its own master key and salt; a receiver keeps a replay window, so a packet seen before
//! or altered on the way is dropped. Each direction also carries SRTCP receiver reports
//! (RFC 3550 section 6.4.2, multiplexed on the same port as RFC 5761 has it): they say
//! what the other side lost and, with a REMB (draft-alvestrand-rmcat-remb) beside the
//! report, the bitrate the receiver estimates the path carries ([`crate::bwe`]); they
//! double as the probes that keep a standby path known to work. A side that hangs up
//! says BYE (RFC 3550 section 6.6) on every path, so the other ends at once even when
//! the signalling path is slow.
//!
//! Each stream's SSRC is agreed with its keys, so a datagram naming another SSRC is
//! dropped before any SRTP work (webrtc-srtp keeps state per SSRC it is shown: a
//! stranger spraying SSRCs must not grow it).

use bytes::Bytes;
use rtcp::goodbye::Goodbye;
use rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtp::header::Header;
use rtp::packet::Packet;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
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

/// One direction's SRTP master key and salt and its stream's SSRC, agreed over the
/// contacts' Olm session.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub key: [u8; 16],
    pub salt: [u8; 14],
    pub ssrc: u32,
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
            ssrc: rand::random(),
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
    pub fn new(keys: &Keys) -> Result<Sender, VoiceError> {
        Ok(Sender {
            ctx: Context::new(&keys.key, &keys.salt, PROFILE, None, None).map_err(srtp)?,
            ssrc: keys.ssrc,
            seq: rand::random(),
            timestamp: rand::random(),
        })
    }

    /// The next 20 ms frame as an SRTP packet.
    pub fn packet(&mut self, opus: &[u8]) -> Result<Bytes, VoiceError> {
        self.seal(PAYLOAD_TYPE, opus)
    }

    /// The next 20 ms frame with the one before it (RFC 2198 redundancy), as an SRTP
    /// packet; plain when the one before is too long to carry.
    pub fn packet_with_previous(
        &mut self,
        opus: &[u8],
        previous: &[u8],
    ) -> Result<Bytes, VoiceError> {
        match crate::red::encode(opus, previous) {
            Some(red) => self.seal(crate::red::RED_PAYLOAD_TYPE, &red),
            None => self.packet(opus),
        }
    }

    fn seal(&mut self, payload_type: u8, payload: &[u8]) -> Result<Bytes, VoiceError> {
        let p = Packet {
            header: Header {
                version: 2,
                payload_type,
                sequence_number: self.seq,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(TICKS_PER_FRAME);
        let plain = p.marshal().map_err(|e| VoiceError::Rtp(e.to_string()))?;
        self.ctx.encrypt_rtp(&plain).map_err(srtp)
    }

    /// A receiver report about the other side's stream (with the bitrate estimate when
    /// there is one), as SRTCP.
    pub fn report(&mut self, report: Report) -> Result<Bytes, VoiceError> {
        let rr = ReceiverReport {
            ssrc: self.ssrc,
            reports: vec![ReceptionReport {
                ssrc: report.ssrc,
                fraction_lost: report.fraction_lost,
                total_lost: report.total_lost.min(0x7f_ffff),
                last_sequence_number: report.highest,
                jitter: report.jitter,
                last_sender_report: 0,
                delay: 0,
            }],
            profile_extensions: Bytes::new(),
        };
        let mut packets: Vec<Box<dyn rtcp::packet::Packet + Send + Sync>> = vec![Box::new(rr)];
        if let Some(bps) = report.remb {
            packets.push(Box::new(ReceiverEstimatedMaximumBitrate {
                sender_ssrc: self.ssrc,
                bitrate: bps as f32,
                ssrcs: vec![report.ssrc],
            }));
        }
        self.seal_rtcp(&packets)
    }

    /// This side hangs up: an empty receiver report and a BYE, as SRTCP. Each call
    /// makes a new packet (a copy would be dropped as a replay).
    pub fn bye(&mut self) -> Result<Bytes, VoiceError> {
        let packets: Vec<Box<dyn rtcp::packet::Packet + Send + Sync>> = vec![
            Box::new(ReceiverReport {
                ssrc: self.ssrc,
                ..Default::default()
            }),
            Box::new(Goodbye {
                sources: vec![self.ssrc],
                reason: Bytes::new(),
            }),
        ];
        self.seal_rtcp(&packets)
    }

    fn seal_rtcp(
        &mut self,
        packets: &[Box<dyn rtcp::packet::Packet + Send + Sync>],
    ) -> Result<Bytes, VoiceError> {
        let plain = rtcp::packet::marshal(packets).map_err(|e| VoiceError::Rtp(e.to_string()))?;
        self.ctx.encrypt_rtcp(&plain).map_err(srtp)
    }
}

/// What a receiver report says about one stream (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// The stream reported on.
    pub ssrc: u32,
    /// Lost since the last report, out of 256.
    pub fraction_lost: u8,
    pub total_lost: u32,
    /// The highest extended sequence number received.
    pub highest: u32,
    /// Interarrival jitter, in timestamp units (48 kHz).
    pub jitter: u32,
    /// What the receiver estimates the path carries, bits a second (REMB), when it
    /// has found a limit.
    pub remb: Option<u32>,
}

/// A frame as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
    /// The frame before this one, when the packet carried it (RFC 2198).
    pub previous: Option<Vec<u8>>,
}

/// A datagram that opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Frame(Received),
    /// The other side's report on what it received of ours.
    Report(Report),
    /// The other side hung up.
    Bye,
}

/// Opens one stream's packets.
pub struct Receiver {
    ctx: Context,
    ssrc: u32,
}

/// RTCP packet types are 192..=223 in the second byte (RFC 5761 section 4); an Opus RTP
/// packet's is its payload type, with or without the marker bit.
fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.get(1).is_some_and(|b| (192..=223).contains(b))
}

/// The shortest SRTCP packet: an 8-byte header, the 4-byte index, the 10-byte tag.
const MIN_SRTCP: usize = 8 + 4 + 10;
/// The shortest SRTP packet: a 12-byte header and the 10-byte tag.
const MIN_SRTP: usize = 12 + 10;

impl Receiver {
    pub fn new(keys: &Keys) -> Result<Receiver, VoiceError> {
        Ok(Receiver {
            ctx: Context::new(
                &keys.key,
                &keys.salt,
                PROFILE,
                Some(srtp_replay_protection(REPLAY_WINDOW)),
                Some(srtcp_replay_protection(REPLAY_WINDOW)),
            )
            .map_err(srtp)?,
            ssrc: keys.ssrc,
        })
    }

    /// Checks and opens a datagram, a frame or a report: a tampered, replayed, foreign
    /// or malformed one is an error (to be dropped and counted).
    pub fn open(&mut self, datagram: &[u8]) -> Result<Opened, VoiceError> {
        if is_rtcp(datagram) {
            return self.open_report(datagram);
        }
        self.open_frame(datagram).map(Opened::Frame)
    }

    fn open_report(&mut self, datagram: &[u8]) -> Result<Opened, VoiceError> {
        if datagram.len() < MIN_SRTCP || datagram[4..8] != self.ssrc.to_be_bytes() {
            return Err(VoiceError::Rtp("not this call's report".into()));
        }
        let plain = self.ctx.decrypt_rtcp(datagram).map_err(srtp)?;
        parse_rtcp(&plain)
    }

    fn open_frame(&mut self, datagram: &[u8]) -> Result<Received, VoiceError> {
        if datagram.len() < MIN_SRTP || datagram[8..12] != self.ssrc.to_be_bytes() {
            return Err(VoiceError::Rtp("not this call's stream".into()));
        }
        // Our frames are version 2 with no header extension and no CSRCs. The header is
        // parsed before it is authenticated, and rtp 0.17's extension parser trusts the
        // element lengths inside (a short one panics): refuse what we never send.
        if datagram[0] >> 6 != 2 || datagram[0] & 0x1f != 0 {
            return Err(VoiceError::Rtp("an RTP header we never send".into()));
        }
        let plain = self.ctx.decrypt_rtp(datagram).map_err(srtp)?;
        let p = Packet::unmarshal(&mut &plain[..]).map_err(|e| VoiceError::Rtp(e.to_string()))?;
        let (payload, previous) = match p.header.payload_type {
            PAYLOAD_TYPE => (p.payload.to_vec(), None),
            crate::red::RED_PAYLOAD_TYPE => {
                let (primary, previous) = crate::red::decode(&p.payload).ok_or_else(|| {
                    VoiceError::Rtp("a redundant packet that does not parse".into())
                })?;
                (primary.to_vec(), previous.map(<[u8]>::to_vec))
            }
            _ => return Err(VoiceError::Rtp("not an Opus RTP packet".into())),
        };
        Ok(Received {
            seq: p.header.sequence_number,
            timestamp: p.header.timestamp,
            ssrc: p.header.ssrc,
            payload,
            previous,
        })
    }
}

/// What an opened SRTCP packet (compound RTCP) says: a BYE, or a receiver report with
/// the REMB beside it when there is one. Public for the fuzzer: a contact's garbage
/// gets this far.
///
/// Read here, not by `rtcp::packet::unmarshal`: rtcp 0.17's parsers of packet types we
/// never use panic on short input (its FIR parser, found by the `voice_media` fuzzer,
/// kept as a seed), and a contact could send them. Each packet of the compound is
/// bounded by its own length field; types other than RR, BYE and REMB are skipped.
pub fn parse_rtcp(plain: &[u8]) -> Result<Opened, VoiceError> {
    const RR: u8 = 201;
    const BYE: u8 = 203;
    const PSFB: u8 = 206;
    /// PSFB's format for application feedback, which REMB is.
    const AFB: u8 = 15;
    let bad = |why: &str| VoiceError::Rtp(why.to_string());
    let (mut report, mut remb, mut bye) = (None, None, false);
    let mut rest = plain;
    if rest.is_empty() {
        return Err(bad("an empty RTCP packet"));
    }
    while !rest.is_empty() {
        let header = rest.get(..4).ok_or_else(|| bad("a short RTCP header"))?;
        if header[0] >> 6 != 2 {
            return Err(bad("not RTCP version 2"));
        }
        let count = header[0] & 0x1f;
        let len = (u16::from_be_bytes([header[2], header[3]]) as usize + 1) * 4;
        let body = rest
            .get(4..len)
            .ok_or_else(|| bad("an RTCP packet longer than its datagram"))?;
        rest = &rest[len..];
        match header[1] {
            BYE => bye = true,
            RR if count >= 1 && report.is_none() => {
                // The sender's SSRC, then the first report block (RFC 3550 6.4.1).
                let b = body
                    .get(4..28)
                    .ok_or_else(|| bad("a short receiver report"))?;
                let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                report = Some(Report {
                    ssrc: word(0),
                    fraction_lost: b[4],
                    total_lost: word(4) & 0x00ff_ffff,
                    highest: word(8),
                    jitter: word(12),
                    remb: None,
                });
            }
            PSFB if count == AFB && body.get(8..12) == Some(b"REMB") => {
                // Sender SSRC, media SSRC (0), "REMB", the SSRC count, 6 bits of
                // exponent and 18 of mantissa (draft-alvestrand-rmcat-remb 2.2).
                let b = body.get(12..16).ok_or_else(|| bad("a short REMB"))?;
                let exp = b[1] >> 2;
                let mantissa = u32::from_be_bytes([0, b[1] & 0x03, b[2], b[3]]) as u128;
                // 18 bits shifted by at most 63 fit in 128: saturate, never wrap.
                remb = Some((mantissa << exp).min(u32::MAX as u128) as u32);
            }
            _ => {}
        }
    }
    if bye {
        return Ok(Opened::Bye);
    }
    let report = report.ok_or_else(|| bad("an RTCP packet without a receiver report"))?;
    Ok(Opened::Report(Report { remb, ..report }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_open_in_order_and_tampered_replayed_or_foreign_ones_do_not() {
        let keys = Keys::random();
        let mut tx = Sender::new(&keys).unwrap();
        let mut rx = Receiver::new(&keys).unwrap();
        let a = tx.packet(b"frame one").unwrap();
        let b = tx.packet(b"frame two").unwrap();
        let Opened::Frame(got_b) = rx.open(&b).unwrap() else {
            panic!("a frame")
        };
        let Opened::Frame(got_a) = rx.open(&a).unwrap() else {
            panic!("a frame")
        };
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
        let mut other = Sender::new(&Keys {
            ssrc: keys.ssrc,
            ..Keys::random()
        })
        .unwrap();
        assert!(
            rx.open(&other.packet(b"x").unwrap()).is_err(),
            "another key"
        );
        assert!(rx.open(b"garbage").is_err());
    }

    #[test]
    fn a_remb_past_32_bits_saturates_and_a_short_one_is_refused() {
        // RR with one block, then PSFB/AFB "REMB" with exponent 63 and a full mantissa.
        let mut p = vec![0x81, 201, 0, 7];
        p.extend_from_slice(&[0; 28]);
        p.extend_from_slice(&[0x8f, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0]);
        p.extend_from_slice(b"REMB");
        p.extend_from_slice(&[1, 0xff, 0xff, 0xff]);
        let Ok(Opened::Report(r)) = parse_rtcp(&p) else {
            panic!("a report")
        };
        assert_eq!(r.remb, Some(u32::MAX));
        // The same REMB cut short: its length field says more than there is.
        assert!(parse_rtcp(&p[..p.len() - 2]).is_err());
    }

    #[test]
    fn reports_open_once_and_only_with_the_keys() {
        let keys = Keys::random();
        let mut tx = Sender::new(&keys).unwrap();
        let mut rx = Receiver::new(&keys).unwrap();
        let sent = Report {
            ssrc: 42,
            fraction_lost: 25,
            total_lost: 300,
            highest: 70_000,
            jitter: 480,
            remb: None,
        };
        let r = tx.report(sent).unwrap();
        assert_eq!(rx.open(&r).unwrap(), Opened::Report(sent));
        let limited = Report {
            remb: Some(31_000),
            ..sent
        };
        assert_eq!(
            rx.open(&tx.report(limited).unwrap()).unwrap(),
            Opened::Report(limited)
        );
        let (bye, again) = (tx.bye().unwrap(), tx.bye().unwrap());
        assert_eq!(rx.open(&bye).unwrap(), Opened::Bye);
        assert!(rx.open(&bye).is_err(), "a replayed BYE");
        assert_eq!(rx.open(&again).unwrap(), Opened::Bye);
        assert!(rx.open(&r).is_err(), "a replayed report");
        let mut bad = tx.report(sent).unwrap().to_vec();
        bad[10] ^= 4;
        assert!(rx.open(&bad).is_err(), "a tampered report");
        // Short RTCP-looking datagrams are refused before SRTP sees them.
        for n in 0..MIN_SRTCP {
            let mut d = vec![0x80, 201];
            d.resize(n.max(2), 0);
            assert!(rx.open(&d).is_err());
        }
    }
}
