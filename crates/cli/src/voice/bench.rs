//! `nodus bench voice`.

use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Subcommand, Debug)]
pub enum Area {
    /// Voice calls
    Voice,
}

impl Area {
    pub async fn run(self, _json: bool) -> Result<ExitCode> {
        Ok(ExitCode::SUCCESS)
    }
}
