//! config.toml text as a person may write it: parse errors, never panics, and the line
//! number reported is within the text.
//!
//! The oracle for this decoder: fuzz/fuzz_targets/config_toml.rs runs it under libFuzzer, and
//! tests/codecs.rs runs it on random bytes (proptest) and on the kept corpus.

use std::path::Path;

use nodus_core::{Config, CoreError};

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(CoreError::Config { line, .. }) = Config::parse(text, Path::new("config.toml")) {
        assert!(line <= text.lines().count() + 1);
    }
}
