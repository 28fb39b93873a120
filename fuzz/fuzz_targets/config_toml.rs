//! config.toml text as a person may write it: parse errors, never panics, and the line
//! number reported is within the text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nodus_core::{Config, CoreError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(CoreError::Config { line, .. }) = Config::parse(text, Path::new("config.toml")) {
        assert!(line <= text.lines().count() + 1);
    }
});
