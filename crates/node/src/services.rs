//! The node's services: the one list that names them. Adding a service is one line here.

use nodus_service::{AnyService, service};

/// Every service this node can run, in start order.
pub fn all() -> Vec<Box<dyn AnyService>> {
    vec![
        // Before msg: anonymous messaging runs on its onion services (see `provide`).
        service::<nodus_onion::OnionService>(),
        service::<nodus_msg::MsgService>(),
        service::<nodus_chain::ChainService>(),
        service::<nodus_torrent::TorrentService>(),
        service::<nodus_social::SocialService>(),
        // After torrent: it reads torrents (see `provide`).
        service::<nodus_gateway::GatewayService>(),
        // After chain: it anchors its audit log there (see `provide`).
        service::<nodus_vault::VaultService>(),
        // After msg: calls are signalled between contacts (see `provide`).
        service::<nodus_voice::VoiceService>(),
        // After chain: projects pay volunteers there (see `provide`).
        service::<nodus_compute::ComputeService>(),
    ]
}

pub use crate::wiring::provide;
