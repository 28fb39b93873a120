//! The node's services: the one list that names them. Adding a service is one line here.

use nodus_service::{AnyService, service};

/// Every service this node can run, in start order.
pub fn all() -> Vec<Box<dyn AnyService>> {
    vec![
        service::<nodus_msg::MsgService>(),
        service::<nodus_chain::ChainService>(),
        service::<nodus_torrent::TorrentService>(),
    ]
}

/// The names of [`all`], as config.toml's sections.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|s| s.name()).collect()
}
