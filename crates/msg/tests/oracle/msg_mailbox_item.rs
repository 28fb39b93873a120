//! What a mailbox hands back: sealed bytes that may be anything. Opening, decoding the
//! envelope inside and decrypting its Olm or Megolm ciphertext never panic.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/msg_mailbox_item.rs runs it under libFuzzer, and
//! tests/codecs.rs runs it on random bytes (proptest) and on the kept corpus.

use std::sync::{LazyLock, Mutex};

use nodus_msg::megolm::GroupCrypto;
use nodus_msg::olm::Crypto;
use nodus_msg::seal::SealKey;
use nodus_msg::wire::{self, Body, Envelope};

static STATE: LazyLock<Mutex<(SealKey, Crypto, GroupCrypto)>> = LazyLock::new(|| {
    let mut groups = GroupCrypto::default();
    let key = GroupCrypto::default().current_key([1; 16]);
    let _ = groups.add_inbound([1; 16], "sender", &key);
    Mutex::new((SealKey::generate(), Crypto::new(), groups))
});

pub fn check(data: &[u8]) {
    let Ok(mut state) = STATE.lock() else { return };
    let (seal, crypto, groups) = &mut *state;
    let _ = seal.open(data, b"routing");
    let Ok(env) = wire::decode::<Envelope>(data) else {
        // Raw Olm and Megolm bytes as well.
        let _ = crypto.decrypt(
            "sender",
            &[9; 32],
            data.first().copied().unwrap_or(0) % 3,
            data,
        );
        let _ = groups.decrypt([1; 16], "sender", "session", data);
        return;
    };
    match env.body {
        Body::Olm {
            kind,
            ciphertext,
            card,
        } => {
            if let Some(c) = card {
                let _ = c.verify();
            }
            // A decryption is never accepted here, so the state stays as it is.
            let _ = crypto.decrypt("sender", &[9; 32], kind, &ciphertext);
        }
        Body::Group {
            group,
            session,
            ciphertext,
        } => {
            let _ = groups.decrypt(group, "sender", &session, &ciphertext);
        }
    }
}
