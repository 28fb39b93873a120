//! The `[compute]` section of config.toml: its types, defaults and template text.

use nodus_core::Section;
use serde::{Deserialize, Serialize};

/// Compute (crates/compute): volunteer computing. Coordinating projects is always on;
/// donating cores is off until `nodus compute volunteer on` (which is remembered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeConfig {
    pub enabled: bool,
    /// Cores donated when `volunteer on` does not say (0: all of them).
    pub cores: u32,
    /// Memory one unit may use at most, in MiB; projects that need more are skipped.
    pub max_memory_mb: u32,
    /// Donate only while the machine is otherwise idle: work runs at the lowest priority
    /// and pauses while other programs keep the cores busy.
    pub idle_only: bool,
    /// Volunteers served at once by this node as a coordinator; more wait.
    pub max_volunteers: usize,
    /// For the demo and tests of the quorum only: this volunteer returns wrong results.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub faulty: bool,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            enabled: true,
            cores: 0,
            max_memory_mb: 512,
            idle_only: false,
            max_volunteers: 1024,
            faulty: false,
        }
    }
}

impl Section for ComputeConfig {
    const NAME: &'static str = "compute";
    const TEMPLATE: &'static str = TEMPLATE;
    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// The `[compute]` part of the commented config.toml that `nodus init` writes.
pub const TEMPLATE: &str = r#"[compute]
enabled = true
# Donating cores is off until `nodus compute volunteer on [--cores N] [--max-memory M]
# [--idle-only]`, which is remembered; these are its defaults.
# Cores donated (0: all).
cores = 0
# Memory one work unit may use, in MiB; projects that need more are not taken.
max_memory_mb = 512
# Run work at the lowest priority and pause it while other programs are busy.
idle_only = false
# Volunteers this node serves at once for the projects it coordinates.
max_volunteers = 1024
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_defaults() {
        assert_eq!(
            nodus_core::config::parse_template::<ComputeConfig>().unwrap(),
            ComputeConfig::default()
        );
    }
}
