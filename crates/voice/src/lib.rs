//! nodus-voice: calls between contacts. This first part is the media path: Opus frames
//! ([`codec`]) carried in RTP (RFC 3550, Opus payload RFC 7587) and protected by SRTP
//! (RFC 3711, AES-128 counter mode with HMAC-SHA1-80, replay window) ([`media`]), played
//! out through an adaptive jitter buffer that conceals what is lost ([`jitter`]); a
//! datagram relay for calls between peers that cannot reach each other ([`relay`]); WAV
//! files in and out ([`wav`]).
//!
//! Still to come (issue 23): signalling between contacts with SRTP keys agreed over
//! their Olm session, the direct UDP path after a hole punch, moving between paths
//! mid-call, sound devices (cpal), the service, its commands, demo and benchmark.

pub mod adapt;
pub mod codec;
mod error;
pub mod jitter;
pub mod loopback;
pub mod media;
pub mod relay;
pub mod session;
pub mod signal;
pub mod stats;
pub mod wav;

pub use error::VoiceError;
