//! What a mailbox hands back: sealed bytes that may be anything. Opening, decoding the
//! envelope inside and decrypting its Olm or Megolm ciphertext never panic.
#![no_main]

#[path = "../../crates/msg/tests/oracle/msg_mailbox_item.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
