//! Options every command takes, and what they lead to: the data dir and the running
//! node's API.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use nodus_core::DataDir;
use nodus_node::ApiClient;

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The node's data directory [default: $XDG_DATA_HOME/nodus]
    #[arg(long, global = true, env = "NODUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

impl Global {
    pub fn data_dir(&self) -> Result<DataDir> {
        Ok(DataDir::resolve(self.data_dir.as_deref())?)
    }

    /// The API of the node running on this data dir.
    pub fn api(&self) -> Result<ApiClient> {
        Ok(ApiClient::from_data_dir(&self.data_dir()?)?)
    }
}
