//! `nodus init`: creates a data dir with an identity and a commented config.toml. Safe
//! to run again: existing files are kept as they are.

use nodus_core::{CoreError, DataDir, config, fsutil, identity};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub data_dir: String,
    pub peer_id: String,
    pub created_identity: bool,
    pub created_config: bool,
}

pub fn init(dir: &DataDir) -> Result<InitReport, CoreError> {
    dir.create()?;
    let (key, created_identity) = identity::load_or_create(&dir.identity_path())?;
    let created_config = fsutil::write_new(&dir.config_path(), config::TEMPLATE.as_bytes(), 0o644)?;
    // Refuse a config that does not parse now, not at the next `up`.
    nodus_core::Config::load(&dir.config_path())?;
    Ok(InitReport {
        data_dir: dir.root().display().to_string(),
        peer_id: key.public().to_peer_id().to_string(),
        created_identity,
        created_config,
    })
}
