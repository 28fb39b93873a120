//! The `[vault]` section of config.toml: its types, defaults and template text.

use nodus_core::Section;
use serde::{Deserialize, Serialize};

/// Vault (crates/vault): patient-held FHIR records, grants to providers, an audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultConfig {
    pub enabled: bool,
    /// Seconds between anchors of the audit log's head on the chain (when it has grown);
    /// 0: never anchor.
    pub anchor_interval_secs: u64,
    /// Requests from providers served at once; more wait.
    pub max_serving: usize,
    /// What this node holds at most for one patient it agreed to keep a copy for, in MiB.
    pub max_held_mb: u64,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            enabled: true,
            anchor_interval_secs: 60,
            max_serving: 16,
            max_held_mb: 1024,
        }
    }
}

impl Section for VaultConfig {
    const NAME: &'static str = "vault";
    const TEMPLATE: &'static str = TEMPLATE;
    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// The `[vault]` part of the commented config.toml that `nodus init` writes.
pub const TEMPLATE: &str = r#"[vault]
enabled = true
# Every this many seconds, if the audit log grew, its head is written on the chain (a
# transaction from this node's anchor account: `nodus vault status` shows it; it needs
# a little ether for gas). 0: never.
anchor_interval_secs = 60
# Provider requests served at once.
max_serving = 16
# A copy of a patient's vault this node agreed to hold (`nodus vault hold <patient>`)
# may take at most this many MiB.
max_held_mb = 1024
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_defaults() {
        assert_eq!(
            nodus_core::config::parse_template::<VaultConfig>().unwrap(),
            VaultConfig::default()
        );
    }
}
