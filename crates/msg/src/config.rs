//! The `[msg]` section of config.toml ([`nodus_core::MsgConfig`], defined in core with
//! the rest of the file so the commented template stays in one place), in the units the
//! service works in.

use std::time::Duration;

pub use nodus_core::MsgConfig;

/// Retry delay after `attempts` failures: doubling from `retry_secs`, at most 60 s.
pub(crate) fn retry_after(c: &MsgConfig, attempts: u32) -> Duration {
    let base = Duration::from_secs(c.retry_secs.max(1));
    let factor = 1u32 << attempts.min(6);
    (base * factor).min(Duration::from_secs(60))
}

pub(crate) fn poll_interval(c: &MsgConfig) -> Duration {
    Duration::from_secs(c.mailbox_poll_secs.max(1))
}
