//! What a client sends the tracker server over HTTP: any bytes parse to an announce or a
//! scrape, or to the error that goes back as the failure reason. An announce written
//! from what was parsed parses to the same.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/torrent_tracker_request.rs runs it under
//! libFuzzer, and tests/codecs.rs runs it on random bytes (proptest) and on the kept corpus.

use nodus_torrent::tracker_server::{Announce, MAX_SCRAPE, Request, parse_request};

/// The request line a client would send for `a`.
pub fn announce_line(a: &Announce) -> Vec<u8> {
    let enc = |b: &[u8]| {
        percent_encoding::percent_encode(b, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut q = format!("info_hash={}&port={}", enc(&a.info_hash), a.port);
    if let Some(ip) = a.ip {
        q.push_str(&format!("&ip={}", enc(ip.to_string().as_bytes())));
    }
    if a.stopped {
        q.push_str("&event=stopped");
    }
    q.push_str(if a.seed { "&left=0" } else { "&left=1" });
    format!("GET /announce?{q} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

pub fn check(data: &[u8]) {
    match parse_request(data) {
        Ok(Request::Announce(a)) => {
            assert_eq!(parse_request(&announce_line(&a)), Ok(Request::Announce(a)));
        }
        Ok(Request::Scrape(hashes)) => assert!(hashes.len() <= MAX_SCRAPE),
        Err(_) => {}
    }
}
