//! What a local program sends the SOCKS5 proxy: reading it never panics and never
//! hangs on input that is there; a request it accepts names a target the exit can parse;
//! what the proxy answers is a few bytes at most.

use nodus_onion::exit::parse_target;
use nodus_onion::socks;

pub fn check(data: &[u8]) {
    let mut input = data;
    let mut answer = Vec::new();
    let got = futures::executor::block_on(socks::accept(&mut input, &mut answer));
    assert!(answer.len() <= 14, "{} bytes answered", answer.len());
    if let Ok(request) = got {
        assert!(
            parse_target(&request.target).is_some(),
            "an accepted target the exit cannot read: {}",
            request.target
        );
    }
}
