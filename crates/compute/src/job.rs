//! What a work unit is given and what it gives back: the types the wire carries and
//! the sandbox runs, without the sandbox.

use serde::{Deserialize, Serialize};

/// One unit's input: what its `main` sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// argv after argv[0] (which is `unit`).
    pub args: Vec<String>,
    pub stdin: Vec<u8>,
    /// In-memory files in the one directory, by name.
    pub files: Vec<(String, Vec<u8>)>,
    /// Seeds `random_get`: the same on every volunteer running this unit.
    pub seed: [u8; 32],
}

/// What a unit produced when it ended by itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub exit_code: u32,
    pub stdout: Vec<u8>,
    /// Files the unit created or changed, by name.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Why a unit did not end by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Failure {
    #[error("ran out of fuel")]
    OutOfFuel,
    #[error("stopped at its deadline")]
    Deadline,
    #[error("stopped: the volunteer shut down")]
    Stopped,
    #[error("went past the memory limit")]
    MemoryLimit,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("could not start: {0}")]
    Start(String),
}

impl Failure {
    /// Whether every volunteer running the unit would fail the same way (a deadline
    /// depends on the machine; the rest do not).
    pub fn deterministic(&self) -> bool {
        !matches!(self, Failure::Deadline | Failure::Stopped)
    }
}
