//! `nodus init`: creates a data dir with an identity and a commented config.toml. Safe
//! to run again: existing files are kept as they are.

use nodus_core::{Config, CoreError, DataDir, config, fsutil, identity};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub data_dir: String,
    pub peer_id: String,
    pub created_identity: bool,
    pub created_config: bool,
}

/// The commented config.toml `nodus init` writes: the node-wide sections, then each
/// service's. Parses to the defaults.
pub fn config_template() -> String {
    let services = crate::services::all();
    let parts: Vec<&str> = services.iter().map(|s| s.template()).collect();
    config::full_template(&parts)
}

/// Parses config.toml and checks every section: unknown sections and mistakes inside
/// a service's section are errors that name the line.
pub fn load_config(dir: &DataDir) -> Result<Config, CoreError> {
    let config = Config::load(&dir.config_path())?;
    check_config(&config)?;
    Ok(config)
}

/// Refuses a config with an unknown section or a service section that does not parse.
pub fn check_config(config: &Config) -> Result<(), CoreError> {
    let services = crate::services::all();
    let names: Vec<&str> = services.iter().map(|s| s.name()).collect();
    config.check_sections(&names)?;
    for s in &services {
        s.enabled(config)?;
    }
    Ok(())
}

pub fn init(dir: &DataDir) -> Result<InitReport, CoreError> {
    dir.create()?;
    let (key, created_identity) = identity::load_or_create(&dir.identity_path())?;
    let created_config =
        fsutil::write_new(&dir.config_path(), config_template().as_bytes(), 0o644)?;
    // Refuse a config that does not parse now, not at the next `up`.
    load_config(dir)?;
    Ok(InitReport {
        data_dir: dir.root().display().to_string(),
        peer_id: key.public().to_peer_id().to_string(),
        created_identity,
        created_config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_template_is_the_defaults() {
        let c = Config::parse(&config_template(), std::path::Path::new("config.toml")).unwrap();
        check_config(&c).unwrap();
        assert_eq!(c.p2p, Config::default().p2p);
        assert_eq!(c.api, Config::default().api);
        for s in crate::services::all() {
            assert!(s.enabled(&c).unwrap(), "{} is on by default", s.name());
        }
    }
}
