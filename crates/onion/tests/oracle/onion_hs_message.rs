//! The onion-service relay messages a relay or a service reads from a circuit:
//! ESTABLISH_INTRO (checked against a binding), INTRODUCE (decoded, then opened with a
//! service's keys) and RENDEZVOUS1 (split). The first byte picks the decoder. None
//! panics; a forged ESTABLISH_INTRO never verifies; nothing opens for keys it was not
//! sealed to.

use nodus_onion::hs::address::ServiceKeys;
use nodus_onion::hs::messages::{self, EstablishIntro, Introduce};

pub fn check(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            // A signature holds for its circuit's binding only.
            if EstablishIntro::verify(rest, &[7; 32]).is_ok() {
                assert!(EstablishIntro::verify(rest, &[8; 32]).is_err());
            }
        }
        1 => {
            if let Ok(i) = Introduce::decode(rest) {
                assert!(
                    i.open(&ServiceKeys::generate()).is_err(),
                    "sealed to no key of ours"
                );
            }
        }
        _ => {
            if let Ok((_, created)) = messages::split_rendezvous1(rest) {
                assert_eq!(created.len(), nodus_onion::ntor::CREATED_LEN);
            }
        }
    }
}
