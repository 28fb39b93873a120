//! What a client sends the tracker server over HTTP: any bytes parse to an announce or a
//! scrape, or to the error that goes back as the failure reason.
#![no_main]

#[path = "../../crates/torrent/tests/oracle/torrent_tracker_request.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::check(data));
