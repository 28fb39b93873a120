//! Every frame a peer can send on /nodus/msg/1 and /nodus/mailbox/1, and what is
//! inside an Olm or Megolm message once decrypted: decoding never panics, and what
//! decodes re-encodes to something that decodes to the same value. The framing reader
//! gets the raw bytes too, length prefix and all.
#![no_main]

#[path = "../../crates/msg/tests/oracle/msg_wire.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
