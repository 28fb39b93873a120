//! Every frame a peer can send on /nodus/msg/1, /nodus/mailbox/1 and /nodus/file/1,
//! and what is inside an Olm or Megolm message once decrypted: decoding never panics,
//! and what decodes re-encodes to something that decodes to the same value. The framing
//! reader gets the raw bytes too, length prefix and all; a file chunk's opening gets
//! them as a sealed chunk (it must refuse them: nobody without the key seals one).
//!
//! The oracle for this decoder: fuzz/fuzz_targets/msg_wire.rs runs it under libFuzzer, and
//! tests/codecs.rs runs it on random bytes (proptest) and on the kept corpus.

use futures::executor::block_on;
use nodus_msg::files::crypt::FileCipher;
use nodus_msg::wire::{
    self, Envelope, FileReply, FileRequest, GroupPlain, MailboxReply, MailboxRequest, MsgReply,
    Plain,
};

pub fn round_trip<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = wire::decode::<T>(data) {
        let again: T = wire::decode(&wire::encode(&v)).expect("re-encoded value decodes");
        assert_eq!(again, v);
    }
}

pub fn check(data: &[u8]) {
    round_trip::<Envelope>(data);
    round_trip::<MsgReply>(data);
    round_trip::<MailboxRequest>(data);
    round_trip::<MailboxReply>(data);
    round_trip::<Plain>(data);
    round_trip::<GroupPlain>(data);
    round_trip::<FileRequest>(data);
    round_trip::<FileReply>(data);
    let mut r = futures::io::Cursor::new(data);
    while let Ok(Some(_)) = block_on(wire::read_frame::<_, Envelope>(&mut r)) {}
    let mut r = futures::io::Cursor::new(data);
    while let Ok(Some(_)) = block_on(wire::read_frame_max::<_, FileRequest>(&mut r, 1024)) {}
    let cipher = FileCipher::new(&[9; 32], [7; 32], data.len() as u64);
    assert!(cipher.open(0, &mut data.to_vec()).is_err());
}
