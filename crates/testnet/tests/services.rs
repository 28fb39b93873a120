//! The service contract as a node runs it: a data dir of the flat layout (every service's
//! files at the root, as nodus wrote them before services had directories) is moved into
//! `<data dir>/<service>/` with nothing lost; a disabled service is not started and its
//! routes say what to set; every service's metrics carry `nodus_<service>_`.

use std::time::Duration;

use nodus_chain::{ChainConfig, ChainHandle};
use nodus_msg::MsgHandle;
use nodus_node::NodeError;
use nodus_service::ServiceError;
use nodus_testnet::{Testnet, TestnetError, node_config, node_ip, wait_until};
use nodus_torrent::{ShareRequest, TorrentConfig, TorrentError, TorrentHandle};

async fn api_get(net: &Testnet, k: usize, path: &str) -> (u16, String) {
    let token = std::fs::read_to_string(net.data_dir(k).cookie_path()).unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", net.node(k).api_url()))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Where each file lived in the flat layout, and where it lives now.
const FLAT: [(&str, &str); 5] = [
    ("msg.redb", "msg/msg.redb"),
    ("msg.wal", "msg/msg.wal"),
    ("chain.redb", "chain/chain.redb"),
    ("torrent.redb", "torrent/torrent.redb"),
    ("torrent.journal", "torrent/torrent.journal"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_the_flat_layout_is_moved_into_service_dirs_and_nothing_is_lost() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, tmp.path()).await.unwrap();
    let root = net.data_dir(0).root().to_path_buf();

    // Something kept by each service: a group, mined blocks, a shared file.
    let msg = net.node(0).service::<MsgHandle>().unwrap().clone();
    let group = msg.group_create("kept").await.unwrap();
    let chain = net.node(0).service::<ChainHandle>().unwrap().clone();
    chain.set_mining(true, None, None);
    wait_until(Duration::from_secs(60), "two blocks mined", || async {
        chain.status().await.map(|s| s.height >= 2).unwrap_or(false)
    })
    .await
    .unwrap();
    chain.stop_mining().await.unwrap();
    let height = chain.status().await.unwrap().height;
    let file = tmp.path().join("kept.bin");
    std::fs::write(&file, vec![7u8; 100_000]).unwrap();
    let torrents = net.node(0).service::<TorrentHandle>().unwrap().clone();
    let shared = torrents
        .share(ShareRequest {
            path: file.display().to_string(),
            version: None,
            trackers: vec![],
            web_seeds: vec![],
            piece_length: None,
        })
        .await
        .unwrap();
    drop((msg, chain, torrents));
    net.stop(0).await.unwrap();

    // Put every file back where the flat layout kept it.
    for (old, new) in FLAT {
        std::fs::rename(root.join(new), root.join(old)).unwrap();
    }
    // The file store of messaging came after the flat layout (empty here).
    std::fs::remove_dir(root.join("msg/files")).unwrap();
    for dir in ["msg", "chain", "torrent"] {
        std::fs::remove_dir(root.join(dir)).unwrap();
    }

    net.restart(0).await.unwrap();
    for (old, new) in FLAT {
        assert!(!root.join(old).exists(), "{old} left at the root");
        assert!(root.join(new).exists(), "{new} not there");
    }
    let node = net.node(0);
    let groups = node.service::<MsgHandle>().unwrap().groups().await.unwrap();
    assert!(groups.iter().any(|g| g.id == group.id), "{groups:?}");
    let status = node
        .service::<ChainHandle>()
        .unwrap()
        .status()
        .await
        .unwrap();
    assert_eq!(status.height, height);
    let list = node.service::<TorrentHandle>().unwrap().list();
    assert!(list.iter().any(|t| t.id == shared.id), "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_service_is_not_started_and_its_routes_say_what_to_set() {
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(0, tmp.path()).await.unwrap();
    let mut config = node_config(node_ip(0), &[]);
    config.edit::<ChainConfig>(|c| c.enabled = false).unwrap();
    net.add_node(config).await.unwrap();

    let node = net.node(0);
    assert!(node.service::<ChainHandle>().is_none());
    assert!(node.service::<MsgHandle>().is_some());
    assert!(!node.service_names().contains(&"chain"));
    assert!(!net.data_dir(0).service_dir("chain").exists());
    for path in ["/api/v1/chain", "/api/v1/chain/blocks/1"] {
        let (code, body) = api_get(&net, 0, path).await;
        assert_eq!(code, 503, "{path}: {body}");
        assert!(
            body.contains("[chain]") && body.contains("enabled = true"),
            "{path}: {body}"
        );
    }
    assert!(!node.endpoints.extra.contains_key("json_rpc"));
    let (code, body) = api_get(&net, 0, "/api/v1/msg/contacts").await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_metric_is_named_after_its_service() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(1, tmp.path()).await.unwrap();
    let (code, text) = api_get(&net, 0, "/metrics").await;
    assert_eq!(code, 200);
    let names: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    for service in net.node(0).service_names() {
        let prefix = format!("nodus_{service}_");
        assert!(
            names.iter().any(|n| n.starts_with(&prefix)),
            "no metric starts with {prefix}: {names:?}"
        );
    }
    let stray: Vec<&&str> = names
        .iter()
        .filter(|n| !n.starts_with("nodus_") && !n.starts_with("libp2p_"))
        .collect();
    assert!(stray.is_empty(), "metrics outside nodus_*: {stray:?}");
}

/// A service that cannot start (here: file sharing's port is taken) fails the node with
/// that service's own error, and what had started before it (the overlay, messaging,
/// the chain) stops and closes its files: the same data dir starts at once, in the same
/// process, once the setting is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_cannot_start_stops_the_ones_started_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(0, tmp.path()).await.unwrap();
    let taken = std::net::TcpListener::bind((node_ip(0), 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut config = node_config(node_ip(0), &[]);
    config
        .edit::<TorrentConfig>(|t| t.listen = format!("{}:{port}", node_ip(0)))
        .unwrap();
    let err = net
        .add_node(config.clone())
        .await
        .expect_err("the port is taken");
    let TestnetError::Node(NodeError::Service(e)) = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(
            e,
            ServiceError::Start {
                service: "torrent",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        matches!(
            e.downcast_ref::<TorrentError>(),
            Some(TorrentError::Listen { .. })
        ),
        "{e}"
    );
    assert!(net.data_dir(0).service_dir("msg").join("msg.redb").exists());

    config
        .edit::<TorrentConfig>(|t| t.listen = format!("{}:0", node_ip(0)))
        .unwrap();
    let k = net.add_node(config).await.unwrap();
    assert_eq!(k, 0);
    let node = net.node(0);
    assert!(
        node.service::<MsgHandle>()
            .unwrap()
            .contacts()
            .await
            .is_ok()
    );
    assert!(
        node.service::<ChainHandle>()
            .unwrap()
            .status()
            .await
            .is_ok()
    );
    assert!(node.service::<TorrentHandle>().is_some());
}
